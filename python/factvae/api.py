"""The user-facing ``FactVAE`` class: paired AnnData in; embeddings, augmented ATAC, links out."""

from __future__ import annotations

import copy
import hashlib
import math
import os
import platform
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from factvae import __version__
from factvae.data.builds import warn_if_other_build
from factvae.data.counts import InMemoryRows, RowSource
from factvae.data.genomics import (
    AnnotationLike,
    harmonise_chromosomes,
    peak_ranges,
    read_gene_annotation,
)
from factvae.data.preprocessing import (
    SCALE_CLIP,
    LSIProjection,
    PCAProjection,
    atac_lsi,
    highly_variable_genes,
    log_library_size,
    rna_pca,
    standardise_rows,
)
from factvae.data.prior import GeneToPeak, coerce_g2p, gene_to_peak
from factvae.data.validation import (
    ModalityCounts,
    align_columns,
    align_features,
    batch_labels,
    batch_levels,
    cell_names,
    check_not_empty,
    check_unique,
    match_cells,
    raw_counts,
    reduction,
)
from factvae.errors import FactVAEInputError, TrainingDivergedError, TrainingInterrupted
from factvae.io.mudata import MODALITIES as MUDATA_MODALITIES
from factvae.io.mudata import is_mudata
from factvae.io.mudata import modalities as mudata_modalities
from factvae.io.persistence import (
    load_arrays,
    load_json,
    load_torch,
    save_arrays,
    save_json,
    save_torch,
)
from factvae.io.streaming import write_h5ad_chunks
from factvae.model.network import Architecture, FactVAENetwork
from factvae.outputs.augment import augment, augmented_chunks
from factvae.outputs.gene_loadings import link_gene_loadings
from factvae.outputs.latent import latent_means
from factvae.outputs.links import LINK_SCORES, correlation_scorer, cosine_scorer, infer_links
from factvae.settings import RUN_DEFAULTS, ModelSettings, auto_max_epochs, auto_patience
from factvae.train.batches import TrainingData
from factvae.train.checkpoints import CheckpointPolicy
from factvae.train.devices import seed_everything, select_device
from factvae.train.distributed import init_from_environment
from factvae.train.trainer import Schedule, Trainer

SETTINGS_FILE, WEIGHTS_FILE, ARRAYS_FILE = "settings.json", "weights.pt", "arrays.npz"


