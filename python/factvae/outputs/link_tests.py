"""Significance of gene-peak links, two ways: against peaks on other chromosomes with matched
accessibility (Signac's LinkPeaks background: ``pvalue``), and against pairs at the same
distance to the TSS with equally accessible peaks (``pvalue_cis``: evidence beyond distance).

Both turn a pair's statistic into a z-score against its background's mean and sd and report
the one-sided normal tail, as LinkPeaks does: an empirical p-value from a background of a few
hundred pairs is too coarse to survive multiple testing.

The default score's evidence reads the other-chromosome background from both ends of a pair:
the gene's (every peak on other chromosomes) and the peak's (every gene on other chromosomes
detected in about as many cells), joined into one z-score (:func:`correlated_stouffer`).
"""

from __future__ import annotations

import numpy as np
import scipy.stats

DISTANCE_BINS = 10  # quantile bins of |distance to the TSS| that cis background pairs share
ACCESSIBILITY_BINS = 5  # quantile bins of the peaks' detection rate, likewise
TRANS_ACCESSIBILITY_BINS = 20  # finer: the other-chromosome background has every peak to draw on


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner edges of ``n_bins`` quantile bins of ``values`` (fewer where values tie)."""
    if len(values) == 0:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Each value's bin among ``n_bins`` of about equal size (ties share a bin)."""
    return np.searchsorted(quantile_edges(values, n_bins), values, side="right")


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


def off_chromosome_zscore(
    anchor_side: np.ndarray,
    pool_side: np.ndarray,
    score: np.ndarray,
    anchor_index: np.ndarray,
    pair_bin: np.ndarray,
    anchor_chrom: np.ndarray,
    pool_chrom: np.ndarray,
    pool_bin: np.ndarray,
) -> np.ndarray:
    """z-score of each pair's ``score``, the dot product of its anchor's row of
    ``anchor_side`` with a partner's row, against the same anchor with every row of
    ``pool_side`` on another chromosome than the anchor's and in the pair's bin
    (``pair_bin`` against ``pool_bin``). A dot product's mean and variance over a pool follow
    from the pool's mean row and covariance (k x k), so they are exact: no draw, no seed.
    Chromosomes are integer codes of one coding. Time O(pool x k^2 + pairs x k^2), memory
    O(pairs + k^2). Where no pool is left, the z-score is the score itself (mean 0, sd 1)."""
    pair_chrom = anchor_chrom[anchor_index]
    mean, sd = np.zeros(len(score)), np.ones(len(score))
    for b in np.unique(pair_bin):
        in_bin = pool_bin == b
        rows_b, chrom_b = pool_side[in_bin], pool_chrom[in_bin]
        sum_all, outer_all = rows_b.sum(axis=0), rows_b.T @ rows_b
        for chrom in np.unique(pair_chrom[pair_bin == b]):
            own = rows_b[chrom_b == chrom]
            n = len(rows_b) - len(own)
            if n < 2:
                continue
            pool_mean = (sum_all - own.sum(axis=0)) / n
            pool_cov = (outer_all - own.T @ own - n * np.outer(pool_mean, pool_mean)) / (n - 1)
            pairs = np.nonzero((pair_bin == b) & (pair_chrom == chrom))[0]
            anchors = anchor_side[anchor_index[pairs]]
            mean[pairs] = anchors @ pool_mean
            variance = ((anchors @ pool_cov) * anchors).sum(axis=1)  # BLAS, not einsum
            sd[pairs] = np.sqrt(np.maximum(variance, 0.0))
    return (score - mean) / np.where(sd > 0, sd, 1.0)


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
    """LinkPeaks' test: each pair's ``score`` (gene row . peak row) against the same gene
    with every peak on another chromosome than the gene's in the peak's bin of
    ``accessibility`` (per peak, all peaks; ``n_bins`` quantile bins, 1 for every peak
    whatever its accessibility). Such peaks cannot regulate the gene in cis, so they show how
    much a gene co-varies with unrelated peaks of that accessibility. LinkPeaks draws 200 of
    them per pair; here the background's moments are exact (:func:`off_chromosome_zscore`),
    so the p-value is the same on every run. Returns the z-score and its one-sided normal
    p-value."""
    bins = quantile_bins(accessibility, n_bins)
    zscore = off_chromosome_zscore(
        gene_side, peak_side, score, gene_index, bins[peak_index], gene_chrom, peak_chrom, bins
    )
    return zscore, scipy.stats.norm.sf(zscore)


GENE_DETECTION_BINS = 5  # a peak's gene background has thousands of genes, not 100,000 peaks


def peak_centred_zscore(
    peak_side: np.ndarray,
    gene_rows: np.ndarray,
    score: np.ndarray,
    peak_index: np.ndarray,
    pair_detection: np.ndarray | None,
    peak_chrom: np.ndarray,
    gene_chrom: np.ndarray,
    gene_detection: np.ndarray | None,
) -> np.ndarray:
    """z-score of each pair's ``score`` against the same peak with every gene of
    ``gene_rows`` (rows of the scorer's gene side) on another chromosome than the peak's,
    detected in about as many cells as the pair's gene (``GENE_DETECTION_BINS`` quantile bins
    of ``gene_detection``; one bin where either detection is unknown): the peak's side of
    the background, as :func:`other_chromosome_test` is the gene's. A peak open wherever a
    whole program is on co-varies with genes everywhere, and here that counts against it;
    a well-measured gene co-varies more clearly than a rare one, so each is compared with
    its like."""
    if (
        gene_detection is not None
        and pair_detection is not None
        and np.isfinite(gene_detection).all()
        and np.isfinite(pair_detection).all()
    ):
        edges = quantile_edges(gene_detection, GENE_DETECTION_BINS)
        pool_bin = np.searchsorted(edges, gene_detection, side="right")
        pair_bin = np.searchsorted(edges, pair_detection, side="right")
    else:
        pool_bin, pair_bin = np.zeros(len(gene_rows), np.int64), np.zeros(len(score), np.int64)
    return off_chromosome_zscore(
        peak_side, gene_rows, score, peak_index, pair_bin, peak_chrom, gene_chrom, pool_bin
    )


def correlated_stouffer(first: np.ndarray, second: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Stouffer's sum of two z-scores of the same pairs, scaled by ``sqrt(2 + 2 r)`` with
    ``r`` their correlation over the pairs ``among`` (mostly null ones), so that a pair
    that is null under both is again N(0, 1): both z-scores read the same co-variation, so
    they are far from independent."""
    r = float(np.corrcoef(first[among], second[among])[0, 1]) if among.sum() > 2 else 0.0
    return (first + second) / np.sqrt(2.0 + 2.0 * (r if np.isfinite(r) else 0.0))


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
