"""Gene-peak links: candidate pairs near each TSS, scored from the trained model, and tested
against a background of pairs matched on distance to the TSS and on the peak's accessibility.

Two scores are available by name (``LINK_SCORES``):

* ``"correlation"`` (the default): the correlation over cells of the gene's and the peak's
  contributions to their decoders' logits, ``z_rna F_g`` and ``z_atac P_p`` (posterior means).
  It asks whether the model's denoised expression of the gene and denoised accessibility of the
  peak rise and fall together across cells; unlike the cosine it does not depend on how the RNA
  and ATAC latent frames are rotated against each other, so it carries information beyond the
  pairs the prior tied together.
* ``"cosine"``: the paper's score, the cosine of the gene's and the peak's embeddings (the
  decoders' factor columns). The regulatory term pulls exactly the prior's pairs together, so
  it is highest for them by construction.

Neither score is a causal effect: a high score says the pair co-varies in the model more than
pairs at the same distance with equally accessible peaks do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.stats

from factvae.data.genomics import tss
from factvae.errors import FactVAEInputError


def candidate_pairs(genes: pd.DataFrame, peaks: pd.DataFrame, window: int) -> pd.DataFrame:
    """Gene-peak pairs whose peak lies within ``window`` bp of the gene's TSS.

    ``distance`` is 0 when the peak covers the TSS, else the gap to the nearer peak end,
    signed by the gene's strand (negative = upstream). Per chromosome, peaks sorted by start
    are searched with ``searchsorted``, so memory is O(pairs), never genes x peaks.
    """
    gene_tss = tss(genes)
    gene_strand = np.where(genes["strand"].astype(str).to_numpy() == "-", -1, 1)
    gene_chrom = genes["chrom"].astype(str).to_numpy()
    peak_chrom = peaks["chrom"].astype(str).to_numpy()
    frames = []
    max_width = int((peaks["end"] - peaks["start"]).max()) if len(peaks) else 0
    for chrom in np.intersect1d(np.unique(gene_chrom), np.unique(peak_chrom)):
        g = np.nonzero(gene_chrom == chrom)[0]
        p = np.nonzero(peak_chrom == chrom)[0]
        starts = peaks["start"].to_numpy()[p]
        order = np.argsort(starts, kind="stable")
        p, starts = p[order], starts[order]
        ends = peaks["end"].to_numpy()[p]
        lo = np.searchsorted(starts, gene_tss[g] - window - max_width, side="left")
        hi = np.searchsorted(starts, gene_tss[g] + window, side="right")
        counts = hi - lo
        gene_rep = np.repeat(g, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        peak_pos = np.repeat(lo, counts) + offsets
        t = gene_tss[gene_rep]
        s, e = starts[peak_pos], ends[peak_pos]
        gap = np.where(t < s, s - t, np.where(t >= e, e - 1 - t, 0))
        keep = np.abs(gap) <= window
        frames.append(
            pd.DataFrame(
                {
                    "gene_idx": gene_rep[keep],
                    "peak_idx": p[peak_pos[keep]],
                    "distance": (gap * gene_strand[gene_rep])[keep],
                }
            )
        )
    if not frames:
        return pd.DataFrame({"gene_idx": [], "peak_idx": [], "distance": []}, dtype=np.int64)
    return pd.concat(frames, ignore_index=True)


LINK_SCORES = ("correlation", "cosine")
DISTANCE_BINS = 10  # quantile bins of |distance to the TSS| that background pairs are matched in
ACCESSIBILITY_BINS = 5  # quantile bins of the peaks' detection rate, likewise


@dataclass(frozen=True)
class PairScorer:
    """Two matrices whose row-wise dot products are a score: gene side (genes x k) and peak
    side (peaks x k), so any pair's score costs O(k) and no genes x peaks matrix is made."""

    genes: np.ndarray
    peaks: np.ndarray

    def __call__(self, gene_index: np.ndarray, peak_index: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.genes[gene_index], self.peaks[peak_index])


def cosine_scorer(gene_embeddings: np.ndarray, peak_embeddings: np.ndarray) -> PairScorer:
    """The paper's score: cosine of the gene's and the peak's embeddings."""
    return PairScorer(_unit_rows(gene_embeddings), _unit_rows(peak_embeddings))


