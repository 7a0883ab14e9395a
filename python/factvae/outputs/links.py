"""Gene-peak links: candidate pairs near the TSS of any annotated gene, ranked by the peak's
contact with the TSS and the model's co-variation of the pair, and tested.

Four scores are available by name (``LINK_SCORES``); each ingredient is a column of the table:

* ``"combined"`` (the default): the posterior probability that the pair is a link under a
  two-group model fitted to the candidates outside the model's gene-to-peak prior (training
  tied the prior's pairs together, so their co-variation is the prior's echo, not evidence
  about the rest). A pair's prior is its proximity, raised to an exponent and scaled: its
  contact with the TSS, ABC's power law of distance without Hi-C (``contact``), times the
  share of the peak's contact that goes to this gene rather than to the other annotated TSSs
  near it (``peak_share``; a peak beside another gene's promoter counts less). Its evidence
  (``evidence``), null N(0, 1), links N(shift, 1), reads the pair's co-variation from both
  ends: ``evidence_gene``, its z-score against the same gene with every peak on other
  chromosomes (the ``pvalue``'s ``zscore`` without LinkPeaks' matching on accessibility, which
  the test needs and which cost the ranking of planted links up to 0.017 distal AUROC), and
  ``evidence_peak``, against the same peak with every gene on other chromosomes detected in
  about as many cells (a peak open wherever a program is on co-varies with genes everywhere),
  joined by :func:`~factvae.outputs.link_tests.correlated_stouffer`. Against the gene's end
  alone, planted distal links rank at 0.938 / 0.940 instead of 0.936 / 0.933 (5,000 / 27,000
  peaks; ``benchmarks/README.md``). The data decide how much the co-variation counts: where linked
  pairs co-vary clearly the shift is large and ranks them, where the co-variation carries little
  the shift is near 0 and proximity ranks (:func:`two_group_fit`). On K562 CRISPRi pairs
  (``benchmarks/links_crispri.py``) the peaks' accessibility in these cells did not help, so it is
  reported (``activity``, ``abc``) rather than built in.
* ``"abc"``: the Activity-by-Contact score (Fulco et al. 2019) without Hi-C: the peak's
  accessibility (``activity``, the share of cells where it is open) times ``contact``, as a
  share of the gene's total over its candidates (``abc``).
* ``"correlation"``: the correlation over cells of the gene's and the peak's contributions to
  their decoders' logits, ``z_rna F_g`` and ``z_atac P_p`` (posterior means). A gene outside the
  modelled set uses its ridge loading on the RNA latent (:mod:`factvae.outputs.gene_loadings`)
  as ``F_g``; a modelled gene its factor blended with that loading, the factor counting more
  the more cells express the gene (``link_directions``: few counts pin a factor weakly). It
  does not depend on how the RNA and ATAC latent frames are rotated against each other.
* ``"cosine"``: the paper's score, the cosine of the gene's and the peak's embeddings (the
  decoders' factor columns). The regulatory term pulls exactly the prior's pairs together, so
  it is highest for them by construction.

No score is a causal effect. The tests (:mod:`factvae.outputs.link_tests`) are of the
``covariation`` column: the correlation, or the cosine with ``score="cosine"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize

from factvae.data.genomics import tss
from factvae.errors import FactVAEInputError
from factvae.outputs.link_tests import (
    benjamini_hochberg,
    correlated_stouffer,
    matched_background,
    matched_strata,
    other_chromosome_test,
    peak_centred_zscore,
    stratified_test,
)


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


LINK_SCORES = ("combined", "abc", "correlation", "cosine")
CONTACT_GAMMA = 1.024  # ABC's power-law exponent of contact with distance (Fulco et al. 2019)
CONTACT_FLOOR = 5_000  # bp; nearer peaks count as this far, as ABC's pseudocount distance


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


def contact(distance: np.ndarray) -> np.ndarray:
    """ABC's contact without Hi-C: ``|distance|^-gamma``, flat within ``CONTACT_FLOOR``,
    scaled to 1 there."""
    return (np.maximum(np.abs(distance), CONTACT_FLOOR) / CONTACT_FLOOR) ** -CONTACT_GAMMA


def peak_share(
    everyone: pd.DataFrame, n_peaks: int, peak_index: np.ndarray, contacts: np.ndarray
) -> np.ndarray:
    """Each pair's contact as a share of its peak's contact with every TSS of ``everyone``,
    the :func:`candidate_pairs` of the whole gene annotation (holding the pairs' genes).

    Why: promoters compete for an element, and the gene nearest an element is the one it
    most often regulates (a strong rule in CRISPRi screens), which distance from the gene's
    side does not see. Memory O(candidate pairs of the annotation)."""
    total = np.bincount(
        everyone["peak_idx"].to_numpy(np.int64),
        weights=contact(everyone["distance"].to_numpy()),
        minlength=n_peaks,
    )
    return contacts / np.where(total > 0, total, 1.0)[peak_index]


def gene_share(gene_index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each pair's value as a share of its gene's total over its candidates, as ABC
    normalises: a peak ranks high when it dominates its gene's neighbourhood."""
    total = np.bincount(gene_index, weights=values)
    return values / np.where(total > 0, total, 1.0)[gene_index]


@dataclass(frozen=True)
class GeneBackground:
    """The genes each peak's co-variation is compared with (:func:`peak_centred_zscore`):
    their rows of the scorer's gene side, their chromosomes and the share of cells
    expressing each (None where unknown)."""

    rows: np.ndarray
    chrom: np.ndarray
    detection: np.ndarray | None


PRIOR_CAP = 0.9  # no distance makes a pair certain, so the co-variation still ranks near pairs


@dataclass(frozen=True)
class TwoGroupFit:
    """The fitted two-group model: a pair's prior ``min(scale * contact^exponent, PRIOR_CAP)``,
    its ``zscore`` N(``shift``, 1) for links and N(0, 1) for other pairs."""

    shift: float
    scale: float
    exponent: float

    def log_prior(self, contacts: np.ndarray) -> np.ndarray:
        """The prior's log, computed as a log so that however small priors get they keep
        their order (a floor would tie them, and a tie ranks pairs at random)."""
        log_contacts = np.log(np.maximum(contacts, np.finfo(float).tiny))
        return np.minimum(np.log(self.scale) + self.exponent * log_contacts, np.log(PRIOR_CAP))

    def prior(self, contacts: np.ndarray) -> np.ndarray:
        return np.exp(self.log_prior(contacts))

    def posterior(self, zscore: np.ndarray, contacts: np.ndarray) -> np.ndarray:
        """P(link | contact, zscore): prior odds times the likelihood ratio
        ``exp(shift * z - shift^2 / 2)``, which rises with z whatever the shift."""
        log_prior = self.log_prior(contacts)
        evidence = self.shift * np.nan_to_num(zscore) - self.shift**2 / 2  # NaN: no evidence
        log_odds = log_prior - np.log(-np.expm1(log_prior)) + evidence
        return 1.0 / (1.0 + np.exp(-np.clip(log_odds, -700, 700)))

    def log_likelihood(self, zscore: np.ndarray, contacts: np.ndarray) -> float:
        """The candidates' log-likelihood under the mixture (constants dropped)."""
        log_prior = self.log_prior(contacts)
        link = log_prior - (zscore - self.shift) ** 2 / 2
        null = np.log(-np.expm1(log_prior)) - zscore**2 / 2
        return float(np.logaddexp(link, null).sum())


# (shift, scale, exponent) the fit starts from: one where the co-variation counts, from ABC's
# exponent, and two where proximity does, since from one start alone the optimiser can stop
# at a worse optimum (a simulated case is in the tests)
TWO_GROUP_STARTS = ((1.0, 0.1, CONTACT_GAMMA), (0.2, 0.5, 0.2), (0.5, 0.5, 0.5))


def two_group_fit(zscore: np.ndarray, contacts: np.ndarray) -> TwoGroupFit:
    """Fit :class:`TwoGroupFit` to all candidates by maximum likelihood of their z-scores,
    a mixture whose link share follows each pair's contact.

    The shift is kept >= 0 (a link does not co-vary less than background) and the exponent
    within 0-3. The null's N(0, 1) is the z-scores' own: each is standardised against its
    gene's background pairs. L-BFGS on three parameters from each of ``TWO_GROUP_STARTS``,
    keeping the likeliest: 0.3 s for snare_hcellline's candidates outside the prior.
    """
    z = np.nan_to_num(np.asarray(zscore, dtype=np.float64))
    contacts = np.asarray(contacts, dtype=np.float64)

    def negative_log_likelihood(params: np.ndarray) -> float:
        shift, log_scale, exponent = params
        return -TwoGroupFit(shift, np.exp(log_scale), exponent).log_likelihood(z, contacts)

    bounds = [(0.0, 10.0), (np.log(1e-6), np.log(PRIOR_CAP)), (0.0, 3.0)]
    best = min(
        (
            minimize(
                negative_log_likelihood,
                np.array([shift, np.log(scale), exponent]),
                method="L-BFGS-B",
                bounds=bounds,
            )
            for shift, scale, exponent in TWO_GROUP_STARTS
        ),
        key=lambda result: result.fun,
    )
    shift, log_scale, exponent = best.x
    return TwoGroupFit(float(shift), float(np.exp(log_scale)), float(exponent))


def infer_links(
    scorer: PairScorer,
    genes: pd.DataFrame,
    peaks: pd.DataFrame,
    window: int,
    n_background: int,
    seed: int,
    prior: sp.spmatrix | None = None,
    accessibility: np.ndarray | None = None,
    score: str = "combined",
    modelled: np.ndarray | None = None,
    competitors: pd.DataFrame | None = None,
    gene_detection: np.ndarray | None = None,
    peak_background: GeneBackground | None = None,
) -> pd.DataFrame:
    """Score the candidate pairs within ``window`` bp of each TSS and test them.

    ``genes`` and ``peaks`` are coordinate frames in the scorer's row order; ``scorer`` gives
    each pair's ``covariation``. ``score`` names the ranking (``LINK_SCORES``). Columns:

    * ``pvalue``/``zscore``/``qvalue``: the covariation against the same gene with every
      peak of matched ``accessibility`` on other chromosomes (LinkPeaks' background, whose
      mean and sd are computed exactly rather than from a random draw); Benjamini-Hochberg
      over all candidates.
    * ``pvalue_cis``/``zscore_cis``/``qvalue_cis``: the covariation against up to
      ``n_background`` candidates outside the ``prior`` (genes x peaks, same order) at a
      similar distance to the TSS with similarly accessible peaks: evidence beyond distance.
    * ``activity`` (the peak's ``accessibility``), ``contact``, ``abc``: the ABC ingredients.
    * ``peak_share``: ``contact`` as a share of the peak's contact with every TSS of
      ``competitors`` (gene coordinates, by default ``genes``; pass the whole annotation) within
      ``window`` (:func:`peak_share`). ``score``, with the default ``"combined"``, is the
      posterior of :func:`two_group_fit` from ``contact x peak_share`` and ``evidence``,
      fitted to the candidates outside ``prior``. ``evidence`` joins two z-scores of the
      covariation (:func:`correlated_stouffer`): ``evidence_gene``, against the same gene with
      every peak on other chromosomes, whatever its accessibility, and ``evidence_peak``,
      against the same peak with every gene of ``peak_background`` (:class:`GeneBackground`;
      by default the linked genes) on other chromosomes detected in about as many cells.
    * ``in_prior``: the prior's own pairs, which training tied together; ``modelled``: the
      gene is one the decoder models (else it has a ridge loading); ``gene_detection``: the
      share of cells expressing the gene (``gene_detection``, same order as ``genes``; NaN
      where not given), so a user can keep only genes the counts see well.
    """
    if window <= 0 or n_background < 1:
        raise FactVAEInputError("window must be > 0 bp and n_background >= 1.")
    if score not in LINK_SCORES:
        raise FactVAEInputError(f"score must be one of {list(LINK_SCORES)}, not {score!r}.")
    pairs = candidate_pairs(genes, peaks, window)
    if pairs.empty:
        raise FactVAEInputError(
            f"No peak lies within {window} bp of any chosen gene's TSS; widen window= or check "
            "that genes and peaks use the same genome build."
        )
    g, p = pairs["gene_idx"].to_numpy(), pairs["peak_idx"].to_numpy()
    covariation = scorer(g, p)
    in_prior = (
        np.asarray(sp.csr_matrix(prior)[g, p]).ravel() > 0
        if prior is not None
        else np.zeros(len(g), dtype=bool)
    )
    distance = pairs["distance"].to_numpy()
    known = accessibility is not None
    activity = accessibility if accessibility is not None else np.ones(len(peaks))
    contacts = contact(distance)
    abc = gene_share(g, activity[p] * contacts)
    if competitors is None:  # the linked genes compete among themselves: their own pairs
        everyone = pairs
    else:
        missing = ~genes.index.isin(competitors.index)
        everyone = candidate_pairs(pd.concat([competitors, genes[missing]]), peaks, window)
    shares = peak_share(everyone, len(peaks), p, contacts)
    proximity = contacts * shares
    if peak_background is None:  # the linked genes themselves
        peak_background = GeneBackground(scorer.genes, genes["chrom"].to_numpy(), gene_detection)
    names = [genes["chrom"], peaks["chrom"], pd.Series(peak_background.chrom)]
    codes = pd.factorize(np.concatenate([column.astype(str).to_numpy() for column in names]))[0]
    gene_chrom, peak_chrom, background_chrom = np.split(
        codes, [len(genes), len(genes) + len(peaks)]
    )
    trans_test = partial(
        other_chromosome_test, scorer.genes, scorer.peaks, covariation, g, p,
        gene_chrom, peak_chrom, activity,
    )  # fmt: skip
    zscore, pvalue = trans_test()  # matched on accessibility, as LinkPeaks
    evidence_gene, _ = trans_test(n_bins=1)  # every peak on other chromosomes
    evidence_peak = peak_centred_zscore(
        scorer.peaks, peak_background.rows, covariation, p,
        None if gene_detection is None else gene_detection[g],
        peak_chrom, background_chrom, peak_background.detection,
    )  # fmt: skip
    strata = matched_strata(distance, activity[p] if known else None)
    # the candidates training did not tie together (all of them, where it tied every one)
    outside_prior = ~in_prior if (~in_prior).any() else np.ones(len(g), dtype=bool)
    evidence = correlated_stouffer(evidence_gene, evidence_peak, outside_prior)
    background = matched_background(
        strata, outside_prior, n_background, np.random.default_rng(seed)
    )
    zscore_cis, pvalue_cis = stratified_test(covariation, strata, background)
    if score == "combined":
        fit = two_group_fit(evidence[outside_prior], proximity[outside_prior])
        ranking = fit.posterior(evidence, proximity)
    else:
        ranking = abc if score == "abc" else covariation
    return pd.DataFrame(
        {
            "gene": genes.index[g],
            "peak": peaks.index[p],
            "score": ranking,
            "covariation": covariation,
            "activity": activity[p],
            "contact": contacts,
            "abc": abc,
            "peak_share": shares,
            "evidence": evidence,
            "evidence_gene": evidence_gene,
            "evidence_peak": evidence_peak,
            "zscore": zscore,
            "pvalue": pvalue,
            "qvalue": benjamini_hochberg(pvalue),
            "zscore_cis": zscore_cis,
            "pvalue_cis": pvalue_cis,
            "qvalue_cis": benjamini_hochberg(pvalue_cis),
            "distance": distance,
            "in_prior": in_prior,
            "modelled": np.ones(len(g), dtype=bool) if modelled is None else modelled[g],
            "gene_detection": (
                np.full(len(g), np.nan) if gene_detection is None else gene_detection[g]
            ),
            "chrom": genes["chrom"].astype(str).to_numpy()[g],
            "tss": tss(genes)[g],
        }
    )
