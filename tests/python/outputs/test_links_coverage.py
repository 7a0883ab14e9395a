"""Links for every gene, the combined ranking, and the two backgrounds of the tests."""

import copy

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scipy.stats

import factvae
from conftest import SMALL_SETTINGS
from factvae import FactVAEInputError
from factvae.data.counts import InMemoryRows
from factvae.outputs.gene_loadings import (
    FACTOR_HALF_DETECTION,
    GeneEvidence,
    gene_evidence,
    link_directions,
    ridge_loadings,
)
from factvae.outputs.link_tests import (
    GENE_DETECTION_BINS,
    TRANS_ACCESSIBILITY_BINS,
    correlated_stouffer,
    other_chromosome_test,
    peak_centred_zscore,
    quantile_bins,
)
from factvae.outputs.links import (
    CONTACT_FLOOR,
    PRIOR_CAP,
    TWO_GROUP_STARTS,
    TwoGroupFit,
    candidate_pairs,
    contact,
    gene_share,
    infer_links,
    peak_share,
    two_group_fit,
)
from factvae.settings import RUN_DEFAULTS


@pytest.fixture(scope="module")
def few_hvgs(sim) -> factvae.FactVAE:
    """A model of 80 of the simulation's genes, so most genes are outside the modelled set."""
    settings = {**SMALL_SETTINGS, "n_hvg": 80}
    model = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, **settings)
    return model.fit(max_epochs=5, batch_size=64, progress=False, seed=0)


def test_links_cover_every_detected_annotated_gene(few_hvgs, sim):
    trained = few_hvgs
    detected = pd.Series(np.asarray((sim.rna.X > 0).sum(axis=0)).ravel(), sim.rna.var_names)
    wanted = set(detected.index[detected >= RUN_DEFAULTS.link_min_cells])
    wanted &= set(sim.genes["gene_name"])
    links = trained.infer_links(n_background=2000, rna=sim.rna)
    linked = set(links["gene"])
    assert len(wanted - set(trained.genes)) > 100  # there are unmodelled genes to cover
    # every wanted gene with a peak in the window is linked, modelled or not
    own = trained.infer_links(n_background=2000)
    assert set(own["gene"]) < linked and len(linked) > 1.5 * len(set(own["gene"]))
    assert linked <= wanted | set(trained.genes)
    annotation = sim.genes.set_index("gene_name").loc[sorted(wanted)]
    reachable = annotation.index[
        candidate_pairs(annotation, trained.peak_coords, 150_000)["gene_idx"].unique()
    ]
    assert set(reachable) <= linked  # every wanted gene with a peak in the window
    unmodelled = links.loc[~links["modelled"], "gene"]
    assert len(unmodelled) and not unmodelled.isin(trained.genes).any()
    assert links.loc[links["modelled"], "gene"].isin(trained.genes).all()
    assert not links.loc[~links["modelled"], "in_prior"].any()  # never trained on them
    # a modelled gene's pairs score the same with or without the other genes
    mine = links[links["modelled"]].set_index(["gene", "peak"])["covariation"]
    alone = own.set_index(["gene", "peak"])["covariation"]
    np.testing.assert_allclose(mine.reindex(alone.index).to_numpy(), alone.to_numpy())


def test_rare_genes_are_linked_from_one_cell_and_say_how_rare(few_hvgs, sim):
    """The default covers a gene seen in a single cell, under the model's min_cells, and
    each pair carries its gene's detection, so a user can apply a stricter rule; a gene no
    cell expresses has no links."""
    rna = sim.rna
    cells = pd.Series(np.asarray((rna.X > 0).sum(axis=0)).ravel(), rna.var_names)
    links = few_hvgs.infer_links(n_background=500, rna=rna)
    annotation = sim.genes.set_index("gene_name")
    reachable = set(
        annotation.index[candidate_pairs(annotation, few_hvgs.peak_coords, 150_000)["gene_idx"]]
    )
    single = {g for g in cells.index[cells == 1] if g in reachable}
    unseen = {g for g in cells.index[cells == 0] if g in reachable}
    assert single and unseen
    assert single <= set(links["gene"]) and not unseen & set(links["gene"])
    np.testing.assert_allclose(
        links["gene_detection"], cells.reindex(links["gene"]).to_numpy() / rna.n_obs
    )


def test_the_combined_score_is_fitted_outside_the_prior(few_hvgs):
    """Training tied the prior's pairs together: their co-variation must not set how much
    the co-variation counts for the other candidates."""
    links = few_hvgs.infer_links(n_background=500)
    inside = links["in_prior"].to_numpy()
    assert 0 < inside.sum() < len(links)
    z = links["evidence"].to_numpy()
    assert not np.allclose(z, links["zscore"])  # the test's z matches accessibility; not this
    proximity = (links["contact"] * links["peak_share"]).to_numpy()
    outside = two_group_fit(z[~inside], proximity[~inside])
    np.testing.assert_allclose(links["score"], outside.posterior(z, proximity), rtol=1e-10)
    everything = two_group_fit(z, proximity)
    assert not np.allclose(everything.posterior(z, proximity), links["score"], rtol=1e-3)


def test_chosen_genes_and_refusals(few_hvgs, sim):
    trained = few_hvgs
    outside = [g for g in sim.rna.var_names if g not in trained.genes][:3]
    chosen = [*outside, trained.genes[0]]
    links = trained.infer_links(n_background=500, rna=sim.rna, genes=chosen)
    assert set(links["gene"]) <= set(chosen) and set(outside) & set(links["gene"])
    with pytest.raises(FactVAEInputError, match="pass rna="):
        trained.infer_links(genes=outside)
    with pytest.raises(FactVAEInputError, match="not features of rna"):
        trained.infer_links(rna=sim.rna, genes=["no-such-gene"])
    with pytest.raises(FactVAEInputError, match="lacks 10 of the model's cells"):
        trained.infer_links(rna=sim.rna[10:], genes=chosen)


def test_ridge_loadings_recover_a_gene_that_follows_the_latent():
    """A gene whose log-normalised expression is a linear function of the latent gets that
    direction back, from sparse counts read in blocks; an unrelated gene gets little."""
    rng = np.random.default_rng(0)
    cells, d = 2000, 3
    latent = rng.standard_normal((cells, d))
    direction = np.array([1.0, -0.5, 0.0])
    rate = np.exp(1.0 + 0.8 * latent @ direction)
    counts = np.column_stack([rng.poisson(rate), rng.poisson(2.0, cells)]).astype(np.float32)
    totals = np.full(cells, 1e4)  # log-normalised = log1p(counts)
    loadings = ridge_loadings(InMemoryRows(sp.csr_matrix(counts)), totals, latent)
    cosine = loadings[0] @ direction / np.linalg.norm(loadings[0]) / np.linalg.norm(direction)
    assert cosine > 0.98
    assert np.linalg.norm(loadings[1]) < 0.05 * np.linalg.norm(loadings[0])


def test_a_modelled_gene_links_by_its_factor_as_far_as_cells_express_it():
    """A gene most cells express keeps its decoder factor's direction, a gene few cells express
    takes its ridge direction, and at FACTOR_HALF_DETECTION both count the same."""
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((5000, 3)) * np.array([1.0, 2.0, 0.5])
    factor, ridge = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    detection = np.array([0.9, 0.001, FACTOR_HALF_DETECTION])
    evidence = GeneEvidence(np.tile(ridge, (3, 1)), detection)
    directions = link_directions(np.tile(factor, (3, 1)), evidence, latent)

    def spread_along(loadings: np.ndarray, axis: np.ndarray) -> float:
        # the share of the gene's spread over the cells that the axis carries
        parts = latent @ (loadings * axis)
        return float(np.var(parts) / np.var(latent @ loadings))

    assert spread_along(directions[0], factor) > 0.95
    assert spread_along(directions[1], ridge) > 0.95
    assert spread_along(directions[2], factor) == pytest.approx(0.5, abs=0.02)
    # models saved without the evidence link by the factors as they are
    np.testing.assert_array_equal(link_directions(np.tile(factor, (3, 1)), None, latent),
                                  np.tile(factor, (3, 1)))  # fmt: skip


def test_ridge_loadings_of_a_latent_without_spread_are_zero():
    counts = InMemoryRows(sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 1.0]])))
    loadings = ridge_loadings(counts, np.full(3, 10.0), np.ones((3, 4)))
    np.testing.assert_array_equal(loadings, np.zeros((2, 4)))


def test_gene_evidence_counts_the_cells_expressing_each_gene_and_its_ridge_loading():
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((400, 4))
    counts = sp.csr_matrix(rng.poisson([0.05, 0.5, 3.0], (400, 3)).astype(np.float32))
    log_library = np.log(np.full(400, 500.0)).astype(np.float32)
    evidence = gene_evidence(InMemoryRows(counts), log_library, latent)
    np.testing.assert_allclose(evidence.detection, (counts.toarray() > 0).mean(axis=0))
    np.testing.assert_allclose(
        evidence.ridge,
        ridge_loadings(InMemoryRows(counts), np.full(400, 500.0), latent),
        rtol=1e-5,
    )


def test_links_read_the_gene_evidence_kept_from_training(few_hvgs):
    """Training keeps each modelled gene's evidence; the correlation-based links use it, the
    paper's cosine does not."""
    evidence = few_hvgs.gene_evidence
    assert evidence is not None
    assert evidence.ridge.shape == (len(few_hvgs.genes), few_hvgs.architecture.n_latent)
    assert ((evidence.detection > 0) & (evidence.detection <= 1)).all()
    factors_only = copy.copy(few_hvgs)
    factors_only.gene_evidence = None
    for score, differs in (("correlation", True), ("cosine", False)):
        blended = few_hvgs.infer_links(n_background=500, score=score)
        plain = factors_only.infer_links(n_background=500, score=score)
        same = np.allclose(blended["covariation"], plain["covariation"])
        assert same != differs, score


def test_other_chromosome_background_is_every_off_chromosome_peak_of_matched_accessibility():
    """The exact moments equal the mean and sd of the gene's scores with every peak on another
    chromosome in the pair's accessibility bin, counted one by one."""
    rng = np.random.default_rng(0)
    n_peaks, k = 3000, 4
    peak_chrom = rng.integers(0, 5, n_peaks)
    accessibility = rng.beta(0.5, 5, n_peaks)
    gene_side = rng.standard_normal((4, k))
    peak_side = rng.standard_normal((n_peaks, k)) + accessibility[:, None] * 3  # bins differ
    gene_chrom = np.array([0, 1, 2, 3])
    genes = np.repeat(np.arange(4), 50)
    peaks = np.concatenate([rng.choice(np.nonzero(peak_chrom == c)[0], 50) for c in range(4)])
    score = np.einsum("ij,ij->i", gene_side[genes], peak_side[peaks])
    zscore, pvalue = other_chromosome_test(
        gene_side, peak_side, score, genes, peaks, gene_chrom, peak_chrom, accessibility
    )
    bins = quantile_bins(accessibility, TRANS_ACCESSIBILITY_BINS)
    for row in (0, 60, 199):
        gene, peak = genes[row], peaks[row]
        pool = (peak_chrom != gene_chrom[gene]) & (bins == bins[peak])
        null = peak_side[pool] @ gene_side[gene]
        assert zscore[row] == pytest.approx((score[row] - null.mean()) / null.std(ddof=1))
    np.testing.assert_allclose(pvalue, scipy.stats.norm.sf(zscore))
    unmatched, _ = other_chromosome_test(
        gene_side, peak_side, score, genes, peaks, gene_chrom, peak_chrom, accessibility, n_bins=1
    )
    null = peak_side[peak_chrom != gene_chrom[genes[0]]] @ gene_side[genes[0]]
    assert unmatched[0] == pytest.approx((score[0] - null.mean()) / null.std(ddof=1))


def test_other_chromosome_test_scores_against_the_genes_own_background():
    """Gene 0 co-varies with everything (background mean 0.5, sd ~0.1), gene 1 with nothing:
    the same 0.6 is unremarkable for gene 0 and stands out for gene 1."""
    rng = np.random.default_rng(1)
    n_peaks = 2000
    peak_chrom = np.repeat([0, 1], n_peaks // 2)
    gene_side = np.array([[0.5, 1.0], [0.0, 1.0]])  # an offset and the peak's noise
    peak_side = np.column_stack([np.ones(n_peaks), rng.standard_normal(n_peaks) * 0.1])
    zscore, pvalue = other_chromosome_test(
        gene_side, peak_side, np.array([0.6, 0.6]), np.array([0, 1]), np.array([3, 4]),
        np.array([0, 0]), peak_chrom, np.zeros(n_peaks),
    )  # fmt: skip
    assert 0.5 < zscore[0] < 1.5 and zscore[1] > 4.5
    assert pvalue[1] < 1e-5 < pvalue[0]


def test_peak_background_is_every_off_chromosome_gene_detected_as_often():
    """The peak's side: the pair's score against the same peak with every gene on another
    chromosome in the pair's gene's detection bin, counted one by one; a peak that
    co-varies with every gene stands out less than one that co-varies with its own."""
    rng = np.random.default_rng(2)
    n_genes, k = 1500, 3
    gene_chrom = rng.integers(0, 4, n_genes)
    detection = rng.beta(0.5, 3, n_genes)
    gene_rows = rng.standard_normal((n_genes, k)) + detection[:, None] * 4  # bins differ
    peak_side = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    peak_chrom = np.array([0, 1])
    genes = rng.choice(n_genes, 40)
    peaks = np.repeat([0, 1], 20)
    score = np.einsum("ij,ij->i", gene_rows[genes], peak_side[peaks])
    zscore = peak_centred_zscore(
        peak_side, gene_rows, score, peaks, detection[genes], peak_chrom, gene_chrom, detection
    )
    bins = quantile_bins(detection, GENE_DETECTION_BINS)
    for row in (0, 25, 39):
        pool = (gene_chrom != peak_chrom[peaks[row]]) & (bins == bins[genes[row]])
        null = gene_rows[pool] @ peak_side[peaks[row]]
        assert zscore[row] == pytest.approx((score[row] - null.mean()) / null.std(ddof=1))
    unknown = peak_centred_zscore(
        peak_side, gene_rows, score, peaks, None, peak_chrom, gene_chrom, detection
    )
    null = gene_rows[gene_chrom != 0] @ peak_side[0]
    assert unknown[0] == pytest.approx((score[0] - null.mean()) / null.std(ddof=1))
    # a hub peak (offset 0.5 with every gene) against a quiet one, the same score 0.6
    hub = np.column_stack([np.ones(n_genes), rng.standard_normal(n_genes) * 0.1])
    z = peak_centred_zscore(
        np.array([[0.5, 1.0], [0.0, 1.0]]), hub, np.array([0.6, 0.6]), np.array([0, 1]), None,
        np.array([0, 0]), np.ones(n_genes, dtype=np.int64), None,
    )  # fmt: skip
    assert 0.5 < z[0] < 1.5 and z[1] > 4.5


def test_correlated_z_scores_join_into_a_unit_null():
    """Two z-scores of one co-variation are correlated; their sum over sqrt(2 + 2r) is
    N(0, 1) again for null pairs, where a plain Stouffer sum over sqrt(2) is too wide."""
    rng = np.random.default_rng(3)
    first, second = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], 200_000).T
    everyone = np.ones(len(first), dtype=bool)
    joined = correlated_stouffer(first, second, everyone)
    assert joined.std() == pytest.approx(1.0, abs=0.01)
    assert ((first + second) / np.sqrt(2)).std() > 1.3
    # r is read over the pairs named only
    half = np.arange(len(first)) < len(first) // 2
    shifted = second + np.where(half, 0.0, 5.0 * rng.standard_normal(len(first)))
    np.testing.assert_allclose(
        correlated_stouffer(first, shifted, half),
        (first + shifted) / np.sqrt(2 + 2 * np.corrcoef(first[half], shifted[half])[0, 1]),
    )


