"""The simulated counts: RNA and ATAC drawn sparse from the planted truth, a chunk of cells at a
time, so that memory stays bounded at 100,000 cells x 200,000 peaks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_RNA_DISPERSION = 0.5
_TRANSCRIPTOME_GENES = 15000  # rna_depth is spread over at least this many expressed genes
_ATAC_EXTRA_COUNT = 0.15  # chance that a non-zero ATAC entry is one fragment higher
_CHUNK_ENTRIES = 1_000_000  # dense RNA entries / ATAC draws handled at once


def rna_counts(
    rng: np.random.Generator,
    cell_type: np.ndarray,
    activity: np.ndarray,
    gene_program: np.ndarray,
    rna_depth: np.ndarray,
    log_fold_range: tuple[float, float],
    rate_sd: float,
    depth_sd: float,
    batch: np.ndarray,
    shift: np.ndarray | None,
) -> sp.csr_matrix:
    """Gamma-Poisson (negative binomial) counts, drawn in chunks of cells to bound memory.

    ``rna_depth`` is each cell's mean library size over its whole transcriptome; the simulated genes
    are a sample of at least ``_TRANSCRIPTOME_GENES`` expressed genes, so per-gene means (and the
    ~85-90% zeros of droplet data) do not depend on ``n_genes``. Gene rates are log-normal.
    """
    n_cells, n_genes = len(cell_type), len(gene_program)
    log_base = rng.normal(0.0, rate_sd, n_genes)
    log_base -= log_base.max()
    # Weight of the unsimulated rest of the transcriptome, which programs do not change.
    rest = np.exp(log_base).sum() * (max(n_genes, _TRANSCRIPTOME_GENES) / n_genes - 1.0)
    log_fold = np.where(gene_program >= 0, rng.uniform(*log_fold_range, n_genes), 0.0)
    depth = rna_depth * np.exp(rng.normal(-0.5 * depth_sd**2, depth_sd, n_cells))
    shape = 1.0 / _RNA_DISPERSION
    chunk = max(1, _CHUNK_ENTRIES // n_genes)
    blocks = []
    for first in range(0, n_cells, chunk):
        rows = slice(first, min(first + chunk, n_cells))
        in_program = gene_program[None, :] == cell_type[rows, None]
        rate = np.exp(log_base + in_program * (log_fold * activity[rows, None]))
        if shift is not None:  # the cells' batches shift some genes' log rates
            rate *= np.exp(shift[batch[rows]])
        rate *= (depth[rows] / (rate.sum(axis=1) + rest))[:, None]
        counts = rng.poisson(rng.gamma(shape, rate / shape))
        blocks.append(sp.csr_matrix(counts.astype(np.float32)))
    return _as_csr(sp.vstack(blocks, format="csr"))


def atac_counts(
    rng: np.random.Generator,
    cell_type: np.ndarray,
    activity: np.ndarray,
    peak_program: np.ndarray,
    n_types: int,
    density: np.ndarray,
    log_fold_range: tuple[float, float],
    access_sd: float,
    depth_sd: float,
    batch: np.ndarray,
    shift: np.ndarray | None,
) -> sp.csr_matrix:
    """Sparse ATAC counts sampled as fragments, in O(non-zeros) memory.

    Each cell draws fragments from a mixture of a background profile (every peak, base
    accessibility) and its type's program profile (the type's peaks, 1.5-2.5 log-fold extra);
    its activity sets the mixture weight. The number of fragments is calibrated so the expected
    number of distinct peaks hit is ``density`` x peaks, scaled by a per-cell depth factor.
    Fragments that land in the same peak add up, and a few entries get one extra count.
    With batch ``shift``s (batches x peaks) each batch draws from its own profiles, the base
    accessibility times ``exp(shift)``; without, every cell shares one group of profiles.
    """
    n_cells, n_peaks = len(cell_type), len(peak_program)
    base = np.exp(rng.normal(0.0, access_sd, n_peaks))
    extra = np.where(peak_program >= 0, np.expm1(rng.uniform(*log_fold_range, n_peaks)), 0.0)
    if shift is None:
        group, bases = np.zeros(n_cells, dtype=np.int64), [base]
    else:
        group, bases = batch, [base * np.exp(row) for row in shift]
    background = [_Sampler(b) for b in bases]
    programs = [[_Sampler(b * extra * (peak_program == t)) for t in range(n_types)] for b in bases]
    program_mass = np.array([[sampler.total for sampler in row] for row in programs])
    background_mass = np.array([sampler.total for sampler in background])

    scale = np.exp(rng.normal(-0.5 * depth_sd**2, depth_sd, n_cells))
    target = rng.binomial(n_peaks, np.clip(density * scale, 0.0, 0.95))
    program_weight = program_mass[group, cell_type] * activity
    mix = program_weight / (program_weight + background_mass[group])
    n_draws = np.zeros(n_cells, dtype=np.int64)
    for t in range(n_types):
        for g, b in enumerate(bases):
            cells = np.nonzero((cell_type == t) & (group == g))[0]
            profile = (b + b * extra * (peak_program == t)) / (
                background_mass[g] + program_mass[g, t]
            )
            n_draws[cells] = _draws_for_distinct(profile, target[cells], rng)

    # Draws bound the non-zeros from above, so the output is allocated once, never grown.
    total_draws = int(n_draws.sum())
    index_dtype = np.int32 if max(total_draws, n_peaks) < 2**31 else np.int64
    indices = np.empty(total_draws, dtype=index_dtype)
    values = np.empty(total_draws, dtype=np.float32)
    indptr = np.zeros(n_cells + 1, dtype=index_dtype)
    cumulative_draws = np.cumsum(n_draws)
    nnz = 0
    first = 0
    while first < n_cells:
        done = cumulative_draws[first - 1] if first else 0
        last = int(np.searchsorted(cumulative_draws, done + _CHUNK_ENTRIES, side="right"))
        last = min(max(last, first + 1), n_cells)
        cells = np.arange(first, last)
        draws = n_draws[cells]
        owner = np.repeat(cells - first, draws)
        from_program = rng.random(len(owner)) < np.repeat(mix[cells], draws)
        draw_type = np.repeat(cell_type[cells], draws)
        draw_group = np.repeat(group[cells], draws)
        column = np.empty(len(owner), dtype=np.int64)
        for g in range(len(bases)):
            pick = ~from_program & (draw_group == g)
            column[pick] = background[g].draw(rng, int(pick.sum()))
        for g in range(len(bases)):
            for t in range(n_types):
                pick = from_program & (draw_type == t) & (draw_group == g)
                column[pick] = programs[g][t].draw(rng, int(pick.sum()))
        keys, multiplicity = np.unique(owner * n_peaks + column, return_counts=True)
        count = len(keys)
        indices[nnz : nnz + count] = keys % n_peaks
        bonus = rng.random(count) < _ATAC_EXTRA_COUNT
        values[nnz : nnz + count] = multiplicity + bonus
        indptr[first + 1 : last + 1] = np.bincount(keys // n_peaks, minlength=last - first)
        nnz += count
        first = last
    np.cumsum(indptr, out=indptr)
    matrix = sp.csr_matrix(
        (values[:nnz], indices[:nnz], indptr), shape=(n_cells, n_peaks), copy=False
    )
    matrix.has_sorted_indices = True
    return matrix


class _Sampler:
    """Draws indices with probability proportional to non-negative weights, fast.

    Inverse-CDF sampling with a guide table (one bucket per entry): a draw starts at its
    bucket's first candidate and steps forward a few entries, several times faster than a
    binary search per draw. Zero-weight entries are left out so no draw can land on them.
    """

    def __init__(self, weights: np.ndarray) -> None:
        self.index = np.nonzero(weights > 0)[0]
        self.total = float(weights[self.index].sum())
        if len(self.index) == 0:
            self.cumulative = np.ones(0)
            self.guide = np.zeros(0, dtype=np.int64)
            return
        cumulative = np.cumsum(weights[self.index])
        cumulative /= cumulative[-1]
        cumulative[-1] = 1.0  # uniforms are < 1, so every walk stops at the last entry at most
        self.cumulative = cumulative
        buckets = np.arange(len(cumulative)) / len(cumulative)
        self.guide = np.searchsorted(cumulative, buckets, side="right")

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if size == 0:
            return np.zeros(0, dtype=np.int64)
        if len(self.index) == 0:
            raise AssertionError("drawing from an empty profile")
        uniform = rng.random(size)
        bucket = np.minimum((uniform * len(self.guide)).astype(np.int64), len(self.guide) - 1)
        position = self.guide[bucket]
        pending = np.nonzero(self.cumulative[position] <= uniform)[0]
        while pending.size:
            position[pending] += 1
            pending = pending[self.cumulative[position[pending]] <= uniform[pending]]
        return self.index[position]


def _draws_for_distinct(
    profile: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Fragments needed so that, in expectation, ``target`` distinct peaks are hit.

    With ``m`` draws, peak ``j`` is hit with probability ``1 - exp(-m p_j)``; the sum is concave
    and increasing in ``m``, so it is tabulated on a grid and inverted by interpolation.
    """
    if len(target) == 0:
        return np.zeros(0, dtype=np.int64)
    goal = float(target.max())
    high = max(2.0 * goal, 1.0)
    while _expected_distinct(profile, high) < goal and high < 1e12:
        high *= 2.0
    grid = np.linspace(0.0, high, 65)
    distinct = np.array([_expected_distinct(profile, m) for m in grid])
    draws = np.interp(target, distinct, grid)
    # Stochastic rounding keeps the mean right for cells with few draws.
    return np.floor(draws + rng.random(len(draws))).astype(np.int64)


def _expected_distinct(profile: np.ndarray, draws: float) -> float:
    return float(-np.expm1(-draws * profile).sum())


def _as_csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Canonical float32 CSR (sorted indices, no explicit zeros), the form the model reads."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix
