"""Significance of gene-peak links, two ways: against peaks on other chromosomes with matched
accessibility (Signac's LinkPeaks background: ``pvalue``), and against pairs at the same
distance to the TSS with equally accessible peaks (``pvalue_cis``: evidence beyond distance).

Both turn a pair's statistic into a z-score against its background's mean and sd and report
the one-sided normal tail, as LinkPeaks does: a background of a few hundred pairs is too small
for empirical p-values to survive multiple testing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.stats

DISTANCE_BINS = 10  # quantile bins of |distance to the TSS| that cis background pairs share
ACCESSIBILITY_BINS = 5  # quantile bins of the peaks' detection rate, likewise
TRANS_ACCESSIBILITY_BINS = 20  # finer: the other-chromosome background has every peak to draw on
TRANS_SAMPLES = 200  # background peaks per pair, as LinkPeaks' n_sample
CHUNK = 2_000  # (gene, bin) groups scored at once: memory CHUNK x TRANS_SAMPLES x k

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


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
    scorer: Scorer,
    score: np.ndarray,
    gene_index: np.ndarray,
    peak_index: np.ndarray,
    gene_chrom: np.ndarray,
    peak_chrom: np.ndarray,
    accessibility: np.ndarray,
    rng: np.random.Generator,
    n_samples: int = TRANS_SAMPLES,
) -> tuple[np.ndarray, np.ndarray]:
    """LinkPeaks' test: each pair's ``score`` against the same gene scored with
    ``n_samples`` random peaks on other chromosomes than the gene's, in the peak's bin of
    ``accessibility`` (per peak, all peaks). Such peaks cannot regulate the gene in cis, so
    they show how much a gene co-varies with unrelated peaks of that accessibility.

    Pairs of one gene in one bin share their background draw; ``gene_chrom`` and
    ``peak_chrom`` are integer codes of one coding. Memory: O(pairs) plus one chunk of draws.
    """
    bins = quantile_bins(accessibility, TRANS_ACCESSIBILITY_BINS)
    n_bins = int(bins.max()) + 1 if len(bins) else 1
    groups, inverse = np.unique(gene_index * n_bins + bins[peak_index], return_inverse=True)
    group_gene, group_bin = groups // n_bins, groups % n_bins
    mean, sd = np.zeros(len(groups)), np.ones(len(groups))
    for b in np.unique(group_bin):
        for chrom in np.unique(gene_chrom[group_gene[group_bin == b]]):
            pool = np.nonzero((bins == b) & (peak_chrom != chrom))[0]
            if len(pool) < 2:
                continue  # z against mean 0, sd 1: no background to compare with
            members = np.nonzero((group_bin == b) & (gene_chrom[group_gene] == chrom))[0]
            for start in range(0, len(members), CHUNK):
                part = members[start : start + CHUNK]
                drawn = pool[rng.integers(len(pool), size=(len(part), n_samples))]
                null = scorer(np.repeat(group_gene[part], n_samples), drawn.ravel())
                null = null.reshape(len(part), n_samples)
                mean[part] = null.mean(axis=1)
                sd[part] = null.std(axis=1, ddof=1)
    sd = np.where(sd > 0, sd, 1.0)
    zscore = (score - mean[inverse]) / sd[inverse]
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