def test_the_evidence_reads_both_ends_against_every_reachable_gene(few_hvgs, sim):
    """``evidence`` joins the gene's and the peak's z-scores; the peak's background is every
    gene the inputs reach, so a pair's evidence does not depend on which genes are asked."""
    links = few_hvgs.infer_links(n_background=500, rna=sim.rna)
    outside = ~links["in_prior"].to_numpy()
    joined = correlated_stouffer(
        links["evidence_gene"].to_numpy(), links["evidence_peak"].to_numpy(), outside
    )
    np.testing.assert_allclose(links["evidence"], joined)
    assert not np.allclose(links["evidence_gene"], links["evidence_peak"])
    chosen = links["gene"].drop_duplicates().to_numpy()[:5]
    few = few_hvgs.infer_links(n_background=500, rna=sim.rna, genes=chosen)
    both = few.merge(links, on=["gene", "peak"], suffixes=("", "_all"))
    assert len(both) == len(few) > 0
    np.testing.assert_allclose(both["evidence_peak"], both["evidence_peak_all"])
    np.testing.assert_allclose(both["evidence_gene"], both["evidence_gene_all"])


def test_contact_is_flat_near_the_tss_then_a_power_law():
    d = np.array([0, -CONTACT_FLOOR, CONTACT_FLOOR, 10 * CONTACT_FLOOR, 100 * CONTACT_FLOOR])
    c = contact(d)
    np.testing.assert_allclose(c[:3], 1.0)
    np.testing.assert_allclose(c[3] / c[4], 10**1.024)


def planted_candidates(shift: float, seed: int = 0):
    """Candidates 0-150 kb from a TSS whose links are drawn with probability 0.5 x contact and
    whose z-scores are N(shift, 1) for links, N(0, 1) for the others."""
    rng = np.random.default_rng(seed)
    contacts = contact(rng.uniform(0, 150_000, 20_000))
    linked = rng.random(len(contacts)) < 0.5 * contacts
    zscore = rng.normal(size=len(contacts)) + shift * linked
    return contacts, zscore, linked


def test_two_group_fit_learns_how_much_the_co_variation_counts():
    from sklearn.metrics import roc_auc_score

    contacts, zscore, linked = planted_candidates(shift=2.0)
    fit = two_group_fit(zscore, contacts)
    assert 1.7 < fit.shift < 2.3 and 0.7 < fit.exponent < 1.4
    posterior = fit.posterior(zscore, contacts)
    auroc = roc_auc_score(linked, posterior)
    assert auroc > roc_auc_score(linked, zscore) + 0.02
    assert auroc > roc_auc_score(linked, contacts) + 0.05
    # without evidence in the z-scores the shift is near 0 and distance ranks alone
    flat = two_group_fit(planted_candidates(shift=0.0)[1], contacts)
    assert flat.shift < 0.3
    assert roc_auc_score(linked, flat.posterior(zscore, contacts)) > 0.65


def test_two_group_fit_finds_the_likeliest_of_its_starts():
    """Weak evidence (shift 0.5) and a flat prior (0.2 x contact^0.1, contact divided by a
    rank-like 1-5): from ABC's start alone L-BFGS stops at shift 0.67, exponent 0.26."""
    rng = np.random.default_rng(0)
    contacts = contact(rng.uniform(0, 150_000, 20_000)) / rng.integers(1, 6, 20_000)
    linked = rng.random(len(contacts)) < 0.2 * contacts**0.1
    zscore = rng.normal(size=len(contacts)) + 0.5 * linked
    fit = two_group_fit(zscore, contacts)
    assert abs(fit.shift - 0.5) < 0.15 and fit.exponent < 0.2
    for shift, scale, exponent in TWO_GROUP_STARTS:  # no start is likelier than the answer
        start = TwoGroupFit(shift, scale, exponent)
        assert fit.log_likelihood(zscore, contacts) >= start.log_likelihood(zscore, contacts)


def test_a_prior_too_small_to_hold_as_a_number_still_ranks_by_contact():
    # without evidence (shift 0) the posterior is the prior, which must keep contact's order
    fit = TwoGroupFit(shift=0.0, scale=1e-6, exponent=3.0)
    contacts = np.geomspace(1e-4, 1.0, 50)
    assert np.all(np.diff(fit.posterior(np.zeros(50), contacts)) > 0)