class FactVAE:
    """FactVAE on paired single-cell RNA + ATAC counts (Wang et al.; paper Eq. 1-14).

    ``rna`` and ``atac`` are AnnData with the same cells (matched by name) and raw counts in
    ``layers['counts']`` or ``.X``; AnnData opened with ``anndata.read_h5ad(path, backed="r")``
    (CSR ``.X``) is read from disk a block of cells at a time, never loaded whole, and must stay
    open until ``fit`` is done. A MuData may stand for both: ``FactVAE(mdata, gene_annotation=
    ...)`` reads its modalities named by ``modalities`` (default ``("rna", "atac")``), and
    :func:`factvae.io.mudata.add_results` writes the results back into it. The gene-to-peak
    prior comes from ``gene_annotation`` (frame or BED/GTF path) or a ready ``g2p``. Settings
    default to the authors' model and loss with a training schedule made for real data sizes
    (validation cells, early stopping, a budget that shrinks the epochs as cells grow, bounded
    encoder inputs); ``preset="paper"`` gives the authors' 300-epoch schedule exactly. See
    :class:`factvae.settings.ModelSettings`.

    Several samples: ``batch_key="sample"`` (a column of ``rna.obs``; ``atac.obs`` may hold
    it too, and must then agree) makes the decoders condition on each cell's batch
    (:class:`factvae.model.network.FactorDecoder`); a list of columns is combined into one
    covariate with levels ``"a|b"``. Its levels, in order, are ``model.batch_levels``.
    ``encode_batch=True`` gives the encoders the batch too. New cells (raw counts) are
    embedded without training by ``get_latent(rna=, atac=)``; new batches are learnt, with
    everything else frozen, by :meth:`map_query`.

    With ``gene_annotation``, the annotated RNA genes' TSSs are checked against the peaks: a
    one-line warning when they hit peaks hardly more often than 100-200 kb away, the sign of a
    genome build mismatch (:mod:`factvae.data.builds`). ``check_build=False`` skips it, for a
    caller that has checked already (R's ``RunFactVAE``).
    """

    def __init__(
        self,
        rna: Any,
        atac: Any = None,
        gene_annotation: AnnotationLike | None = None,
        g2p: Any = None,
        *,
        rna_rep: Any = None,
        atac_rep: Any = None,
        preset: str = "default",
        check_build: bool = True,
        modalities: tuple[str, str] = MUDATA_MODALITIES,
        **settings: Any,
    ) -> None:
        if is_mudata(rna):
            if atac is not None:
                raise FactVAEInputError(
                    "With a MuData, give no atac argument (its modalities are named by "
                    "modalities=); pass the annotation as gene_annotation=."
                )
            rna, atac = mudata_modalities(rna, modalities)
        elif atac is None:
            raise FactVAEInputError(
                "FactVAE needs the ATAC counts: FactVAE(rna, atac, ...) with two AnnData, or "
                "FactVAE(mdata, ...) with a MuData holding both."
            )
        self.settings = ModelSettings.from_kwargs(settings, preset)
        self.obs_names, atac_rows = match_cells(rna, atac)
        keys = self.settings.batch_keys
        self._batch_codes: np.ndarray | None = None
        self.batch_levels = pd.Index([], dtype=object)
        if keys:
            labels = batch_labels(rna, keys, "rna", atac, atac_rows)
            self.batch_levels = pd.Index(batch_levels(rna, keys, labels), dtype=object)
            self._batch_codes = self.batch_levels.get_indexer(labels).astype(np.int64)
        rna_counts = raw_counts(rna, "rna")
        atac_counts = raw_counts(atac, "atac")
        if not np.array_equal(atac_rows, np.arange(len(atac_rows))):
            # in memory the only copy, and only when out of order; backed, a row index
            atac_counts = atac_counts.permute_rows(atac_rows)
        all_genes = pd.Index(rna.var_names.astype(str))
        all_peaks = pd.Index(atac.var_names.astype(str))
        check_unique(all_genes, "rna feature (gene)")
        check_unique(all_peaks, "atac feature (peak)")
        # what the model was built from: new cells' features outside these are reported
        self.input_genes, self.input_peaks = all_genes, all_peaks
        peak_coords_all = peak_ranges(atac.var)
        rna_counts, genes_kept = check_not_empty(rna_counts, self.obs_names, all_genes, "rna")
        atac_counts, self.peaks = check_not_empty(atac_counts, self.obs_names, all_peaks, "atac")
        self.peak_coords = peak_coords_all.loc[self.peaks]
        self.peak_detection: np.ndarray | None = atac_counts.detected / len(self.obs_names)
        n_cells = len(self.obs_names)
        self.settings.check_against_data(n_cells)

        self.gene_coords_all = self._annotation(gene_annotation)
        if check_build and self.gene_coords_all is not None:
            annotated = self.gene_coords_all[self.gene_coords_all.index.isin(all_genes)]
            warn_if_other_build(annotated, peak_coords_all, stacklevel=2)
        gene_index = self._select_genes(rna_counts, genes_kept)
        self.genes = genes_kept[gene_index]
        self.gene_coords = (
            self.gene_coords_all.reindex(self.genes) if self.gene_coords_all is not None else None
        )
        self.g2p = self._prior(g2p, all_genes, all_peaks)

        s = self.settings
        hvg_counts = rna_counts.counts.select_columns(gene_index).to_memory()  # cells x HVGs
        if rna_rep is None:
            clip = SCALE_CLIP if s.bounded_inputs else math.inf
            rna_input, pca = rna_pca(
                hvg_counts, rna_counts.cell_totals, s.n_components, s.preprocess_seed, clip,
                projected=s.projected_inputs,
            )  # fmt: skip
        else:
            rna_input, pca = reduction(rna_rep, rna, n_cells, np.arange(n_cells), "rna_rep"), None
        if atac_rep is None:
            atac_input, lsi = atac_lsi(
                atac_counts.counts, s.n_components, s.preprocess_seed, s.projected_inputs
            )
        else:
            atac_input = reduction(atac_rep, atac, n_cells, atac_rows, "atac_rep")
            lsi = None
        if s.bounded_inputs:  # LSI is standardised per cell already; a user's may not be
            rna_input = standardise_rows(rna_input)
            atac_input = standardise_rows(atac_input) if atac_rep is not None else atac_input
        self.projections: dict[str, PCAProjection | LSIProjection | None] = {
            "rna": pca,
            "atac": lsi,
        }
        self._data: TrainingData | None = TrainingData(
            rna_input,
            atac_input,
            InMemoryRows(hvg_counts),
            atac_counts.counts,
            log_library_size(rna_counts.cell_totals),
            log_library_size(atac_counts.cell_totals),
            self._batch_codes,
            len(self.batch_levels),
        )
        self._no_data = ""
        self._rna_rep, self._atac_rep = rna_input, atac_input
        self._rna_log_library = self._data.rna_log_library
        self._atac_log_library = self._data.atac_log_library
        self.architecture = Architecture(
            rna_input=rna_input.shape[1],
            atac_input=atac_input.shape[1],
            n_genes=len(self.genes),
            n_peaks=len(self.peaks),
            n_latent=s.n_latent,
            rna_hidden=tuple(s.rna_hidden),
            atac_hidden=tuple(s.atac_hidden),
            dropout=s.dropout,
            rna_likelihood=s.likelihood,
            atac_likelihood=s.likelihood,
            n_batches=len(self.batch_levels),
            encode_batch=s.encode_batch,
        )
        self.network = FactVAENetwork(self.architecture, self.g2p.indices())
        self.history: list[dict[str, float]] = []
        self.training_summary: dict[str, Any] = {}
        self.validation_cells = pd.Index([])
        self.is_trained = False
        self.device = torch.device("cpu")

    # ---- construction helpers -------------------------------------------------------------
    def _annotation(self, gene_annotation: AnnotationLike | None) -> pd.DataFrame | None:
        if gene_annotation is None:
            return None
        genes = read_gene_annotation(gene_annotation)
        return harmonise_chromosomes(genes, self.peak_coords)

    def _select_genes(self, rna: ModalityCounts, genes: pd.Index) -> np.ndarray:
        """Genes seen in >= min_cells cells (and annotated, when annotated), then the HVGs."""
        s = self.settings
        eligible = rna.detected >= s.min_cells
        if self.gene_coords_all is not None:
            annotated = genes.isin(self.gene_coords_all.index)
            if not annotated.any():
                raise FactVAEInputError(
                    "No rna gene name appears in the gene annotation (for example "
                    f"{genes[:3].tolist()} vs {self.gene_coords_all.index[:3].tolist()}); use an "
                    "annotation keyed by the same gene symbols."
                )
            eligible &= annotated
        candidates = np.nonzero(eligible)[0]
        if len(candidates) < 2:
            raise FactVAEInputError(
                f"Only {len(candidates)} genes are detected in >= {s.min_cells} cells"
                + (" and annotated" if self.gene_coords_all is not None else "")
                + "; lower min_cells= or check the rna counts."
            )
        chosen = highly_variable_genes(rna.counts.select_columns(candidates), s.n_hvg)
        return candidates[chosen]

    def _prior(self, g2p: Any, all_genes: pd.Index, all_peaks: pd.Index) -> GeneToPeak:
        if g2p is None:
            if self.gene_coords is None:
                raise FactVAEInputError(
                    "FactVAE needs a gene-to-peak prior: pass gene_annotation= (a BED/GTF path or "
                    "a frame with chrom, start, end, gene_name, strand) or g2p=."
                )
            frame = self.gene_coords.reset_index(names="gene_name")
            prior = gene_to_peak(frame, self.peak_coords, upstream=self.settings.upstream)
            prior = prior.subset(self.genes, self.peaks)
        else:
            if (sp.issparse(g2p) or isinstance(g2p, np.ndarray)) and g2p.shape == (
                len(all_genes),
                len(all_peaks),
            ):
                g2p = GeneToPeak(sp.csr_matrix(g2p, dtype=np.float32), all_genes, all_peaks)
            prior = coerce_g2p(g2p, self.genes, self.peaks)
        if prior.nnz == 0:
            raise FactVAEInputError(
                "No modelled gene's locus overlaps any peak, so the regulatory loss has no pairs. "
                "Check that the gene annotation and the peaks use the same genome build and "
                "chromosome names, or pass a g2p with pairs among the modelled genes."
            )
        return prior

    # ---- training -------------------------------------------------------------------------
    def fit(
        self,
        max_epochs: int | None = None,
        batch_size: int = RUN_DEFAULTS.batch_size,
        device: str = RUN_DEFAULTS.device,
        seed: int = RUN_DEFAULTS.seed,
        progress: bool = True,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = RUN_DEFAULTS.checkpoint_every,
        resume: bool = True,
        precision: str = RUN_DEFAULTS.precision,
        early_stopping: bool | None = None,
        validation_fraction: float | None = None,
        patience: int | None = None,
    ) -> FactVAE:
        """Train from scratch, or resume from a checkpoint in ``checkpoint_dir``; returns ``self``.

        Schedule arguments left as None take the model's settings (see
        :class:`factvae.settings.ModelSettings`): by default a seeded ``validation_fraction``
        (10%) of cells is held out, training stops once their loss has not improved for
        ``patience`` epochs (a tenth of the budget) and the best epoch's weights are restored;
        ``max_epochs`` defaults to a budget of about 500,000 cell passes (300 epochs at most),
        so large data sets take minutes. ``preset="paper"`` at construction trains the authors'
        300 epochs on every cell. A non-finite update is skipped; repeated failures roll back an
        epoch with a lower learning rate; only persistent failure raises
        :class:`TrainingDivergedError`, and the model then keeps its last good epoch (usable).
        Ctrl-C stops training at the next step with :class:`TrainingInterrupted`; the model
        likewise keeps its last finished epoch, and a checkpoint resumes from it.

        Each minibatch is densified on its own from sparse storage. The same ``seed`` gives
        the same model on the same CPU, bit for bit. Under ``torchrun`` each process trains on
        its own shard of cells and gradients are averaged across processes. ``precision``:
        ``"bf16"`` runs the decoders' factor products in bf16 (on CUDA: autocast), ``"float32"``
        runs everything in float32, and ``"auto"`` picks bf16 on CPUs with native bf16 units.
        """
        if self._data is None:
            raise FactVAEInputError(
                self._no_data
                or "This model was loaded from disk without its training counts; build a new "
                "FactVAE from the data to train again."
            )
        overrides = {
            name: value
            for name, value in (
                ("max_epochs", max_epochs),
                ("early_stopping", early_stopping),
                ("validation_fraction", validation_fraction),
                ("patience", patience),
            )
            if value is not None
        }
        settings = ModelSettings.from_kwargs({**self.settings.to_dict(), **overrides})
        _check_positive_int(batch_size, "batch_size")
        _check_positive_int(checkpoint_every, "checkpoint_every")
        settings.check_against_data(len(self.obs_names))
        self._check_batch_sizes(self._batch_codes, range(len(self.batch_levels)), batch_size)
        self.device = select_device(device)
        group = init_from_environment(self.device)
        if group.active and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", group.rank)))
        schedule = self._schedule(settings, seed)
        seed_everything(seed)
        self.network = FactVAENetwork(self.architecture, self.g2p.indices())
        trainer = Trainer(
            self.network,
            settings.loss_weights(len(self.peaks)),
            settings.optimiser(schedule.max_epochs),
            self.device,
            precision=precision,
            group=group,
        )
        policy = (
            CheckpointPolicy(
                Path(checkpoint_dir),
                checkpoint_every,
                resume,
                self._fingerprint(settings, schedule, batch_size, seed),
            )
            if checkpoint_dir
            else None
        )
        if progress and group.rank == 0:
            ranks = f", {group.world_size} processes" if group.active else ""
            held_out = len(schedule.validation_cells)
            patience = schedule.patience
            stop = f", early stopping (patience {patience})" if schedule.early_stopping else ""
            print(
                f"FactVAE: training on {self.device} ({len(schedule.train_cells)} cells"
                + (f", {held_out} held out for validation" if held_out else "")
                + f"{ranks}, {trainer.precision} products), at most {schedule.max_epochs} "
                f"epochs{stop}"
            )
        try:
            trainer.fit(self._data, schedule, batch_size, seed, progress, policy)
        except (TrainingDivergedError, TrainingInterrupted):
            # the trainer restored the last good epoch: keep it usable (and resumable)
            self._finish_training(trainer, schedule)
            self.is_trained = trainer.epoch > 0
            raise
        self._finish_training(trainer, schedule)
        self.is_trained = True
        return self

    def _check_batch_sizes(
        self, codes: np.ndarray | None, levels: Any, batch_size: int, what: str = "fit"
    ) -> None:
        """Every batch level (of ``levels``, codes) needs at least one minibatch of cells."""
        if codes is None:
            return
        sizes = np.bincount(codes, minlength=len(self.batch_levels))
        small = [f"{self.batch_levels[c]!r} ({sizes[c]} cells)" for c in levels
                 if sizes[c] < batch_size]  # fmt: skip
        if small:
            raise FactVAEInputError(
                f"batch level(s) {', '.join(small)} of batch_key={self.settings.batch_key!r} "
                f"have fewer cells than one minibatch (batch_size={batch_size}), too few to "
                "learn their offsets. Merge small levels into others or drop their cells, or "
                f"call {what}() with a smaller batch_size=."
            )

    def _schedule(self, settings: ModelSettings, seed: int) -> Schedule:
        """Training and validation cells (a seeded split), epochs and patience."""
        n_cells = len(self.obs_names)
        n_validation = settings.validation_cells(n_cells)
        order = np.random.default_rng([seed, 2]).permutation(n_cells)
        validation = np.sort(order[:n_validation])
        train = np.sort(order[n_validation:]) if n_validation else np.arange(n_cells)
        max_epochs = settings.max_epochs or auto_max_epochs(len(train))
        return Schedule(
            max_epochs=max_epochs,
            train_cells=train,
            validation_cells=validation,
            early_stopping=settings.early_stopping,
            patience=settings.patience or auto_patience(max_epochs),
        )

    def _fingerprint(
        self, settings: ModelSettings, schedule: Schedule, batch_size: int, seed: int
    ) -> dict[str, Any]:
        """What a checkpoint of this fit depends on: the cells, features, prior and counts (by
        digest), every setting, the schedule, batch size and seed."""
        data = self._data
        assert data is not None  # fit() refuses a loaded model before this
        digest = hashlib.sha256()
        for array in (data.rna_log_library, data.atac_log_library, *self.g2p.indices()):
            digest.update(np.ascontiguousarray(array).tobytes())
        batches = {}
        if self._batch_codes is not None:
            digest.update(self._batch_codes.tobytes())
            batches = {"batch levels": [str(level) for level in self.batch_levels]}
        return {
            "cells": _names_digest(self.obs_names),
            "genes": _names_digest(self.genes),
            "peaks": _names_digest(self.peaks),
            "counts and prior": digest.hexdigest(),
            **settings.to_dict(),
            "max_epochs": schedule.max_epochs,
            "validation cells": _names_digest(self.obs_names[schedule.validation_cells]),
            "batch_size": int(batch_size),
            "seed": int(seed),
            **batches,
        }

    def _finish_training(self, trainer: Trainer, schedule: Schedule) -> None:
        """What the run did, kept on the model (and saved with it)."""
        self.history = trainer.history
        stopper = trainer.stopper
        self.training_summary = {
            "epochs": trainer.epoch,
            "max_epochs": schedule.max_epochs,
            "atac_recon_weight": trainer.weights.atac_recon,
            "stopped_early": bool(stopper is not None and stopper.stopped),
            "best_epoch": stopper.best_epoch if stopper and schedule.early_stopping else None,
            "validation_cells": len(schedule.validation_cells),
            "skipped_steps": trainer.skipped_steps,
            "rollbacks": trainer.rollbacks,
        }
        self.validation_cells = self.obs_names[schedule.validation_cells]

    # ---- outputs --------------------------------------------------------------------------
    def _require_trained(self) -> None:
        if not self.is_trained:
            raise FactVAEInputError("The model is not trained yet; call fit() first.")

    def get_latent(self, kind: str = "joint", rna: Any = None, atac: Any = None) -> np.ndarray:
        """Cell embeddings (posterior means): ``joint`` = concat(z_atac, z_rna), or one side.

        Without ``rna``/``atac``: the model's own cells. With new AnnData (raw counts, like the
        training data; ``rna`` for ``kind="rna"``, ``atac`` for ``"atac"``, both for ``joint``,
        matched by cell name) the cells are embedded by the trained encoders with no
        training: their counts go through the preprocessing saved at fit time (the RNA:
        the modelled genes, normalised, clipped and scaled with the training cells' values,
        projected on the PCA, then standardised per cell with ``bounded_inputs``; the ATAC:
        TF-IDF with the training IDF, projected on the LSI). Features are matched by name;
        missing ones count as zeros and are reported in a warning, as are features the model
        was not built from. Rows are in ``rna``'s cell order (``atac``'s for ``kind="atac"``
        alone). With ``encode_batch`` the new cells need the batch column(s), with levels
        the model knows (new levels: :meth:`map_query`). The model's own cells mapped again
        get exactly their own latent with ``projected_inputs=True``; by default the SVD's own
        scores are matched only as far as the randomized SVD converged.
        """
        self._require_trained()
        if rna is None and atac is None:
            return latent_means(
                self.network, self._rna_rep, self._atac_rep, kind, self.device,
                batch=self._batch_codes,
            )  # fmt: skip
        if kind not in ("joint", "rna", "atac"):
            raise FactVAEInputError(f"kind must be 'joint', 'rna' or 'atac', not {kind!r}.")
        cells = self._new_cells(
            rna, atac, kind in ("joint", "rna"), kind in ("joint", "atac"),
            counts=False, labels=self.settings.encode_batch, what=f"get_latent({kind!r})",
        )  # fmt: skip
        codes = None
        if self.settings.encode_batch:
            codes = self._known_codes(cells.labels, "get_latent")
        return latent_means(
            self.network, cells.rna_rep, cells.atac_rep, kind, self.device, batch=codes
        )

    def gene_embeddings(self) -> pd.DataFrame:
        """Genes x latent: the columns of the RNA decoder's factor matrix."""
        self._require_trained()
        values = self.network.rna_decoder.feature.detach().cpu().numpy().T
        return pd.DataFrame(values, index=self.genes, columns=_latent_names(values.shape[1]))

    def peak_embeddings(self) -> pd.DataFrame:
        """Peaks x latent: the columns of the ATAC decoder's factor matrix."""
        self._require_trained()
        values = self.network.atac_decoder.feature.detach().cpu().numpy().T
        return pd.DataFrame(values, index=self.peaks, columns=_latent_names(values.shape[1]))

    def augment_atac(
        self,
        cells: Any = None,
        peaks: Any = None,
        chunk_size: int = RUN_DEFAULTS.chunk_size,
        threshold: float | None = None,
        out: str | Path | None = None,
        batch: str | None = None,
    ) -> np.ndarray | sp.csr_matrix | Path:
        """Augmented ATAC (Eq. 12) for the chosen cells x peaks, computed chunk by chunk.

        Dense float32 when ``threshold`` is None, else CSR keeping values >= ``threshold``.
        With ``out=`` (an .h5ad path) the chunks are streamed to disk and the path returned,
        so memory stays bounded by one chunk whatever the matrix size. With a batch covariate
        each cell is decoded in its own batch (``batch=None``), or every cell in the batch
        level ``batch`` (one of ``batch_levels``): the accessibility the cells would have
        had in that sample, a common reference for comparing samples.
        """
        self._require_trained()
        own, decoded_in = self._decoder_batches(batch)
        _check_positive_int(chunk_size, "chunk_size")
        if threshold is not None and not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise FactVAEInputError(f"threshold must be a number >= 0, got {threshold!r}.")
        cell_rows = _positions(self.obs_names, cells, "cells")
        peak_cols = _positions(self.peaks, peaks, "peaks")
        atac_rep = self._atac_rep[cell_rows]
        log_library = self._atac_log_library[cell_rows]
        own = None if own is None else own[cell_rows]
        decoded_in = None if decoded_in is None else decoded_in[cell_rows]
        if out is not None:
            chunks = augmented_chunks(
                self.network, atac_rep, log_library, peak_cols, self.device, chunk_size, own,
                decoded_in,
            )  # fmt: skip
            return write_h5ad_chunks(
                Path(out),
                chunks,
                self.obs_names[cell_rows],
                self.peak_coords.iloc[peak_cols],
                threshold,
            )
        return augment(
            self.network, atac_rep, log_library, peak_cols, self.device, chunk_size, threshold,
            own, decoded_in,
        )  # fmt: skip

    def _decoder_batches(self, batch: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The cells' own batch codes and those they are decoded in (``batch``: one level)."""
        if self._batch_codes is None:
            if batch is not None:
                raise FactVAEInputError(
                    f"batch={batch!r}: this model has no batch covariate (build it with "
                    "batch_key= to decode cells in a chosen batch); leave batch=None."
                )
            return None, None
        if batch is None:
            return self._batch_codes, self._batch_codes
        code = self.batch_levels.get_indexer([str(batch)])[0]
        if code < 0:
            raise FactVAEInputError(
                f"batch={batch!r} is not a batch level of this model; its levels are "
                f"{list(self.batch_levels)[:20]} (or pass batch=None to decode each cell in "
                "its own batch)."
            )
        return self._batch_codes, np.full(len(self._batch_codes), code, dtype=np.int64)

    def infer_links(
        self,
        window: int = RUN_DEFAULTS.link_window,
        n_background: int = RUN_DEFAULTS.n_background,
        seed: int = RUN_DEFAULTS.seed,
        score: str = RUN_DEFAULTS.link_score,
        rna: Any = None,
        genes: Any = None,
        gene_annotation: AnnotationLike | None = None,
    ) -> pd.DataFrame:
        """Gene-peak links within ``window`` bp of each TSS, ranked and tested.

        Genes: with ``rna`` (this model's cells' raw counts, every gene) every annotated gene
        detected in at least ``link_min_detection`` (1%) of its cells, or the names in
        ``genes``; a gene outside the modelled HVGs gets a ridge loading on the RNA latent
        (:mod:`factvae.outputs.gene_loadings`). Without ``rna``, the modelled genes (or those
        of ``genes`` among them). Coordinates come from ``gene_annotation`` or, by default, the
        annotation the model was built with (a loaded model keeps its modelled genes' only).

        ``score="combined"`` (default) ranks by the peak's power-law contact with the TSS as a
        share of the gene's candidates (as ABC without Hi-C), weighted by the model's
        co-variation of the pair; ``"abc"`` by accessibility x contact as that share;
        ``"correlation"`` by the co-variation alone; ``"cosine"`` by the paper's embedding
        cosine. ``pvalue``/``qvalue``: the co-variation
        against peaks of matched accessibility on other chromosomes, as Signac's LinkPeaks;
        ``pvalue_cis``/``qvalue_cis``: against up to ``n_background`` candidates outside the
        prior at the same distance with equally accessible peaks (beyond distance). See
        :mod:`factvae.outputs.links` for every column.
        """
        self._require_trained()
        if score not in LINK_SCORES:
            raise FactVAEInputError(f"score must be one of {list(LINK_SCORES)}, not {score!r}.")
        annotation = (
            self._annotation(gene_annotation)
            if gene_annotation is not None
            else self.gene_coords_all
        )
        if annotation is None:
            raise FactVAEInputError(
                "infer_links needs gene coordinates: build the model with gene_annotation= or "
                "pass gene_annotation= here."
            )
        annotation = annotation[~annotation.index.duplicated()].dropna()
        factors = self.gene_embeddings()
        rna_latent = self.get_latent("rna").astype(np.float64)
        if rna is None:
            names = self.genes if genes is None else pd.Index(np.asarray(genes).astype(str))
            outside = names[~names.isin(self.genes)]
            if len(outside):
                raise FactVAEInputError(
                    f"genes {outside[:3].tolist()} are not modelled genes; pass rna= (raw counts "
                    "of this model's cells) to link genes outside the modelled set."
                )
            chosen = names[names.isin(annotation.index)]
            loadings = factors.loc[chosen].to_numpy(dtype=np.float64)
        else:
            chosen, loadings = link_gene_loadings(
                rna, genes, self.obs_names, annotation.index, factors, rna_latent
            )
        if len(chosen) == 0:
            raise FactVAEInputError("None of the chosen genes has coordinates in the annotation.")
        located = annotation.loc[chosen].astype({"start": np.int64, "end": np.int64})
        peaks = self.peak_embeddings().to_numpy(dtype=np.float64)
        if score == "cosine":
            scorer = cosine_scorer(loadings, peaks)
        else:
            scorer = correlation_scorer(
                loadings, peaks, rna_latent, self.get_latent("atac").astype(np.float64)
            )
        rows = self.genes.get_indexer(chosen)
        prior = sp.csr_matrix(self.g2p.matrix)[np.maximum(rows, 0)]
        prior = sp.diags((rows >= 0).astype(np.float32)) @ prior  # unmodelled: no prior pairs
        return infer_links(
            scorer,
            located,
            self.peak_coords,
            window,
            n_background,
            seed,
            prior=prior,
            accessibility=self.peak_detection,
            score=score,
            modelled=rows >= 0,
        )

    # ---- new cells: embedding them, and learning their batches ------------------------------
    def map_query(
        self,
        rna: Any,
        atac: Any,
        max_epochs: int | None = None,
        batch_size: int = RUN_DEFAULTS.batch_size,
        seed: int = RUN_DEFAULTS.seed,
        progress: bool = True,
        device: str = RUN_DEFAULTS.device,
        precision: str = RUN_DEFAULTS.precision,
    ) -> FactVAE:
        """A new model for the query cells ``rna``/``atac`` (raw counts, with the batch
        column(s) of ``batch_key``), adapted to their new batches as scArches does; this
        model is left exactly as it is.

        The query's cells are embedded as :meth:`get_latent` with ``rna=``/``atac=`` does. Its
        batch levels that this model knows reuse their offsets; the new ones are appended
        (``batch_levels`` = this model's + the new, in order) and only their parameters are
        trained: the new rows of each decoder's batch offsets and, with ``encode_batch``, the
        encoders' new input columns. Every other parameter is frozen (gradients exactly zero,
        so it does not move by a bit) and the SSA step, which trains the ATAC encoder, is
        skipped. The returned model's ``get_latent()`` is the query cells' latent in this
        model's space, and its ``augment_atac`` decodes them (``batch=`` any level, old or
        new). Training follows this model's schedule settings (validation cells and early
        stopping) on the query cells; ``max_epochs`` defaults to the cell-scaled budget. Each
        new level needs at least ``batch_size`` cells. Needs a model built with
        ``batch_key``; without one there is nothing to adapt, and ``get_latent(rna=,
        atac=)`` embeds new cells directly.
        """
        self._require_trained()
        if not self.settings.batch_keys:
            raise FactVAEInputError(
                "map_query learns the new batches of query cells, so it needs a model built "
                "with batch_key=; this one has none. To embed new cells with this model as it "
                "is, use get_latent(rna=..., atac=...)."
            )
        _check_positive_int(batch_size, "batch_size")
        if max_epochs is not None:
            _check_positive_int(max_epochs, "max_epochs")
        cells = self._new_cells(rna, atac, True, True, counts=True, labels=True,
                                what="map_query")  # fmt: skip
        assert cells.labels is not None
        query_levels = batch_levels(rna, self.settings.batch_keys, cells.labels)
        new_levels = [level for level in query_levels if level not in self.batch_levels]
        mapped = self._mapped_copy(cells, new_levels)
        n_reference = len(self.batch_levels)
        mapped._check_batch_sizes(
            mapped._batch_codes, range(n_reference, len(mapped.batch_levels)), batch_size,
            "map_query",
        )  # fmt: skip
        overrides: dict[str, Any] = {} if max_epochs is None else {"max_epochs": max_epochs}
        if 0 < self.settings.validation_cells(len(cells.obs_names)) < 2:
            overrides["validation_fraction"] = 0.0  # too few query cells to hold any out
        settings = ModelSettings.from_kwargs({**self.settings.to_dict(), **overrides})
        schedule = mapped._schedule(settings, seed)
        data, mapped._data = mapped._data, None  # a mapped model cannot be fit() again
        assert data is not None
        mapped.device = select_device(device)
        mapped.network.to(mapped.device)
        if not new_levels:
            mapped.training_summary = {**mapped.training_summary, "epochs": 0}
            return mapped
        seed_everything(seed)
        handles = mapped.network.train_only_batches_from(n_reference)
        try:
            trainer = Trainer(
                mapped.network,
                settings.loss_weights(len(mapped.peaks)),
                settings.optimiser(schedule.max_epochs),
                mapped.device,
                precision=precision,
                trainable=mapped.network.trainable_parameters(),
                ssa=False,
            )
            if progress:
                print(
                    f"FactVAE: mapping {len(cells.obs_names)} query cells on {mapped.device}: "
                    f"training {len(new_levels)} new batch level(s) {new_levels[:5]}, the rest "
                    f"frozen, at most {schedule.max_epochs} epochs"
                )
            trainer.fit(data, schedule, batch_size, seed, progress)
        finally:
            mapped.network.unfreeze(handles)
        summary = mapped.training_summary
        mapped._finish_training(trainer, schedule)
        mapped.training_summary.update(summary)
        return mapped

    def _mapped_copy(self, cells: _NewCells, new_levels: list[str]) -> FactVAE:
        """A model of the query ``cells`` that shares this one's features, prior and
        preprocessing, with a copy of its network grown by ``new_levels`` (nothing of this
        model is changed, and nothing mutable is shared)."""
        mapped = FactVAE.__new__(FactVAE)
        shared = ("settings", "genes", "peaks", "peak_coords", "peak_detection", "gene_coords",
                  "gene_coords_all", "g2p", "input_genes", "input_peaks")  # fmt: skip
        for name in shared:  # never changed in place, by either model
            setattr(mapped, name, getattr(self, name))
        mapped.projections = dict(self.projections)
        mapped.batch_levels = pd.Index([*self.batch_levels, *new_levels], dtype=object)
        assert cells.labels is not None
        mapped._batch_codes = mapped.batch_levels.get_indexer(cells.labels).astype(np.int64)
        mapped.obs_names = cells.obs_names
        assert cells.rna_rep is not None and cells.atac_rep is not None
        mapped._rna_rep, mapped._atac_rep = cells.rna_rep, cells.atac_rep
        assert cells.rna_log_library is not None and cells.atac_log_library is not None
        mapped._rna_log_library, mapped._atac_log_library = (
            cells.rna_log_library, cells.atac_log_library,
        )  # fmt: skip
        if new_levels:
            mapped.network = self.network.with_new_batches(len(new_levels))
        else:
            mapped.network = copy.deepcopy(self.network)
        mapped.architecture = mapped.network.arch
        assert cells.rna_counts is not None and cells.atac_counts is not None
        mapped._data = TrainingData(
            cells.rna_rep, cells.atac_rep, cells.rna_counts, cells.atac_counts,
            cells.rna_log_library, cells.atac_log_library, mapped._batch_codes,
            len(mapped.batch_levels),
        )  # fmt: skip
        mapped._no_data = (
            "This model was made by map_query: only its new batch levels were trained, on "
            "query cells. To train every parameter, build a FactVAE on the reference and query "
            "cells together (with batch_key=) and fit it."
        )
        mapped.history = []
        mapped.training_summary = {
            "mapped_query": True,
            "reference_batch_levels": [str(level) for level in self.batch_levels],
            "new_batch_levels": list(new_levels),
        }
        mapped.validation_cells = pd.Index([])
        mapped.is_trained = True
        mapped.device = self.device
        return mapped

    def _new_cells(
        self,
        rna: Any,
        atac: Any,
        need_rna: bool,
        need_atac: bool,
        counts: bool,
        labels: bool,
        what: str,
    ) -> _NewCells:
        """New cells' encoder inputs through the preprocessing saved at fit time, their
        features matched to the model's by name; with ``counts``, also their aligned counts
        and size factors; with ``labels``, their batch labels."""
        for given, needed, name in ((rna, need_rna, "rna"), (atac, need_atac, "atac")):
            if needed and given is None:
                raise FactVAEInputError(
                    f"{what} needs the new cells' {name} counts: pass {name}= (an AnnData of "
                    "raw counts)."
                )
        atac_rows = None
        if rna is not None and atac is not None:
            obs_names, atac_rows = match_cells(rna, atac)
        else:
            obs_names = cell_names(rna if rna is not None else atac,
                                   "rna" if rna is not None else "atac")  # fmt: skip
        cells = _NewCells(obs_names)
        if labels:
            keys = self.settings.batch_keys
            primary, name = (rna, "rna") if rna is not None else (atac, "atac")
            other = atac if rna is not None else None
            cells.labels = batch_labels(primary, keys, name, other, atac_rows)
        if need_rna or (counts and rna is not None):
            pca = self.projections.get("rna")
            if pca is None:
                raise FactVAEInputError(
                    "This model was built on a precomputed rna_rep, so it cannot compute the "
                    "RNA input of new cells from their counts; build it from the counts "
                    "(without rna_rep=) to map new cells."
                )
            modality = raw_counts(rna, "rna")
            positions = align_features(
                pd.Index(rna.var_names.astype(str)), self.genes, self.input_genes, "rna", "gene"
            )
            aligned = modality.counts.map(partial(align_columns, positions=positions))
            assert isinstance(pca, PCAProjection)
            rep = pca.project(aligned, modality.cell_totals)
            cells.rna_rep = standardise_rows(rep) if self.settings.bounded_inputs else rep
            if counts:
                cells.rna_counts = InMemoryRows(aligned.to_memory())
                cells.rna_log_library = _log_library(modality.cell_totals, obs_names, "rna")
        if need_atac or (counts and atac is not None):
            lsi = self.projections.get("atac")
            if lsi is None:
                raise FactVAEInputError(
                    "This model was built on a precomputed atac_rep, so it cannot compute the "
                    "ATAC input of new cells from their counts; build it from the counts "
                    "(without atac_rep=) to map new cells."
                )
            modality = raw_counts(atac, "atac")
            if atac_rows is not None and not np.array_equal(atac_rows, np.arange(len(atac_rows))):
                modality = modality.permute_rows(atac_rows)
            positions = align_features(
                pd.Index(atac.var_names.astype(str)), self.peaks, self.input_peaks, "atac",
                "peak",
            )  # fmt: skip
            aligned = modality.counts.map(partial(align_columns, positions=positions))
            assert isinstance(lsi, LSIProjection)
            cells.atac_rep = lsi.project(aligned)
            if counts:
                cells.atac_counts = aligned
                cells.atac_log_library = _log_library(modality.cell_totals, obs_names, "atac")
        return cells

    def _known_codes(self, labels: np.ndarray | None, what: str) -> np.ndarray:
        """Codes of batch labels that must all be levels of this model."""
        assert labels is not None
        codes = self.batch_levels.get_indexer(labels)
        if (codes < 0).any():
            unknown = sorted(set(labels[codes < 0]))
            raise FactVAEInputError(
                f"{what}: batch level(s) {unknown[:5]} of the new cells are not levels of this "
                f"model ({list(self.batch_levels)[:10]}), and its encoders read the batch "
                "(encode_batch=True). Learn them first with map_query(), which returns a model "
                "that knows them."
            )
        return codes.astype(np.int64)

    # ---- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write weights, settings, feature names, projections and versions to a folder."""
        self._require_trained()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        save_torch(folder / WEIGHTS_FILE, self.network.state_dict())
        arrays: dict[str, np.ndarray] = {
            "obs_names": self.obs_names.to_numpy(dtype=str),
            "genes": self.genes.to_numpy(dtype=str),
            "peaks": self.peaks.to_numpy(dtype=str),
            "peak_chrom": self.peak_coords["chrom"].to_numpy(dtype=str),
            "peak_start": self.peak_coords["start"].to_numpy(),
            "peak_end": self.peak_coords["end"].to_numpy(),
            "rna_rep": self._rna_rep,
            "atac_rep": self._atac_rep,
            "rna_log_library": self._rna_log_library,
            "atac_log_library": self._atac_log_library,
            "g2p_rows": self.g2p.indices()[0],
            "g2p_cols": self.g2p.indices()[1],
            "input_genes": self.input_genes.to_numpy(dtype=str),
            "input_peaks": self.input_peaks.to_numpy(dtype=str),
        }
        if self._batch_codes is not None:
            arrays["batch_levels"] = self.batch_levels.to_numpy(dtype=str)
            arrays["batch_codes"] = self._batch_codes
        if self.peak_detection is not None:
            arrays["peak_detection"] = self.peak_detection
        if self.gene_coords is not None:
            arrays.update(
                gene_chrom=self.gene_coords["chrom"].fillna("").to_numpy(dtype=str),
                gene_start=self.gene_coords["start"].fillna(-1).to_numpy(dtype=np.int64),
                gene_end=self.gene_coords["end"].fillna(-1).to_numpy(dtype=np.int64),
                gene_strand=self.gene_coords["strand"].fillna("+").to_numpy(dtype=str),
            )
        for name, projection in self.projections.items():
            if projection is not None:
                for key, value in asdict(projection).items():
                    arrays[f"{name}_projection_{key}"] = np.asarray(value)
        save_arrays(folder / ARRAYS_FILE, arrays)
        save_json(
            folder / SETTINGS_FILE,
            {
                "settings": self.settings.to_dict(),
                "architecture": asdict(self.architecture),
                "history": self.history,
                "training_summary": self.training_summary,
                "versions": {
                    "factvae": __version__,
                    "torch": torch.__version__,
                    "numpy": np.__version__,
                    "python": platform.python_version(),
                },
            },
        )
        return folder

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> FactVAE:
        """A trained model from ``save``; gives the same outputs. Never unpickles objects."""
        folder = Path(path)
        for name in (SETTINGS_FILE, WEIGHTS_FILE, ARRAYS_FILE):
            if not (folder / name).exists():
                raise FactVAEInputError(
                    f"{folder} is not a saved FactVAE model ({name} is missing)."
                )
        meta = load_json(folder / SETTINGS_FILE)
        arrays = load_arrays(folder / ARRAYS_FILE)
        model = cls.__new__(cls)
        model.settings = ModelSettings.from_kwargs(meta["settings"])
        arch = dict(meta["architecture"])
        arch["rna_hidden"], arch["atac_hidden"] = (
            tuple(arch["rna_hidden"]),
            tuple(arch["atac_hidden"]),
        )
        arch.setdefault("n_batches", 0)  # saved before batch covariates existed
        arch.setdefault("encode_batch", False)
        model.architecture = Architecture(**arch)
        model.history = meta["history"]
        model.training_summary = meta.get("training_summary", {})
        model.validation_cells = pd.Index([])
        model.obs_names = pd.Index(arrays["obs_names"])
        model.genes = pd.Index(arrays["genes"])
        model.peaks = pd.Index(arrays["peaks"])
        # older saves lack them: every unused feature of new cells is then reported
        model.input_genes = pd.Index(arrays.get("input_genes", model.genes))
        model.input_peaks = pd.Index(arrays.get("input_peaks", model.peaks))
        levels = [str(level) for level in arrays.get("batch_levels", [])]
        model.batch_levels = pd.Index(levels, dtype=object)
        model._batch_codes = arrays.get("batch_codes")
        model.peak_coords = pd.DataFrame(
            {
                "chrom": arrays["peak_chrom"],
                "start": arrays["peak_start"],
                "end": arrays["peak_end"],
            },
            index=model.peaks,
        )
        if "gene_chrom" in arrays:
            coords = pd.DataFrame(
                {
                    "chrom": arrays["gene_chrom"],
                    "start": arrays["gene_start"],
                    "end": arrays["gene_end"],
                    "strand": arrays["gene_strand"],
                },
                index=model.genes,
            )
            model.gene_coords = coords[coords["start"] >= 0].reindex(model.genes)
        else:
            model.gene_coords = None
        model.gene_coords_all = model.gene_coords
        # older saves lack it: their links are then matched on distance alone
        model.peak_detection = arrays.get("peak_detection")
        model.g2p = GeneToPeak(
            sp.csr_matrix(
                (
                    np.ones(len(arrays["g2p_rows"]), dtype=np.float32),
                    (arrays["g2p_rows"], arrays["g2p_cols"]),
                ),
                shape=(len(model.genes), len(model.peaks)),
            ),
            model.genes,
            model.peaks,
        )
        model.network = FactVAENetwork(model.architecture, model.g2p.indices())
        model.network.load_state_dict(load_torch(folder / WEIGHTS_FILE))
        model.device = select_device(device)
        model.network.to(model.device)
        model._rna_rep, model._atac_rep = arrays["rna_rep"], arrays["atac_rep"]
        model._rna_log_library = arrays["rna_log_library"]
        model._atac_log_library = arrays["atac_log_library"]
        model.projections = {
            "rna": _projection(arrays, "rna", PCAProjection),
            "atac": _projection(arrays, "atac", LSIProjection),
        }
        model._data = None
        model._no_data = ""
        model.is_trained = True
        return model

    def __repr__(self) -> str:
        state = f"trained {len(self.history)} epochs" if self.is_trained else "not trained"
        batches = f", {len(self.batch_levels)} batches" if len(self.batch_levels) else ""
        return (
            f"FactVAE({len(self.obs_names)} cells, {len(self.genes)} genes, {len(self.peaks)} "
            f"peaks, {self.g2p.nnz} prior pairs, latent {self.architecture.n_latent}{batches}; "
            f"{state})"
        )


@dataclass
class _NewCells:
    """New cells as the model sees them (see ``FactVAE._new_cells``)."""

    obs_names: pd.Index
    labels: np.ndarray | None = None
    rna_rep: np.ndarray | None = None
    atac_rep: np.ndarray | None = None
    rna_counts: RowSource | None = None
    atac_counts: RowSource | None = None
    rna_log_library: np.ndarray | None = None
    atac_log_library: np.ndarray | None = None


def _log_library(totals: np.ndarray, cells: pd.Index, what: str) -> np.ndarray:
    """Size factors of new cells; a cell without counts has none."""
    if (totals == 0).any():
        raise FactVAEInputError(
            f"{int((totals == 0).sum())} new cells have no {what} counts (for example "
            f"{cells[totals == 0][:3].tolist()}); remove them first (their library size is zero)."
        )
    return log_library_size(totals)


def _projection(arrays: dict[str, np.ndarray], name: str, kind: type) -> Any:
    prefix = f"{name}_projection_"
    values: dict[str, Any] = {
        k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)
    }
    if not values:
        return None
    for key in ("target_sum", "clip"):
        if key in values:
            values[key] = float(values[key])
    return kind(**values)


def _names_digest(names: pd.Index) -> str:
    return hashlib.sha256("\n".join(map(str, names)).encode()).hexdigest()


def _latent_names(n: int) -> list[str]:
    return [f"factor_{i + 1}" for i in range(n)]


def _positions(index: pd.Index, chosen: Any, what: str) -> np.ndarray:
    """Row positions of the chosen names (or integer positions, or a boolean mask); all if None."""
    if chosen is None:
        return np.arange(len(index))
    values = np.asarray(chosen)
    if values.dtype == bool:
        if len(values) != len(index):
            raise FactVAEInputError(f"A boolean {what} mask needs {len(index)} entries.")
        return np.nonzero(values)[0]
    if np.issubdtype(values.dtype, np.integer):
        if ((values < 0) | (values >= len(index))).any():
            raise FactVAEInputError(f"Some {what} positions are out of range 0..{len(index) - 1}.")
        return values
    positions = index.get_indexer(values.astype(str))
    if (positions < 0).any():
        missing = values[positions < 0][:3].tolist()
        raise FactVAEInputError(f"Unknown {what}: {missing} are not in the model.")
    return positions


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FactVAEInputError(f"{name} must be a positive integer, got {value!r}.")
