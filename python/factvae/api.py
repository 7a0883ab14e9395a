"""The user-facing ``FactVAE`` class: paired AnnData in; embeddings, augmented ATAC, links out."""

from __future__ import annotations

import hashlib
import math
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from factvae import __version__
from factvae.data.counts import InMemoryRows
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
    check_not_empty,
    check_unique,
    match_cells,
    raw_counts,
    reduction,
)
from factvae.errors import FactVAEInputError, TrainingDivergedError
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
    open until ``fit`` is done. The gene-to-peak prior comes from ``gene_annotation``
    (frame or BED/GTF path) or a ready ``g2p``. Settings default to the authors' model and
    loss with a training schedule made for real data sizes (validation cells, early stopping,
    a budget that shrinks the epochs as cells grow, bounded encoder inputs); ``preset="paper"``
    gives the authors' 300-epoch schedule exactly. See :class:`factvae.settings.ModelSettings`.
    """

    def __init__(
        self,
        rna: Any,
        atac: Any,
        gene_annotation: AnnotationLike | None = None,
        g2p: Any = None,
        *,
        rna_rep: Any = None,
        atac_rep: Any = None,
        preset: str = "default",
        **settings: Any,
    ) -> None:
        self.settings = ModelSettings.from_kwargs(settings, preset)
        self.obs_names, atac_rows = match_cells(rna, atac)
        rna_counts = raw_counts(rna, "rna")
        atac_counts = raw_counts(atac, "atac")
        if not np.array_equal(atac_rows, np.arange(len(atac_rows))):
            # in memory the only copy, and only when out of order; backed, a row index
            atac_counts = atac_counts.permute_rows(atac_rows)
        all_genes = pd.Index(rna.var_names.astype(str))
        all_peaks = pd.Index(atac.var_names.astype(str))
        check_unique(all_genes, "rna feature (gene)")
        check_unique(all_peaks, "atac feature (peak)")
        peak_coords_all = peak_ranges(atac.var)
        rna_counts, genes_kept = check_not_empty(rna_counts, self.obs_names, all_genes, "rna")
        atac_counts, self.peaks = check_not_empty(atac_counts, self.obs_names, all_peaks, "atac")
        self.peak_coords = peak_coords_all.loc[self.peaks]
        self.peak_detection: np.ndarray | None = atac_counts.detected / len(self.obs_names)
        n_cells = len(self.obs_names)
        self.settings.check_against_data(n_cells)

        self.gene_coords_all = self._annotation(gene_annotation)
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
                hvg_counts, rna_counts.cell_totals, s.n_components, s.preprocess_seed, clip
            )
        else:
            rna_input, pca = reduction(rna_rep, rna, n_cells, np.arange(n_cells), "rna_rep"), None
        if atac_rep is None:
            atac_input, lsi = atac_lsi(atac_counts.counts, s.n_components, s.preprocess_seed)
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
        )
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

        Each minibatch is densified on its own from sparse storage. The same ``seed`` gives
        the same model on the same CPU, bit for bit. Under ``torchrun`` each process trains on
        its own shard of cells and gradients are averaged across processes. ``precision``:
        ``"bf16"`` runs the decoders' factor products in bf16 (on CUDA: autocast), ``"float32"``
        runs everything in float32, and ``"auto"`` picks bf16 on CPUs with native bf16 units.
        """
        if self._data is None:
            raise FactVAEInputError(
                "This model was loaded from disk without its training counts; build a new "
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
        self.device = select_device(device)
        group = init_from_environment(self.device)
        if group.active and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", group.rank)))
        schedule = self._schedule(settings, seed)
        seed_everything(seed)
        self.network = FactVAENetwork(self.architecture, self.g2p.indices())
        trainer = Trainer(
            self.network,
            settings.loss_weights(),
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
        except TrainingDivergedError:
            self._finish_training(trainer, schedule)
            self.is_trained = trainer.epoch > 0
            raise
        self._finish_training(trainer, schedule)
        self.is_trained = True
        return self

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
        }

    def _finish_training(self, trainer: Trainer, schedule: Schedule) -> None:
        """What the run did, kept on the model (and saved with it)."""
        self.history = trainer.history
        stopper = trainer.stopper
        self.training_summary = {
            "epochs": trainer.epoch,
            "max_epochs": schedule.max_epochs,
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

    def get_latent(self, kind: str = "joint") -> np.ndarray:
        """Cell embeddings (posterior means): ``joint`` = concat(z_atac, z_rna), or one side."""
        self._require_trained()
        return latent_means(self.network, self._rna_rep, self._atac_rep, kind, self.device)

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
    ) -> np.ndarray | sp.csr_matrix | Path:
        """Augmented ATAC (Eq. 12) for the chosen cells x peaks, computed chunk by chunk.

        Dense float32 when ``threshold`` is None, else CSR keeping values >= ``threshold``.
        With ``out=`` (an .h5ad path) the chunks are streamed to disk and the path returned,
        so memory stays bounded by one chunk whatever the matrix size.
        """
        self._require_trained()
        _check_positive_int(chunk_size, "chunk_size")
        if threshold is not None and not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise FactVAEInputError(f"threshold must be a number >= 0, got {threshold!r}.")
        cell_rows = _positions(self.obs_names, cells, "cells")
        peak_cols = _positions(self.peaks, peaks, "peaks")
        atac_rep = self._atac_rep[cell_rows]
        log_library = self._atac_log_library[cell_rows]
        if out is not None:
            chunks = augmented_chunks(
                self.network, atac_rep, log_library, peak_cols, self.device, chunk_size
            )
            return write_h5ad_chunks(
                Path(out),
                chunks,
                self.obs_names[cell_rows],
                self.peak_coords.iloc[peak_cols],
                threshold,
            )
        return augment(
            self.network, atac_rep, log_library, peak_cols, self.device, chunk_size, threshold
        )

    def infer_links(
        self,
        window: int = RUN_DEFAULTS.link_window,
        n_background: int = RUN_DEFAULTS.n_background,
        seed: int = RUN_DEFAULTS.seed,
        score: str = RUN_DEFAULTS.link_score,
    ) -> pd.DataFrame:
        """Gene-peak links within ``window`` bp of each TSS, scored and tested.

        ``score="correlation"`` (default) correlates the gene's and the peak's contributions
        to the decoders over cells; ``"cosine"`` is the paper's embedding cosine. Each link is
        tested against up to ``n_background`` pairs outside the prior matched on distance to
        the TSS and on the peak's accessibility; ``in_prior`` marks the prior's own pairs. See
        :mod:`factvae.outputs.links` for what the scores mean.
        """
        self._require_trained()
        if score not in LINK_SCORES:
            raise FactVAEInputError(f"score must be one of {list(LINK_SCORES)}, not {score!r}.")
        if self.gene_coords is None:
            raise FactVAEInputError(
                "infer_links needs gene coordinates: build the model with gene_annotation=."
            )
        located = self.gene_coords.dropna()
        rows = self.genes.get_indexer(located.index)
        genes = self.gene_embeddings().to_numpy(dtype=np.float64)[rows]
        peaks = self.peak_embeddings().to_numpy(dtype=np.float64)
        if score == "cosine":
            scorer = cosine_scorer(genes, peaks)
        else:
            scorer = correlation_scorer(
                genes, peaks, self.get_latent("rna").astype(np.float64),
                self.get_latent("atac").astype(np.float64),
            )  # fmt: skip
        return infer_links(
            scorer,
            located.astype({"start": np.int64, "end": np.int64}),
            self.peak_coords,
            window,
            n_background,
            seed,
            prior=self.g2p.matrix[rows],
            accessibility=self.peak_detection,
        )

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
        }
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
        model.architecture = Architecture(**arch)
        model.history = meta["history"]
        model.training_summary = meta.get("training_summary", {})
        model.validation_cells = pd.Index([])
        model.obs_names = pd.Index(arrays["obs_names"])
        model.genes = pd.Index(arrays["genes"])
        model.peaks = pd.Index(arrays["peaks"])
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
        model.is_trained = True
        return model

    def __repr__(self) -> str:
        state = f"trained {len(self.history)} epochs" if self.is_trained else "not trained"
        return (
            f"FactVAE({len(self.obs_names)} cells, {len(self.genes)} genes, {len(self.peaks)} "
            f"peaks, {self.g2p.nnz} prior pairs, latent {self.architecture.n_latent}; {state})"
        )


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