def test_two_group_posterior_rises_with_evidence_and_contact():
    fit = TwoGroupFit(shift=1.5, scale=0.5, exponent=1.0)
    z = np.linspace(-10, 10, 41)
    near, far = fit.posterior(z, np.ones_like(z)), fit.posterior(z, np.full_like(z, 0.05))
    assert np.all(np.diff(near) > 0) and np.all(np.diff(far) >= 0)
    assert np.all(near >= far) and np.all((near >= 0) & (near <= 1))
    assert fit.prior(np.array([1.0]))[0] == 0.5 and fit.prior(np.array([0.05]))[0] == 0.025
    assert TwoGroupFit(0.0, 5.0, 1.0).prior(np.array([1.0]))[0] == PRIOR_CAP


def test_abc_shares_sum_to_one_per_gene():
    genes = np.array([0, 0, 1])
    share = gene_share(genes, np.array([1.0, 3.0, 2.0]))
    np.testing.assert_allclose(share, [0.25, 0.75, 1.0])


def three_genes_two_peaks():
    """Genes A and B, each with a peak 20 kb downstream of its TSS; gene C's TSS lies 2 kb from
    B's peak, so that peak is C's promoter region more than B's enhancer."""
    genes = pd.DataFrame(
        {"chrom": "chr1", "start": [100_000, 500_000, 522_000], "end": [110_000, 510_000,
         530_000], "strand": "+"},
        index=["A", "B", "C"],
    )  # fmt: skip
    peaks = pd.DataFrame(
        {"chrom": "chr1", "start": [120_000, 520_000], "end": [120_500, 520_500]},
        index=["chr1-120000-120500", "chr1-520000-520500"],
    )
    return genes, peaks


def test_peak_share_is_a_peaks_contact_spread_over_every_nearby_tss():
    genes, peaks = three_genes_two_peaks()
    pairs = candidate_pairs(genes, peaks, 150_000)
    contacts = contact(pairs["distance"].to_numpy())
    share = peak_share(pairs, len(peaks), pairs["peak_idx"].to_numpy(), contacts)
    # each peak's shares over the genes sum to 1; the lone peak belongs wholly to A
    np.testing.assert_allclose(np.bincount(pairs["peak_idx"], weights=share), [1.0, 1.0])
    lone = (pairs["gene_idx"] == 0) & (pairs["peak_idx"] == 0)
    assert share[lone.to_numpy()][0] == pytest.approx(
        contact(np.array([20_000]))[0]
        / (contact(pairs.loc[pairs["peak_idx"] == 0, "distance"].to_numpy()).sum())
    )
    b_pair = ((pairs["gene_idx"] == 1) & (pairs["peak_idx"] == 1)).to_numpy()
    c_pair = ((pairs["gene_idx"] == 2) & (pairs["peak_idx"] == 1)).to_numpy()
    assert share[c_pair][0] > 0.7 > 0.3 > share[b_pair][0]


def test_the_default_ranking_counts_competing_promoters_from_the_whole_annotation():
    """Linking A and B only: B's peak, at A's distance, ranks below A's because C (not linked,
    but in the annotation passed as competitors) is nearer to it; without competitors the two
    rank level."""
    genes, peaks = three_genes_two_peaks()
    scorer = factvae.outputs.links.PairScorer(np.zeros((2, 1)), np.zeros((2, 1)))
    common = dict(peaks=peaks, window=150_000, n_background=5, seed=0)
    alone = infer_links(scorer, genes.loc[["A", "B"]], **common).set_index(["gene", "peak"])
    competed = infer_links(scorer, genes.loc[["A", "B"]], competitors=genes, **common)
    competed = competed.set_index(["gene", "peak"])
    a, b = ("A", peaks.index[0]), ("B", peaks.index[1])
    assert alone.loc[a, "score"] == pytest.approx(alone.loc[b, "score"])
    assert competed.loc[a, "score"] > competed.loc[b, "score"]
    assert competed.loc[b, "peak_share"] < 0.3 and competed.loc[a, "peak_share"] > 0.5
