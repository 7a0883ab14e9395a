"""The simulator plants known cell types and gene-peak links; these tests check that it does."""

from __future__ import annotations

import tracemalloc

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import factvae
from factvae.data.simulate import SimulatedMultiome, simulate
from factvae.errors import FactVAEInputError


@pytest.fixture(scope="module")
def sim() -> SimulatedMultiome:
    return simulate(seed=0)


def _tss(genes: pd.DataFrame) -> np.ndarray:
    minus = genes["strand"].to_numpy() == "-"
    return np.where(minus, genes["end"].to_numpy() - 1, genes["start"].to_numpy())


def _link_geometry(sim: SimulatedMultiome) -> pd.DataFrame:
    """Each link with its TSS distance and whether it overlaps the gene body + 2 kb upstream."""
    genes = sim.genes.set_index("gene_name")
    gene = genes.loc[sim.links["gene"]]
    peak = sim.atac.var.loc[sim.links["peak"]]
    minus = gene["strand"].to_numpy() == "-"
    tss = _tss(gene)
    locus_start = np.where(minus, gene["start"], gene["start"] - 2000)
    locus_end = np.where(minus, gene["end"] + 2000, gene["end"])
    p_start, p_end = peak["start"].to_numpy(), peak["end"].to_numpy()
    distance = np.maximum(0, np.maximum(p_start - tss, tss - (p_end - 1)))
    return pd.DataFrame(
        {
            "gene": sim.links["gene"].to_numpy(),
            "same_chrom": gene["chrom"].to_numpy() == peak["chrom"].to_numpy(),
            "distance": distance,
            "overlaps_locus": (p_start < locus_end) & (p_end > locus_start),
        }
    )


def _type_means(adata: anndata.AnnData, normalise: bool) -> np.ndarray:
    """Mean (library-normalised) value of every feature in every cell type: types x features."""
    x = adata.X
    if normalise:
        x = sp.diags(1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)) @ x
    codes = adata.obs["cell_type"].cat.codes.to_numpy()
    n_types = len(adata.obs["cell_type"].cat.categories)
    indicator = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))))
    sums = np.asarray((indicator @ x).todense())
    return sums / np.bincount(codes, minlength=n_types)[:, None]


def _assert_same(a: SimulatedMultiome, b: SimulatedMultiome) -> None:
    for name in ("rna", "atac"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x.X != y.X).nnz == 0
        pd.testing.assert_frame_equal(x.obs, y.obs)
        pd.testing.assert_frame_equal(x.var, y.var)
    pd.testing.assert_frame_equal(a.genes, b.genes)
    pd.testing.assert_frame_equal(a.links, b.links)


def test_shapes_and_names_are_consistent(sim: SimulatedMultiome) -> None:
    rna, atac = sim.rna, sim.atac
    assert rna.shape == (800, 500)
    assert atac.shape == (800, 5000)
    assert list(rna.obs_names) == list(atac.obs_names)
    assert rna.obs_names.is_unique and rna.var_names.is_unique and atac.var_names.is_unique
    assert rna.var_names[0] == "gene0001"
    for adata in (rna, atac):
        assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert (rna.obs["cell_type"] == atac.obs["cell_type"]).all()
    assert list(rna.obs["cell_type"].cat.categories) == ["type1", "type2", "type3", "type4"]

    assert list(sim.genes.columns) == ["chrom", "start", "end", "gene_name", "strand"]
    assert list(sim.genes["gene_name"]) == list(rna.var_names)
    assert set(sim.genes["strand"]) == {"+", "-"}
    assert set(sim.genes["chrom"]) == {f"chr{k}" for k in range(1, 6)}
    length = sim.genes["end"] - sim.genes["start"]
    assert length.between(5_000, 60_000).all()

    var = atac.var
    assert {"chrom", "start", "end"} <= set(var.columns)
    # names read back to the BED columns the Signac way: chrom-(start + 1)-end
    expected = var["chrom"] + "-" + (var["start"] + 1).astype(str) + "-" + var["end"].astype(str)
    assert list(expected) == list(atac.var_names)
    assert np.issubdtype(var["start"].dtype, np.integer)
    assert np.issubdtype(var["end"].dtype, np.integer)
    assert (var["end"] - var["start"]).between(200, 1000).all()

    assert list(sim.links.columns) == ["gene", "peak"]
    assert set(sim.links["gene"]) <= set(rna.var_names)
    assert set(sim.links["peak"]) <= set(atac.var_names)
    assert not sim.links.duplicated().any()
    assert sim.links["peak"].is_unique  # each planted peak regulates one gene


def test_counts_are_sparse_non_negative_integers(sim: SimulatedMultiome) -> None:
    for adata in (sim.rna, sim.atac):
        x = adata.X
        assert isinstance(x, sp.csr_matrix)
        assert x.dtype in (np.float32, np.int32)
        assert x.has_canonical_format
        assert (x.data > 0).all()  # no negative values and no stored zeros
        np.testing.assert_array_equal(x.data, np.round(x.data))


def test_same_seed_is_identical_and_other_seed_differs() -> None:
    kwargs = {"n_cells": 200, "n_genes": 100, "n_peaks": 1000}
    first, again = simulate(seed=3, **kwargs), simulate(seed=3, **kwargs)
    _assert_same(first, again)
    other = simulate(seed=4, **kwargs)
    assert (first.rna.X != other.rna.X).nnz > 0
    assert (first.atac.X != other.atac.X).nnz > 0
    assert not first.links.equals(other.links)


@pytest.mark.parametrize("density", [0.03, 0.1])
def test_atac_density_matches_request(density: float) -> None:
    atac = simulate(n_cells=600, n_peaks=4000, atac_density=density, seed=1).atac
    observed = atac.X.nnz / np.prod(atac.shape)
    assert abs(observed - density) < 0.1 * density
    values, counts = np.unique(atac.X.data, return_counts=True)
    share = dict(zip(values.tolist(), (counts / counts.sum()).tolist()))
    assert share[1.0] > 0.6
    assert share[1.0] + share.get(2.0, 0.0) > 0.9


def test_rna_sparsity_and_depth_are_realistic(sim: SimulatedMultiome) -> None:
    x = sim.rna.X
    zeros = 1.0 - x.nnz / np.prod(x.shape)
    assert 0.80 <= zeros <= 0.95
    library = np.asarray(x.sum(axis=1)).ravel()
    assert library.min() > 0
    assert library.std() / library.mean() > 0.2  # cells differ in depth
    # Overdispersed: many genes' variance exceeds their mean by far more than Poisson noise.
    mean = np.asarray(x.mean(axis=0)).ravel()
    var = np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2
    assert np.median(var[mean > 0.5] / mean[mean > 0.5]) > 1.5


def test_links_are_within_150kb_and_both_proximal_and_distal(sim: SimulatedMultiome) -> None:
    geometry = _link_geometry(sim)
    assert geometry["same_chrom"].all()
    assert (geometry["distance"] <= 150_000).all()
    proximal = geometry["overlaps_locus"]
    assert proximal.any() and (~proximal).any()
    assert (geometry.loc[~proximal, "distance"] >= 8_000).all()
    # Every regulated gene gets peaks_per_gene=4 links, half in its locus and half distal.
    regulated = sim.rna.var_names[sim.rna.var["program"] != "none"]
    per_gene = geometry.groupby("gene")["overlaps_locus"].agg(["size", "sum"])
    assert set(per_gene.index) == set(regulated)
    assert (per_gene["size"] == 4).all()
    assert (per_gene["sum"] == 2).all()
    assert 0.2 < 1 - len(regulated) / sim.rna.n_vars < 0.4  # ~30% housekeeping


def test_links_respect_strand_for_upstream_peaks() -> None:
    """A promoter peak lies before the start on '+' and after the end on '-', never the reverse."""
    sim = simulate(n_cells=50, n_genes=400, n_peaks=4000, peaks_per_gene=10, seed=2)
    geometry = _link_geometry(sim)
    genes = sim.genes.set_index("gene_name").loc[sim.links["gene"]]
    peaks = sim.atac.var.loc[sim.links["peak"]]
    proximal = geometry["overlaps_locus"].to_numpy()
    plus = genes["strand"].to_numpy() == "+"
    before_start = peaks["end"].to_numpy() <= genes["start"].to_numpy()
    after_end = peaks["start"].to_numpy() >= genes["end"].to_numpy()
    upstream_plus = proximal & plus & before_start
    upstream_minus = proximal & ~plus & after_end
    assert upstream_plus.any() and upstream_minus.any()
    # Outside the body, a locus peak sits only on the upstream side of its strand.
    assert not (proximal & plus & after_end).any()
    assert not (proximal & ~plus & before_start).any()
    assert (geometry["distance"] <= 150_000).all()


