"""Gene-peak links: candidate pairs near each TSS, scored by the gene and peak embeddings and
tested against a background of pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms == 0, 1, norms)


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
    gene_embeddings: pd.DataFrame,
    peak_embeddings: pd.DataFrame,
    genes: pd.DataFrame,
    peaks: pd.DataFrame,
    window: int,
    n_background: int,
    seed: int,
) -> pd.DataFrame:
    """Score candidate pairs by embedding cosine and test them against shuffled pairs.

    The background pairs each candidate's gene with a random candidate's peak (the pairs
    shuffled), as scGLUE does; z-score and one-sided empirical p-value come from it, q-values
    from Benjamini-Hochberg.
    """
    if window <= 0 or n_background < 1:
        raise FactVAEInputError("window must be > 0 bp and n_background >= 1.")
    gene_unit = _unit_rows(gene_embeddings.to_numpy(dtype=np.float64))
    peak_unit = _unit_rows(peak_embeddings.to_numpy(dtype=np.float64))
    pairs = candidate_pairs(genes, peaks, window)
    if pairs.empty:
        raise FactVAEInputError(
            f"No peak lies within {window} bp of any modelled gene's TSS; widen window= or check "
            "that genes and peaks use the same genome build."
        )
    g, p = pairs["gene_idx"].to_numpy(), pairs["peak_idx"].to_numpy()
    score = np.einsum("ij,ij->i", gene_unit[g], peak_unit[p])
    rng = np.random.default_rng(seed)
    bg_g = g[rng.integers(0, len(g), n_background)]
    bg_p = p[rng.integers(0, len(p), n_background)]
    background = np.sort(np.einsum("ij,ij->i", gene_unit[bg_g], peak_unit[bg_p]))
    exceed = n_background - np.searchsorted(background, score, side="left")
    pvalue = (exceed + 1) / (n_background + 1)
    sd = background.std(ddof=1) if n_background > 1 else 1.0
    zscore = (score - background.mean()) / (sd if sd > 0 else 1.0)
    gene_tss = tss(genes)
    return pd.DataFrame(
        {
            "gene": genes.index[g],
            "peak": peaks.index[p],
            "score": score,
            "zscore": zscore,
            "pvalue": pvalue,
            "qvalue": benjamini_hochberg(pvalue),
            "distance": pairs["distance"].to_numpy(),
            "chrom": genes["chrom"].astype(str).to_numpy()[g],
            "tss": gene_tss[g],
        }
    )
