"""The user-facing ``FactVAE`` class: paired AnnData in; embeddings, augmented ATAC, links out."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from factvae import building, mapping
from factvae.data.genomics import AnnotationLike
from factvae.errors import FactVAEInputError
from factvae.io import model_files
from factvae.io.model_files import ARRAYS_FILE, SETTINGS_FILE, WEIGHTS_FILE
from factvae.io.mudata import MODALITIES as MUDATA_MODALITIES
from factvae.io.streaming import write_h5ad_chunks
from factvae.outputs.augment import AUGMENT_LATENTS, augmented_chunks, collect
from factvae.outputs.gene_loadings import link_directions, link_gene_loadings
from factvae.outputs.latent import latent_means
from factvae.outputs.links import (
    LINK_SCORES,
    GeneBackground,
    correlation_scorer,
    cosine_scorer,
    infer_links,
)
from factvae.settings import RUN_DEFAULTS
from factvae.state import ModelState
from factvae.train import fitting
from factvae.train.fitting import check_positive_int

__all__ = ["ARRAYS_FILE", "SETTINGS_FILE", "WEIGHTS_FILE", "FactVAE"]


class FactVAE(ModelState):
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
        building.build(
            self, rna, atac, gene_annotation=gene_annotation, g2p=g2p, rna_rep=rna_rep,
            atac_rep=atac_rep, preset=preset, check_build=check_build, modalities=modalities,
            settings=settings,
        )  # fmt: skip

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
        (10%) of cells is held out, training stops once neither modality's loss on them has
        reached a new low for ``patience`` epochs (a tenth of the budget), and the weights of
        the last epoch at which one did are restored;
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
        fitting.fit_model(
            self, max_epochs=max_epochs, batch_size=batch_size, device=device, seed=seed,
            progress=progress, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
            resume=resume, precision=precision, early_stopping=early_stopping,
            validation_fraction=validation_fraction, patience=patience,
        )  # fmt: skip
        return self

    # ---- outputs --------------------------------------------------------------------------
    def _require_trained(self) -> None:
        if not self.is_trained:
            raise FactVAEInputError("The model is not trained yet; call fit() first.")

    def get_latent(
        self,
        kind: str = "joint",
        rna: Any = None,
        atac: Any = None,
        posterior_means: bool = False,
    ) -> np.ndarray:
        """Cell embeddings from the posterior means: ``joint``, both halves combined as
        ``settings.joint_embedding`` says (by default the average of each cell's RNA and ATAC
        means, each from its half's centre over the training cells and at unit length, the ATAC
        weighted by ``joint_atac_scale``, n_latent columns; with ``preset="paper"`` Eq. 14's
        [z_atac, z_rna], 2 x n_latent), or one half, ``rna`` or ``atac``, as the joint
        embedding reads it (by default centred and at unit length, so its clusters are not
        spread by how deep each cell was read; with ``preset="paper"`` the means themselves).
        ``posterior_means=True`` gives a half's posterior means as they are, the latent the
        decoders read (:meth:`augment_atac`, the links). New cells use the training cells'
        centres.

        Without ``rna``/``atac``: the model's own cells. With new AnnData (raw counts, like the
        training data; ``rna`` for ``kind="rna"``, ``atac`` for ``"atac"``, both for ``joint``,
        matched by cell name) the cells are embedded by the trained encoders with no
        training: their counts go through the preprocessing saved at fit time (the RNA:
        the modelled genes, normalised, clipped and scaled with the training cells' values,
        projected on the PCA, then standardised per cell with ``bounded_inputs``; the ATAC:
        TF-IDF with the training IDF, projected on the LSI). By default each projection is
        then scaled per component to the training cells' reach, measured at fit time by
        cross-fitting (new cells project less far onto the components the SVD fitted to the
        training cells' noise; unscaled, the ATAC half put them apart from every training
        cell). Features are matched by name;
        missing ones count as zeros and are reported in a warning, as are features the model
        was not built from. Rows are in ``rna``'s cell order (``atac``'s for ``kind="atac"``
        alone). With ``encode_batch`` the new cells need the batch column(s), with levels
        the model knows (new levels: :meth:`map_query`). The model's own cells mapped again
        get exactly their own latent with ``projected_inputs=True`` (which scales nothing); by
        default they are treated as new cells.
        """
        self._require_trained()
        if posterior_means and kind == "joint":
            raise FactVAEInputError(
                "posterior_means=True gives one half's means: use kind='rna' or kind='atac'."
            )
        joint = None if posterior_means else self.joint_rule
        if rna is None and atac is None:
            return latent_means(
                self.network, self._rna_rep, self._atac_rep, kind, self.device,
                batch=self._batch_codes, joint=joint,
            )  # fmt: skip
        return mapping.embed(self, kind, rna, atac, joint)

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
        latent: str = RUN_DEFAULTS.augment_latent,
    ) -> np.ndarray | sp.csr_matrix | Path:
        """Augmented ATAC (Eq. 12) for the chosen cells x peaks, computed chunk by chunk.

        ``latent="joint"`` (the default) decodes, for each cell, the ATAC latent its joint
        embedding points to: the ATAC half's own length from its centre along the joint
        direction, so the matrix carries what the RNA and ATAC halves agree on, as the joint
        embedding does (with ``preset="paper"``, whose joint embedding concatenates, this is
        the ATAC means). ``latent="atac"`` decodes the ATAC half's posterior means alone
        (Eq. 12 as the paper states it). At 100,000 peaks Signac's LSI of the default
        clusters ahead of the raw counts', and of the ATAC-only matrix, which trails them.

        Dense float32 when ``threshold`` is None, else CSR keeping values >= ``threshold``.
        With ``out=`` (an .h5ad path) the chunks are streamed to disk and the path returned,
        so memory stays bounded by one chunk whatever the matrix size. With a batch covariate
        each cell is decoded in its own batch (``batch=None``), or every cell in the batch
        level ``batch`` (one of ``batch_levels``): the accessibility the cells would have
        had in that sample, a common reference for comparing samples.
        """
        self._require_trained()
        if latent not in AUGMENT_LATENTS:
            raise FactVAEInputError(
                f"latent must be one of {list(AUGMENT_LATENTS)} ('joint', the default, or "
                f"'atac', the ATAC half alone), not {latent!r}."
            )
        own, decoded_in = self._decoder_batches(batch)
        check_positive_int(chunk_size, "chunk_size")
        if threshold is not None and not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise FactVAEInputError(f"threshold must be a number >= 0, got {threshold!r}.")
        cell_rows = _positions(self.obs_names, cells, "cells")
        peak_cols = _positions(self.peaks, peaks, "peaks")
        atac_rep = self._atac_rep[cell_rows]
        log_library = self._atac_log_library[cell_rows]
        own = None if own is None else own[cell_rows]
        decoded_in = None if decoded_in is None else decoded_in[cell_rows]
        # only the averaged joint embedding points the ATAC latent anywhere new: skip the RNA
        # encoder for the ATAC half alone and for Eq. 14's concatenation (preset="paper")
        pointed = latent == "joint" and self.joint_rule.rule == "average"
        rna_rep = self._rna_rep[cell_rows] if pointed else None
        joint = self.joint_rule if pointed else None
        chunks = augmented_chunks(
            self.network, atac_rep, log_library, peak_cols, self.device, chunk_size, own,
            decoded_in, rna_rep, joint,
        )  # fmt: skip
        if out is not None:
            return write_h5ad_chunks(
                Path(out),
                chunks,
                self.obs_names[cell_rows],
                self.peak_coords.iloc[peak_cols],
                threshold,
            )
        return collect(chunks, len(cell_rows), len(peak_cols), threshold)

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
        detected in at least ``link_min_cells`` (1) of its cells, or the names in
        ``genes``; a gene outside the modelled HVGs gets a ridge loading on the RNA latent
        (:mod:`factvae.outputs.gene_loadings`), and a modelled gene its decoder factor blended
        with its ridge loading from the training counts, the factor weighing more the more
        cells express the gene (``link_directions``). Without ``rna``, the modelled genes (or those
        of ``genes`` among them). Coordinates come from ``gene_annotation`` or, by default, the
        annotation the model was built with (kept by :meth:`save`; models saved before
        2026-12-04 kept only their modelled genes' coordinates).

        ``score="combined"`` (default) ranks by the posterior of a two-group model fitted to the
        candidates outside the model's prior (whose pairs training tied together): prior from
        the peak's power-law contact with the TSS (as ABC without Hi-C) times its share of the
        peak's contact with every TSS of the annotation near it, evidence from the z-score of
        the model's co-variation of the pair against the gene's with every peak on other
        chromosomes joined with its z-score against the peak's with every gene on other
        chromosomes that these inputs reach (``evidence``), weighted as much as the data
        support; ``"abc"`` by accessibility x contact as a share of the gene's candidates;
        ``"correlation"`` by the co-variation alone; ``"cosine"`` by the paper's embedding
        cosine.
        ``pvalue``/``qvalue``: the co-variation against every peak of matched accessibility on
        other chromosomes, as Signac's LinkPeaks tests it with a random draw of them;
        ``pvalue_cis``/``qvalue_cis``: against up to ``n_background`` candidates outside the
        prior at the same distance with equally accessible peaks (beyond distance). See
        :mod:`factvae.outputs.links` for every column.
        """
        self._require_trained()
        if score not in LINK_SCORES:
            raise FactVAEInputError(f"score must be one of {list(LINK_SCORES)}, not {score!r}.")
        annotation = (
            building.gene_coordinates(gene_annotation, self.peak_coords)
            if gene_annotation is not None
            else self.gene_coords_all
        )
        if annotation is None:
            raise FactVAEInputError(
                "infer_links needs gene coordinates: build the model with gene_annotation= or "
                "pass gene_annotation= here."
            )
        annotation = annotation[~annotation.index.duplicated()].dropna()
        annotation = annotation.astype({"start": np.int64, "end": np.int64})
        factors = self.gene_embeddings()
        rna_latent = self.get_latent("rna", posterior_means=True).astype(np.float64)
        if score != "cosine":  # the paper's cosine reads the factors as they are
            directions = link_directions(
                factors.to_numpy(np.float64), self.gene_evidence, rna_latent
            )
            factors = pd.DataFrame(directions, index=factors.index, columns=factors.columns)
        if rna is None:
            chosen, loadings, detection = self._modelled_link_genes(genes, annotation, factors)
            background = (
                (chosen, loadings, detection)
                if genes is None
                else self._modelled_link_genes(None, annotation, factors)
            )
        else:
            pick = partial(
                link_gene_loadings, rna, cells=self.obs_names, annotated=annotation.index,
                factors=factors, latent=rna_latent,
            )  # fmt: skip
            chosen, loadings, detection = pick(genes)
            background = (chosen, loadings, detection) if genes is None else pick(None)
        if len(chosen) == 0:
            raise FactVAEInputError("None of the chosen genes has coordinates in the annotation.")
        peaks = self.peak_embeddings().to_numpy(dtype=np.float64)
        if score == "cosine":
            make_scorer = partial(cosine_scorer, peak_embeddings=peaks)
        else:
            atac_latent = self.get_latent("atac", posterior_means=True).astype(np.float64)
            make_scorer = partial(
                correlation_scorer, peak_factors=peaks, rna_latent=rna_latent,
                atac_latent=atac_latent,
            )  # fmt: skip
        scorer = make_scorer(loadings)
        # each peak is also compared with every gene these inputs reach, whichever are linked
        names, background_loadings, background_detection = background
        peak_background = GeneBackground(
            scorer.genes
            if background_loadings is loadings
            else make_scorer(background_loadings).genes,
            annotation.loc[names, "chrom"].to_numpy(),
            background_detection if np.isfinite(background_detection).all() else None,
        )
        rows = self.genes.get_indexer(chosen)
        prior = sp.csr_matrix(self.g2p.matrix)[np.maximum(rows, 0)]
        prior = sp.diags((rows >= 0).astype(np.float32)) @ prior  # unmodelled: no prior pairs
        return infer_links(
            scorer,
            annotation.loc[chosen],
            self.peak_coords,
            window,
            n_background,
            seed,
            prior=prior,
            accessibility=self.peak_detection,
            score=score,
            modelled=rows >= 0,
            competitors=annotation,
            gene_detection=detection,
            peak_background=peak_background,
        )

    def _modelled_link_genes(
        self, genes: Any, annotation: pd.DataFrame, factors: pd.DataFrame
    ) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        """The modelled genes to link (all, or those named in ``genes``) that have
        coordinates, their link directions (rows of ``factors``) and the share of training
        cells expressing each (NaN for models saved before 2026-12-05)."""
        names = self.genes if genes is None else pd.Index(np.asarray(genes).astype(str))
        outside = names[~names.isin(self.genes)]
        if len(outside):
            raise FactVAEInputError(
                f"genes {outside[:3].tolist()} are not modelled genes; pass rna= (raw counts "
                "of this model's cells) to link genes outside the modelled set."
            )
        chosen = names[names.isin(annotation.index)]
        detection = (
            self.gene_evidence.detection[self.genes.get_indexer(chosen)]
            if self.gene_evidence is not None
            else np.full(len(chosen), np.nan)
        )
        return chosen, factors.loc[chosen].to_numpy(dtype=np.float64), detection

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
        atac=)`` embeds new cells directly. Without ``encode_batch`` (the default) the
        encoders take no batch, so the query's latent is exactly ``get_latent(rna=, atac=)``'s
        and what the training learns is the decoders' offsets of the new levels, which
        ``augment_atac`` uses.
        """
        self._require_trained()
        return mapping.map_query(
            self, rna, atac, max_epochs=max_epochs, batch_size=batch_size, seed=seed,
            progress=progress, device=device, precision=precision,
        )  # fmt: skip

    # ---- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write weights, settings, feature names, projections and versions to a folder."""
        self._require_trained()
        return model_files.save_model(self, Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> FactVAE:
        """A trained model from ``save``; gives the same outputs. Never unpickles objects."""
        return model_files.load_model(cls, Path(path), device)

    def __repr__(self) -> str:
        state = f"trained {len(self.history)} epochs" if self.is_trained else "not trained"
        batches = f", {len(self.batch_levels)} batches" if len(self.batch_levels) else ""
        return (
            f"FactVAE({len(self.obs_names)} cells, {len(self.genes)} genes, {len(self.peaks)} "
            f"peaks, {self.g2p.nnz} prior pairs, latent {self.architecture.n_latent}{batches}; "
            f"{state})"
        )


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