def test_peaks_do_not_overlap(sim: SimulatedMultiome) -> None:
    for size in ({}, {"n_genes": 50, "n_peaks": 20_000, "n_cells": 20}):
        var = (sim if not size else simulate(seed=5, **size)).atac.var
        ordered = var.sort_values(["chrom", "start"])
        same_chrom = ordered["chrom"].to_numpy()[1:] == ordered["chrom"].to_numpy()[:-1]
        gap = ordered["start"].to_numpy()[1:] - ordered["end"].to_numpy()[:-1]
        assert (gap[same_chrom] > 0).all()


def test_links_share_their_gene_program(sim: SimulatedMultiome) -> None:
    gene_program = sim.rna.var["program"].astype(str).loc[sim.links["gene"]].to_numpy()
    peak_program = sim.atac.var["program"].astype(str).loc[sim.links["peak"]].to_numpy()
    np.testing.assert_array_equal(gene_program, peak_program)
    background = sim.atac.var.drop(index=sim.links["peak"])
    assert (background["program"] == "none").mean() > 0.2
    assert background["program"].nunique() == 5  # four types and "none"


def test_cell_type_signal_in_rna_and_atac(sim: SimulatedMultiome) -> None:
    types = list(sim.rna.obs["cell_type"].cat.categories)
    sizes = sim.rna.obs["cell_type"].value_counts()
    assert sizes.min() > 0 and sizes.max() > sizes.min()  # unequal types
    for adata, normalise in ((sim.rna, True), (sim.atac, False)):
        means = _type_means(adata, normalise)
        program = adata.var["program"].astype(str).to_numpy()
        for t, name in enumerate(types):
            own = means[t, program == name].mean()
            others = np.delete(means, t, axis=0)[:, program == name].mean()
            assert own > 2.5 * others, (adata.n_vars, name, own, others)
        housekeeping = means[:, program == "none"].sum(axis=1)
        assert housekeeping.max() < 2 * housekeeping.min()


def test_large_atac_is_generated_sparse_without_dense_memory() -> None:
    """20,000 x 50,000 at 2% must stay O(non-zeros): a dense float32 copy alone would be 4 GB."""
    tracemalloc.start()
    try:
        result = simulate(n_cells=20_000, n_genes=200, n_peaks=50_000, atac_density=0.02)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    x = result.atac.X
    assert isinstance(x, sp.csr_matrix)
    assert x.shape == (20_000, 50_000)
    assert abs(x.nnz / (20_000 * 50_000) - 0.02) < 0.002
    assert peak < 0.75e9, f"peak traced memory {peak / 1e9:.2f} GB"


def test_tiny_inputs_work() -> None:
    result = simulate(n_cells=3, n_genes=1, n_peaks=10, n_cell_types=3, peaks_per_gene=2)
    assert result.rna.shape == (3, 1)
    assert result.atac.shape == (3, 10)
    assert set(result.rna.obs["cell_type"]) == {"type1", "type2", "type3"}
    assert len(result.links) == 2


def test_result_round_trips_through_h5ad(sim: SimulatedMultiome, tmp_path) -> None:
    path = tmp_path / "atac.h5ad"
    sim.atac.write_h5ad(path)
    back = anndata.read_h5ad(path)
    assert (back.X != sim.atac.X).nnz == 0
    assert list(back.var_names) == list(sim.atac.var_names)
    assert list(back.obs["cell_type"]) == list(sim.atac.obs["cell_type"])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_cells": 0}, "n_cells"),
        ({"n_cells": 2.5}, "n_cells"),
        ({"n_cells": True}, "n_cells"),
        ({"n_genes": -1}, "n_genes"),
        ({"n_peaks": 0}, "n_peaks"),
        ({"n_cell_types": 0}, "n_cell_types"),
        ({"atac_density": 0.0}, "atac_density"),
        ({"atac_density": 1.0}, "atac_density"),
        ({"atac_density": float("nan")}, "atac_density"),
        ({"atac_density": "0.1"}, "atac_density"),
        ({"rna_depth": 0}, "rna_depth"),
        ({"peaks_per_gene": 0}, "peaks_per_gene"),
        ({"peaks_per_gene": 11}, "peaks_per_gene"),
        ({"seed": -1}, "seed"),
        ({"n_cells": 3, "n_cell_types": 4}, "n_cell_types"),
        ({"n_peaks": 100}, "n_peaks"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs: dict, name: str) -> None:
    with pytest.raises(FactVAEInputError, match=name):
        simulate(**kwargs)