def correlation_scorer(
    gene_factors: np.ndarray,
    peak_factors: np.ndarray,
    rna_latent: np.ndarray,
    atac_latent: np.ndarray,
) -> PairScorer:
    """Correlation over cells of ``rna_latent @ F_g`` and ``atac_latent @ P_p``.

    With centred latents, the covariance is ``F_g' C P_p`` for the d x d cross-covariance ``C``
    of the two latents, and the variances are ``F_g' S_rna F_g`` and ``P_p' S_atac P_p``: all
    from d x d matrices, never a cells x features one.
    """
    rna = rna_latent - rna_latent.mean(axis=0)
    atac = atac_latent - atac_latent.mean(axis=0)
    n = max(len(rna) - 1, 1)
    cross = rna.T @ atac / n
    gene_sd = np.sqrt(np.einsum("ij,jk,ik->i", gene_factors, rna.T @ rna / n, gene_factors))
    peak_sd = np.sqrt(np.einsum("ij,jk,ik->i", peak_factors, atac.T @ atac / n, peak_factors))
    gene_side = gene_factors @ cross / np.where(gene_sd > 0, gene_sd, 1.0)[:, None]
    peak_side = peak_factors / np.where(peak_sd > 0, peak_sd, 1.0)[:, None]
    return PairScorer(gene_side, peak_side)


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms == 0, 1, norms)


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
    p-value, as Signac's LinkPeaks computes it: a stratum holds only some hundred background
    pairs, too few for empirical p-values small enough to survive multiple testing."""
    zscore = np.empty(len(score))
    for stratum in np.unique(strata):
        rows = np.nonzero(strata == stratum)[0]
        reference = background[strata[background] == stratum]
        null = score[reference if len(reference) else background]
        sd = null.std(ddof=1) if len(null) > 1 else 1.0
        zscore[rows] = (score[rows] - null.mean()) / (sd if sd > 0 else 1.0)
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


def infer_links(
    scorer: PairScorer,
    genes: pd.DataFrame,
    peaks: pd.DataFrame,
    window: int,
    n_background: int,
    seed: int,
    prior: sp.spmatrix | None = None,
    accessibility: np.ndarray | None = None,
) -> pd.DataFrame:
    """Score the candidate pairs within ``window`` bp of each TSS and test them.

    ``genes`` and ``peaks`` are coordinate frames in the scorer's row order. The background is
    up to ``n_background`` candidates outside the ``prior`` (genes x peaks, same order), drawn
    to match the candidates' distances and peak ``accessibility``; each pair's z-score and
    empirical p-value come from the background pairs of its stratum, q-values from
    Benjamini-Hochberg over all candidates. ``in_prior`` marks the prior's own pairs, which
    training tied together.
    """
    if window <= 0 or n_background < 1:
        raise FactVAEInputError("window must be > 0 bp and n_background >= 1.")
    pairs = candidate_pairs(genes, peaks, window)
    if pairs.empty:
        raise FactVAEInputError(
            f"No peak lies within {window} bp of any modelled gene's TSS; widen window= or check "
            "that genes and peaks use the same genome build."
        )
    g, p = pairs["gene_idx"].to_numpy(), pairs["peak_idx"].to_numpy()
    score = scorer(g, p)
    in_prior = (
        np.asarray(sp.csr_matrix(prior)[g, p]).ravel() > 0
        if prior is not None
        else np.zeros(len(g), dtype=bool)
    )
    distance = pairs["distance"].to_numpy()
    strata = matched_strata(distance, None if accessibility is None else accessibility[p])
    eligible = ~in_prior if (~in_prior).any() else np.ones(len(g), dtype=bool)
    background = matched_background(strata, eligible, n_background, np.random.default_rng(seed))
    zscore, pvalue = stratified_test(score, strata, background)
    return pd.DataFrame(
        {
            "gene": genes.index[g],
            "peak": peaks.index[p],
            "score": score,
            "zscore": zscore,
            "pvalue": pvalue,
            "qvalue": benjamini_hochberg(pvalue),
            "distance": distance,
            "in_prior": in_prior,
            "chrom": genes["chrom"].astype(str).to_numpy()[g],
            "tss": tss(genes)[g],
        }
    )
