"""Encoder inputs and size factors, all computed from sparse counts without densifying.

RNA: seurat_v3 HVGs on counts, then PCA of log-normalised, scaled HVG expression (scaled values
clipped at 10 sd, as Seurat's ``ScaleData`` does, unless the authors' unclipped form is asked for).
ATAC: TF-IDF, log1p of the scaled frequencies, truncated SVD, each cell's vector standardised.
With bounded inputs (the default) the RNA scores are standardised per cell too, so every
coordinate either encoder sees lies within +-sqrt(k - 1) for k components (+-9.95 for 100).
The scaling and centring are applied implicitly inside the SVD, so no dense cells x genes copy
is ever made; statistics and products run over row blocks (:mod:`factvae.data.counts`), so
counts on disk are read a block at a time and never loaded whole.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from factvae.data.counts import InMemoryRows, RowSource
from factvae.errors import FactVAEInputError


def highly_variable_genes(counts: RowSource, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` most variable genes by the seurat_v3 rule (Stuart et al. 2019).

    A loess fit of log variance against log mean gives each gene an expected sd; counts are
    clipped at mean + sd * sqrt(N) and the variance of the standardised values ranks genes.
    Two passes over row blocks: one for the moments, one for the clipped moments.
    """
    from skmisc.loess import loess

    n_cells, n_genes = counts.shape
    if n_top >= n_genes:
        return np.arange(n_genes)
    sums, squares = column_sums(counts, _stored, _squared)
    mean = sums / n_cells
    var = (squares / n_cells - mean**2) * n_cells / (n_cells - 1)
    variable = var > 0
    fit = loess(np.log10(mean[variable]), np.log10(var[variable]), span=0.3, degree=2)
    fit.fit()
    expected_sd = np.zeros(n_genes)
    expected_sd[variable] = np.sqrt(10**fit.outputs.fitted_values)
    clip = mean + expected_sd * np.sqrt(n_cells)

    def clipped(block: sp.csr_matrix) -> np.ndarray:
        return np.minimum(block.data, clip[block.indices])

    sums, squares = column_sums(counts, clipped, lambda block: clipped(block) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm_var = (n_cells * mean**2 + squares - 2 * sums * mean) / (
            (n_cells - 1) * expected_sd**2
        )
    norm_var[~variable] = -np.inf
    order = np.argsort(-norm_var, kind="stable")
    return np.sort(order[:n_top])


def column_sums(
    counts: RowSource, *values: Callable[[sp.csr_matrix], np.ndarray]
) -> list[np.ndarray]:
    """Per column, the float64 sum of each ``values(block)`` (one value per stored entry).

    One pass over row blocks; stored entries are summed, the zeros add nothing.
    """
    totals = [np.zeros(counts.shape[1]) for _ in values]
    for _, block in counts.chunks():
        for total, value in zip(totals, values):
            total += np.bincount(block.indices, weights=value(block), minlength=counts.shape[1])
    return totals


def _stored(block: sp.csr_matrix) -> np.ndarray:
    return block.data


def _squared(block: sp.csr_matrix) -> np.ndarray:
    return np.square(block.data, dtype=np.float64)


def randomized_svd(
    matrix: RowSource,
    n_components: int,
    seed: int,
    center: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    n_iter: int = 7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truncated SVD of ``(matrix - center) / scale`` (per column) with sparse products only.

    Halko et al. (2011) with power iterations; the centred, scaled matrix is never formed, and
    each product runs over the row source's blocks, so on-disk counts are never loaded whole.
    """
    n_rows, n_cols = matrix.shape
    k = min(n_components, n_rows - 1, n_cols - 1)
    if k < 1:
        raise FactVAEInputError(
            f"Cannot compute a {n_components}-component reduction of a {n_rows} x {n_cols} "
            "matrix; give more cells and features."
        )
    inv_scale = np.ones(n_cols) if scale is None else 1.0 / scale
    shift = None if center is None else center * inv_scale

    # In place, and skipping the centring when there is none: with many features (peaks) each
    # features x components temporary is tens of MB.
    def right(block: np.ndarray) -> np.ndarray:  # A @ block
        product = matrix.dot(block if scale is None else block * inv_scale[:, None])
        if shift is not None:
            product -= shift @ block
        return product

    def left(block: np.ndarray) -> np.ndarray:  # A.T @ block
        product = matrix.tdot(block)
        if scale is not None:
            product *= inv_scale[:, None]
        if shift is not None:
            product -= np.outer(shift, block.sum(axis=0))
        return product

    rng = np.random.default_rng(seed)
    oversampled = min(k + 10, min(n_rows, n_cols))
    basis = right(rng.standard_normal((n_cols, oversampled)))
    for _ in range(n_iter):
        basis, _ = np.linalg.qr(basis)
        basis, _ = np.linalg.qr(left(basis))
        basis = right(basis)
    basis, _ = np.linalg.qr(basis)
    small = left(basis).T
    u_small, singular, vt = np.linalg.svd(small, full_matrices=False)
    u = basis @ u_small
    # Fix signs so results do not depend on the LAPACK build.
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
    signs[signs == 0] = 1
    return u[:, :k] * signs[:k], singular[:k], vt[:k] * signs[:k, None]


@dataclass
class PCAProjection:
    """What is needed to project new cells onto the RNA PCA (kept with a saved model).

    :meth:`project` maps counts to scores; the fit (:func:`rna_pca`) runs the same
    normalisation and clip (:meth:`prepare`) and, with ``projected=True``, the same product
    (:meth:`scores`), so a training cell projected again gets its own scores.
    """

    target_sum: float
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray  # n_components x n_genes
    clip: float = math.inf  # scaled values were clipped to +-clip before the PCA
    new_cell_scale: np.ndarray | None = None  # per component (:func:`out_of_sample_scale`)

    def prepare(self, counts: sp.csr_matrix, totals: np.ndarray) -> sp.csr_matrix:
        """Log-normalised counts (per ``target_sum`` of each cell's ``totals``), clipped."""
        return clip_scaled(
            log_normalise(counts, totals, self.target_sum), self.mean, self.std, self.clip
        )

    def scores(self, prepared: sp.csr_matrix) -> np.ndarray:
        """``((prepared - mean) / std) @ components.T`` without densifying ``prepared``."""
        shift = (self.mean / self.std) @ self.components.T
        return (prepared @ (self.components / self.std).T - shift).astype(np.float32)

    def project(self, counts: RowSource | sp.spmatrix, totals: np.ndarray) -> np.ndarray:
        """Scores of cells from their counts of the modelled genes (cells x genes, in the
        model's gene order) and their totals over all genes, a block of cells at a time,
        times ``new_cell_scale`` where the fit measured one (cells it did not see)."""
        rows = InMemoryRows(sp.csr_matrix(counts)) if sp.issparse(counts) else counts
        out = np.empty((rows.shape[0], self.components.shape[0]), dtype=np.float32)
        for positions, block in rows.chunks():
            out[positions] = self.scores(self.prepare(block, totals[positions]))
        return out if self.new_cell_scale is None else out * self.new_cell_scale


def log_normalise(counts: sp.csr_matrix, totals: np.ndarray, target_sum: float) -> sp.csr_matrix:
    """Counts per ``target_sum`` (given each cell's ``totals``) then log1p, keeping sparsity."""
    scale = target_sum / np.where(totals > 0, totals, 1)
    normalised = sp.csr_matrix(sp.diags(scale) @ counts, dtype=np.float64)
    normalised.data = np.log1p(normalised.data)
    return normalised


def clip_scaled(
    logged: sp.csr_matrix, mean: np.ndarray, std: np.ndarray, clip: float
) -> sp.csr_matrix:
    """Stored values clipped, in place, where their scaled value ``(x - mean) / std`` passes
    +-``clip`` (nothing to do for an infinite clip)."""
    if math.isfinite(clip):
        columns = logged.indices
        np.clip(logged.data, (mean - clip * std)[columns], (mean + clip * std)[columns],
                out=logged.data)  # fmt: skip
    return logged


SCALE_CLIP = 10.0  # Seurat's ScaleData(scale.max = 10), scanpy's scale(max_value=10)


def rna_pca(
    hvg_counts: sp.csr_matrix,
    totals: np.ndarray,
    n_components: int,
    seed: int,
    clip: float = math.inf,
    projected: bool = False,
    target_sum: float | None = None,
    new_cells: bool = True,
    power_iterations: int = 7,
) -> tuple[np.ndarray, PCAProjection]:
    """PCA of log-normalised, zero-mean unit-variance HVG expression, scaled values clipped
    to +-``clip`` (as ``ScaleData`` does; without it a gene seen in 3 of 10,000 cells scales
    to ~58 there and sends those cells' scores past 40).

    Cells are normalised by their total over all genes (``totals``) to the median total, as
    scanpy's ``normalize_total`` does before HVG subsetting (``target_sum`` sets another
    target, such as Seurat's 1e4, for the benchmarks' baselines). The clip acts on the stored
    values only: a zero scales to -mean/sd, which is within -clip for any gene not expressed
    in nearly every cell at one level. The scores are the truncated SVD's ``U S``, or with
    ``projected=True`` the cells' projection onto its components
    (:meth:`PCAProjection.scores`), the map new cells get; the two agree as far as the
    randomized SVD converged (in its noise directions, not far). With the SVD's scores,
    ``new_cells=True`` also measures how much less far new cells project
    (:func:`out_of_sample_scale`), so that ``project`` brings them to the training cells'
    scale; with ``projected=True`` a training cell projected again keeps its own scores.
    """
    target_sum = float(np.median(totals)) if target_sum is None else target_sum
    logged = log_normalise(hvg_counts, totals, target_sum)
    mean = np.asarray(logged.mean(axis=0)).ravel()
    mean_sq = np.asarray(logged.multiply(logged).mean(axis=0)).ravel()
    n = logged.shape[0]
    std = np.sqrt(np.maximum(mean_sq - mean**2, 0) * n / max(n - 1, 1))
    std[std == 0] = 1.0
    clip_scaled(logged, mean, std, clip)
    u, singular, vt = randomized_svd(
        InMemoryRows(logged), n_components, seed, center=mean, scale=std, n_iter=power_iterations
    )
    projection = PCAProjection(target_sum, mean, std, vt, clip)
    if projected:
        return projection.scores(logged), projection

    def fit_and_project(fitted: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, half = rna_pca(hvg_counts[fitted], totals[fitted], n_components, seed, clip,
                          target_sum=target_sum, new_cells=False,
                          power_iterations=SHRINKAGE_POWER_ITERATIONS)  # fmt: skip
        return (half.project(hvg_counts[fitted], totals[fitted]),
                half.project(hvg_counts[held], totals[held]))  # fmt: skip

    if new_cells:
        projection.new_cell_scale = out_of_sample_scale(
            hvg_counts.shape[0], len(singular), seed, fit_and_project
        )
    return (u * singular).astype(np.float32), projection


@dataclass
class LSIProjection:
    """What is needed to project new cells onto the ATAC LSI (kept with a saved model).

    :meth:`project` maps counts to the standardised LSI; the fit (:func:`atac_lsi`) runs the
    same TF-IDF and, with ``projected=True``, the same product (:meth:`scores`).
    """

    idf: np.ndarray
    components: np.ndarray  # n_components x n_peaks
    singular: np.ndarray
    new_cell_scale: np.ndarray | None = None  # per component (:func:`out_of_sample_scale`)

    def scores(self, tfidf: RowSource) -> np.ndarray:
        """Each cell's ``tfidf @ components.T / singular`` (its ``U`` row), standardised."""
        return standardise_rows(self.coordinates(tfidf))

    def coordinates(self, tfidf: RowSource) -> np.ndarray:
        """Each cell's ``tfidf @ components.T / singular`` (its ``U`` row)."""
        singular = np.where(self.singular > 0, self.singular, 1.0)
        return tfidf.dot(self.components.T) / singular

    def tfidf(self, counts: RowSource | sp.spmatrix) -> RowSource:
        """Counts of the modelled peaks under the fit's TF-IDF (its IDF), block by block."""
        rows = InMemoryRows(sp.csr_matrix(counts)) if sp.issparse(counts) else counts
        return rows.map(functools.partial(tfidf_log, idf=self.idf))

    def project(self, counts: RowSource | sp.spmatrix) -> np.ndarray:
        """The encoder's ATAC input for cells from their counts of the modelled peaks (cells
        x peaks, in the model's peak order), times ``new_cell_scale`` where the fit measured
        one (cells it did not see); on-disk counts are read a block at a time."""
        coordinates = self.coordinates(self.tfidf(counts))
        scale = self.new_cell_scale
        return standardise_rows(coordinates if scale is None else coordinates * scale)


ENTRY_BLOCK = 1 << 24  # non-zeros handled per step, so temporaries stay ~64 MB


def tfidf_log(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """TF-IDF, L1-normalised per cell, then log1p of the frequencies scaled by 10^4.

    Term frequency (counts / cell total) is implied: the L1 normalisation of ``counts * idf``
    gives the same values. One float32 copy of the counts is made and changed in place.
    """
    matrix = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    idf32 = idf.astype(np.float32)
    for start in range(0, matrix.nnz, ENTRY_BLOCK):
        block = slice(start, start + ENTRY_BLOCK)
        matrix.data[block] *= idf32[matrix.indices[block]]
    norms = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale_rows(matrix, 1e4 / np.where(norms > 0, norms, 1))
    np.log1p(matrix.data, out=matrix.data)
    return matrix


def scale_rows(matrix: sp.csr_matrix, factors: np.ndarray) -> None:
    """Multiply each row of a CSR matrix by its factor, in place, a block of rows at a time."""
    rows_per_block = max(1, int(ENTRY_BLOCK / max(1, matrix.nnz / max(1, matrix.shape[0]))))
    for start in range(0, matrix.shape[0], rows_per_block):
        stop = min(start + rows_per_block, matrix.shape[0])
        lo, hi = matrix.indptr[start], matrix.indptr[stop]
        lengths = np.diff(matrix.indptr[start : stop + 1])
        matrix.data[lo:hi] *= np.repeat(factors[start:stop], lengths).astype(matrix.dtype)


def atac_lsi(
    counts: RowSource | sp.spmatrix,
    n_components: int,
    seed: int,
    projected: bool = False,
    new_cells: bool = True,
    power_iterations: int = 15,
) -> tuple[np.ndarray, LSIProjection]:
    """LSI as scGLUE does it: TF-IDF, log1p(1e4 * l1 share), truncated SVD, cell-wise z-score.

    Counts in memory get one TF-IDF copy; on-disk counts get TF-IDF per block in each product.
    The cells' vectors are the SVD's ``U``, or with ``projected=True`` their projection onto
    its components (:meth:`LSIProjection.scores`, one more product), the map new cells get.
    With ``U``, ``new_cells=True`` also measures how much less far new cells project
    (:func:`out_of_sample_scale`), so that ``project`` brings them to the training cells'.
    """
    if sp.issparse(counts):
        counts = InMemoryRows(sp.csr_matrix(counts))
    (peak_totals,) = column_sums(counts, _stored)
    peak_totals[peak_totals == 0] = 1
    idf = counts.shape[0] / peak_totals
    tfidf = counts.map(functools.partial(tfidf_log, idf=idf))
    u, singular, vt = randomized_svd(tfidf, n_components, seed, n_iter=power_iterations)
    projection = LSIProjection(idf, vt, singular)
    if projected:
        return projection.scores(tfidf), projection

    def fit_and_project(fitted: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = counts.select_rows(fitted)  # on disk: read a block at a time, as above
        _, half = atac_lsi(inside, n_components, seed, new_cells=False,
                           power_iterations=SHRINKAGE_POWER_ITERATIONS)  # fmt: skip
        return (half.coordinates(half.tfidf(inside)),
                half.coordinates(half.tfidf(counts.select_rows(held))))  # fmt: skip

    if new_cells:
        projection.new_cell_scale = out_of_sample_scale(
            counts.shape[0], len(singular), seed, fit_and_project
        )
    return standardise_rows(u), projection


# Cells a truncated SVD was not fitted on project less far onto its components than the cells
# it was: the SVD fits the training cells' own noise too, most of all in the components past
# the data's structure. Measured by cross-fitting on at most this many training cells.
SHRINKAGE_CELLS = 10_000
# The half's SVD needs no more: with 4 power iterations instead of 15 the ratios moved by <= 0.3
# of ~3.5 and new cells' neighbours not at all (new_cells.py's data, seed 0), in two thirds
# of the time.
SHRINKAGE_POWER_ITERATIONS = 4
MIN_HALF = 20  # cells a half needs for its own SVD to say anything
SCALE_RANGE = (0.1, 10.0)  # a component the held-out half barely reaches is not blown up


def out_of_sample_scale(
    n_cells: int,
    n_components: int,
    seed: int,
    fit_and_project: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> np.ndarray | None:
    """Per component, the sd of fitted cells' scores over the sd of other cells' projections,
    by cross-fitting: of up to ``SHRINKAGE_CELLS`` training cells, one half is fitted and the
    other projected (``fit_and_project(fitted, held)`` gives both halves' scores on the fitted
    half's components). New cells' projections times this reach as far as the training cells'
    vectors, so the encoders see them as they saw the training cells: on sparse ATAC new cells
    project about a third as far in the components past the structure, and unscaled the ATAC
    half put them apart from every training cell (benchmarks/new_cells.py). Fitting the other
    half in turn gave the same placement at a third more preprocessing time, so one half is
    fitted; its excess over 1 is shrunk to what all the cells' fit has (on new_cells.py's data
    2.98 / 2.85 in components 5 / 50 against the held-out cells' true 3.00 / 2.89, from the
    half's 3.80 / 3.62). Ratios are kept within ``SCALE_RANGE``; where the half's SVD has fewer
    components, the last ratio is repeated; None for fewer than ``2 * MIN_HALF`` cells.
    """
    if n_cells < 2 * MIN_HALF:
        return None
    sample = np.random.default_rng(seed).permutation(n_cells)[:SHRINKAGE_CELLS]
    fitted, held = np.array_split(sample, 2)
    inside, outside = fit_and_project(np.sort(fitted), np.sort(held))
    ratio = inside.std(axis=0) / np.maximum(outside.std(axis=0), np.finfo(np.float32).tiny)
    # A half overfits more than all the cells: noise components of an SVD of n cells reach
    # about 1 + sqrt(features / n) times farther than new cells' (random matrix theory), so the
    # half's excess shrinks by sqrt(half / n) for the whole fit.
    ratio = 1 + (ratio - 1) * np.sqrt(len(fitted) / n_cells)
    ratio = np.clip(ratio, *SCALE_RANGE)
    return np.pad(ratio, (0, n_components - len(ratio)), mode="edge").astype(np.float32)


def standardise_rows(values: np.ndarray) -> np.ndarray:
    """Each cell's vector to zero mean and unit sd (the form the authors' ATAC input holds)."""
    centred = values - values.mean(axis=1, keepdims=True)
    sd = centred.std(axis=1, ddof=1, keepdims=True)
    sd[sd == 0] = 1
    return (centred / sd).astype(np.float32)


def log_library_size(totals: np.ndarray) -> np.ndarray:
    """Size factor of Eq. 12: log of each cell's total raw counts over all features."""
    return np.log(totals).astype(np.float32)