def test_real_scale_preset_has_the_statistics_of_the_real_set_it_imitates() -> None:
    """Within a factor the issue's SNARE-seq2 cortex numbers (benchmarks/real_scale.py prints
    both): low RNA depth with heavy counts, very sparse ATAC with many rare peaks, 12 libraries."""
    from factvae.data.simulate import count_statistics

    sim = factvae.simulate_preset("real_scale", seed=0)
    stats = count_statistics(sim)
    assert (stats["cells"], stats["genes"], stats["peaks"]) == (10_309, 1_677, 25_734)
    assert sim.rna.obs["cell_type"].nunique() == 14 and stats["batches"] == 12
    assert 200 <= stats["rna_median_umis"] <= 300  # real: 247
    assert stats["rna_umis_p95"] / stats["rna_umis_p5"] > 5  # real: 696 / 88
    assert 5 <= stats["rna_nonzero_pct"] <= 8  # real: 6.4
    assert stats["rna_max_count"] >= 300  # real: 525
    assert 0.3 <= stats["atac_nonzero_pct"] <= 0.45  # real: 0.38
    assert 60 <= stats["atac_median_counts"] <= 110  # real: 83
    assert 10 <= stats["median_cells_per_peak"] <= 22  # real: 16
    assert 500 <= stats["empty_peaks"] <= 2000  # real: 990
    assert stats["batch_rna_median_max"] / stats["batch_rna_median_min"] > 1.3  # real: 326 / 213
    assert 600 <= stats["batch_cells_min"] <= stats["batch_cells_max"] <= 1100


def test_batch_knobs_leave_the_default_output_unchanged() -> None:
    plain = factvae.simulate(n_cells=200, n_genes=100, n_peaks=1000, seed=3)
    batched = factvae.simulate(n_cells=200, n_genes=100, n_peaks=1000, seed=3, n_batches=1)
    assert (plain.rna.X != batched.rna.X).nnz == 0 and (plain.atac.X != batched.atac.X).nnz == 0
    several = factvae.simulate(n_cells=200, n_genes=100, n_peaks=1000, seed=3, n_batches=3)
    assert several.rna.obs["batch"].nunique() == 3
    assert "batch" not in plain.rna.obs


def test_batch_shifts_change_only_the_chosen_features_and_only_when_asked() -> None:
    shape = dict(n_cells=600, n_genes=200, n_peaks=2000, seed=4, n_batches=2)
    plain = factvae.simulate(**shape)
    zero = factvae.simulate(**shape, batch_shift_sd=0.0)
    assert (plain.rna.X != zero.rna.X).nnz == 0 and (plain.atac.X != zero.atac.X).nnz == 0
    assert "batch_shift" not in zero.rna.varm
    shifted = factvae.simulate(**shape, batch_shift_sd=1.0)
    assert (plain.rna.X != shifted.rna.X).nnz > 0 and (plain.atac.X != shifted.atac.X).nnz > 0
    assert plain.rna.obs.equals(shifted.rna.obs)  # the other draws of the seed are as they were
    assert plain.links.equals(shifted.links)
    batch = shifted.rna.obs["batch"].to_numpy()
    for adata, normalise in ((shifted.rna, True), (shifted.atac, False)):
        truth = adata.varm["batch_shift"]  # features x batches
        assert truth.shape == (adata.n_vars, 2)
        assert np.allclose((truth != 0).mean(axis=0), 0.2, atol=0.01)
        x = sp.csr_matrix(adata.X)
        if normalise:
            x = sp.diags(1.0 / np.asarray(x.sum(axis=1)).ravel()) @ x
        means = np.vstack([np.asarray(x[batch == b].mean(axis=0)).ravel()
                           for b in ("batch1", "batch2")])  # fmt: skip
        seen = (means > 0).all(axis=0)
        observed = np.log(means[0, seen] / means[1, seen])
        planted = (truth[:, 0] - truth[:, 1])[seen]
        moved = planted != 0
        # the batches differ where a shift was planted, by about the planted amount
        assert np.corrcoef(observed[moved], planted[moved])[0, 1] > 0.8
        assert np.abs(observed[moved]).mean() > 1.5 * np.abs(observed[~moved]).mean()
