"""Significance of gene-peak links, two ways: against peaks on other chromosomes with matched
accessibility (Signac's LinkPeaks background: ``pvalue``), and against pairs at the same
distance to the TSS with equally accessible peaks (``pvalue_cis``: evidence beyond distance).

Both turn a pair's statistic into a z-score against its background's mean and sd and report
the one-sided normal tail, as LinkPeaks does: an empirical p-value from a background of a few
hundred pairs is too coarse to survive multiple testing.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

DISTANCE_BINS = 10  # quantile bins of |distance to the TSS| that cis background pairs share
ACCESSIBILITY_BINS = 5  # quantile bins of the peaks' detection rate, likewise
TRANS_ACCESSIBILITY_BINS = 20  # finer: the other-chromosome background has every peak to draw on


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Each value's bin among ``n_bins`` of about equal size (ties share a bin)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right")


def matched_strata(distance: np.ndarray, accessibility: np.ndarray | None) -> np.ndarray:
    """Each pair's stratum: its bin of |distance to the TSS| crossed with its peak's bin of
    accessibility (distance alone when accessibility is unknown)."""
    strata = quantile_bins(np.abs(distance), DISTANCE_BINS)
    if accessibility is not None:
        strata = strata * ACCESSIBILITY_BINS + quantile_bins(accessibility, ACCESSIBILITY_BINS)
    return strata


def matched_background(
    strata: np.ndarray, eligible: np.ndarray, n_background: int, rng: np.random.Generator
) -> np.ndarray:
    """Positions of background pairs: at most ``n_background`` of the ``eligible`` candidates
    (those not in the prior), drawn within each stratum in proportion to the stratum's share of
    all candidates, so the background's distances and accessibilities follow the candidates'."""
    chosen = []
    for stratum, size in zip(*np.unique(strata, return_counts=True)):
        pool = np.nonzero((strata == stratum) & eligible)[0]
        take = min(len(pool), max(1, round(n_background * size / len(strata))))
        chosen.append(rng.choice(pool, take, replace=False) if take < len(pool) else pool)
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def stratified_test(
    score: np.ndarray, strata: np.ndarray, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """z-score of each score against the mean and sd of the background pairs of its own
    stratum (the whole background for a stratum without any), and its one-sided normal
    p-value."""
    zscore = np.empty(len(score))
    for stratum in np.unique(strata):
        rows = np.nonzero(strata == stratum)[0]
        reference = background[strata[background] == stratum]
        null = score[reference if len(reference) else background]
        sd = null.std(ddof=1) if len(null) > 1 else 1.0
        zscore[rows] = (score[rows] - null.mean()) / (sd if sd > 0 else 1.0)
    return zscore, scipy.stats.norm.sf(zscore)


def other_chromosome_test(
    gene_side: np.ndarray,
    peak_side: np.ndarray,
    score: np.ndarray,
    gene_index: np.ndarray,
    peak_index: np.ndarray,
    gene_chrom: np.ndarray,
    peak_chrom: np.ndarray,
    accessibility: np.ndarray,
    n_bins: int = TRANS_ACCESSIBILITY_BINS,
) -> tuple[np.ndarray, np.ndarray]:
    """LinkPeaks' test: each pair's ``score``, the dot product of its gene's row of
    ``gene_side`` and its peak's row of ``peak_side``, against the same gene with every peak on
    another chromosome than the gene's in the peak's bin of ``accessibility`` (per peak, all
    peaks; ``n_bins`` quantile bins, 1 for every peak whatever its accessibility). Such peaks
    cannot regulate the gene in cis, so they show how much a gene co-varies with unrelated
    peaks of that accessibility.

    LinkPeaks draws 200 such peaks per pair; a dot product's mean and variance over all of them
    follow from the pool's mean row and covariance (k x k), so here they are exact: no draw, no
    seed, and the same p-value on every run. ``gene_chrom`` and ``peak_chrom`` are integer
    codes of one coding. Time O(peaks x k^2 + pairs x k^2), memory O(pairs + k^2).
    """
    bins = quantile_bins(accessibility, n_bins)
    pair_bin, pair_chrom = bins[peak_index], gene_chrom[gene_index]
    mean, sd = np.zeros(len(score)), np.ones(len(score))
    for b in np.unique(pair_bin):
        in_bin = bins == b
        rows_b, chrom_b = peak_side[in_bin], peak_chrom[in_bin]
        sum_all, outer_all = rows_b.sum(axis=0), rows_b.T @ rows_b
        for chrom in np.unique(pair_chrom[pair_bin == b]):
            own = rows_b[chrom_b == chrom]
            n = len(rows_b) - len(own)
            if n < 2:
                continue  # z against mean 0, sd 1: no background to compare with
            pool_mean = (sum_all - own.sum(axis=0)) / n
            pool_cov = (outer_all - own.T @ own - n * np.outer(pool_mean, pool_mean)) / (n - 1)
            pairs = np.nonzero((pair_bin == b) & (pair_chrom == chrom))[0]
            genes = gene_side[gene_index[pairs]]
            mean[pairs] = genes @ pool_mean
            variance = np.einsum("ij,jk,ik->i", genes, pool_cov, genes)
            sd[pairs] = np.sqrt(np.maximum(variance, 0.0))
    sd = np.where(sd > 0, sd, 1.0)
    zscore = (score - mean) / sd
    return zscore, scipy.stats.norm.sf(zscore)


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """BH q-values; never below their p-value (``p * n / rank`` can round just under it)."""
    n = len(pvalues)
    if n == 0:
        return pvalues
    order = np.argsort(pvalues)
    ranked = pvalues[order] * n / np.arange(1, n + 1)
    qvalues = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(np.maximum(qvalues, pvalues[order]), 1.0)
    return out
