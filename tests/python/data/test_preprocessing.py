"""Encoder inputs: the clipped RNA PCA against a dense reference, and the threaded sparse
products giving the single-threaded result bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from factvae.data import counts as rowsource
from factvae.data.preprocessing import SCALE_CLIP, atac_lsi, log_normalise, rna_pca


def _rare_gene_counts() -> tuple[sp.csr_matrix, np.ndarray]:
    """Counts where a few genes are seen in 2 cells only: scaled, they reach ~14."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(2.0, 1.0, (400, 60)))
    counts[:, :5] = 0
    counts[rng.choice(400, 2, replace=False), :5] = 7
    matrix = sp.csr_matrix(counts.astype(np.float32))
    return matrix, np.asarray(matrix.sum(axis=1)).ravel()


def test_clipped_pca_equals_a_dense_reference_with_seurats_clip() -> None:
    """With every component (the randomized SVD is then exact), the scores' singular values
    are those of the dense scaled matrix clipped at +-10, and not those of the unclipped one."""
    counts, totals = _rare_gene_counts()
    full = counts.shape[1] - 1
    scores, projection = rna_pca(counts, totals, full, seed=0, clip=SCALE_CLIP)
    dense = log_normalise(counts, totals, float(np.median(totals))).toarray()
    scaled = (dense - dense.mean(axis=0)) / dense.std(axis=0, ddof=1)
    assert np.abs(scaled).max() > 13  # the rare genes overshoot the clip unclipped
    clipped = np.linalg.svd(np.clip(scaled, -SCALE_CLIP, SCALE_CLIP), compute_uv=False)
    unclipped = np.linalg.svd(scaled, compute_uv=False)
    singular = np.linalg.norm(scores, axis=0)
    np.testing.assert_allclose(singular, clipped[:full], rtol=1e-4, atol=1e-4 * clipped[0])
    assert not np.allclose(singular, unclipped[:full], rtol=1e-2)
    assert projection.clip == SCALE_CLIP


def test_unclipped_pca_is_the_authors_form() -> None:
    counts, totals = _rare_gene_counts()
    clipped, _ = rna_pca(counts, totals, 10, seed=0, clip=SCALE_CLIP)
    unclipped, projection = rna_pca(counts, totals, 10, seed=0)
    assert projection.clip == np.inf
    assert np.abs(unclipped).max() > np.abs(clipped).max()


@pytest.mark.parametrize("cores", [2, 3])
def test_threaded_lsi_equals_the_single_threaded_result_bit_for_bit(monkeypatch, cores) -> None:
    rng = np.random.default_rng(1)
    counts = sp.random(700, 3000, density=0.02, format="csr", random_state=rng, dtype=np.float32)
    counts.data = np.ceil(counts.data * 3)
    monkeypatch.setattr(rowsource, "available_cores", lambda: 1)
    single, single_projection = atac_lsi(counts, 20, seed=0)
    monkeypatch.setattr(rowsource, "available_cores", lambda: cores)
    threaded, threaded_projection = atac_lsi(counts, 20, seed=0)
    np.testing.assert_array_equal(threaded, single)
    np.testing.assert_array_equal(threaded_projection.components, single_projection.components)


def test_row_bands_cover_every_row_once_and_share_memory() -> None:
    matrix = sp.random(50, 30, density=0.2, format="csr", random_state=2, dtype=np.float32)
    bands = rowsource.row_bands(matrix, 4)
    assert len(bands) == 4
    stacked = sp.vstack([band for _, band in bands], format="csr")
    assert (stacked != matrix).nnz == 0
    assert bands[0][0].start == 0 and bands[-1][0].stop == 50
    assert all(np.shares_memory(band.data, matrix.data) for _, band in bands if band.nnz)


def test_projecting_the_training_counts_gives_the_fit_time_inputs_exactly() -> None:
    """One implementation: ``projected=True`` fits give each training cell exactly what
    ``project`` gives it later (in memory or a block of cells at a time), and the SVD's own
    scores agree with it as far as the randomized SVD converged (its leading components)."""
    counts, totals = _rare_gene_counts()
    scores, pca = rna_pca(counts, totals, 10, seed=0, clip=SCALE_CLIP, projected=True)
    np.testing.assert_array_equal(pca.project(counts, totals), scores)
    blocks = rowsource.InMemoryRows(counts)

    def in_blocks():
        return ((slice(a, a + 100), counts[a : a + 100]) for a in range(0, 400, 100))

    blocks.chunks = in_blocks
    np.testing.assert_allclose(pca.project(blocks, totals), scores, rtol=1e-6, atol=1e-6)
    svd_scores, _ = rna_pca(counts, totals, 10, seed=0, clip=SCALE_CLIP)
    assert abs(np.corrcoef(svd_scores[:, 0], scores[:, 0])[0, 1]) > 0.99

    rng = np.random.default_rng(1)
    peaks = sp.random(300, 1500, density=0.03, format="csr", random_state=rng, dtype=np.float32)
    peaks.data = np.ceil(peaks.data * 3)
    lsi_input, lsi = atac_lsi(peaks, 15, seed=0, projected=True)
    np.testing.assert_array_equal(lsi.project(peaks), lsi_input)
    np.testing.assert_allclose(lsi.project(peaks[:50]), lsi_input[:50], rtol=1e-5, atol=1e-5)


def _training_neighbour_share(training: np.ndarray, new: np.ndarray) -> float:
    """The training cells' share of each new cell's 15 nearest neighbours among both."""
    from sklearn.neighbors import NearestNeighbors

    together = np.vstack([training, new])
    neighbours = NearestNeighbors(n_neighbors=15).fit(together).kneighbors(new)[1]
    return float((neighbours < len(training)).mean())


def test_new_cells_are_scaled_to_land_among_the_training_cells() -> None:
    """Cells outside the fit project about a third as far onto the components past the
    structure (the SVD fitted the training cells' own noise there); scaled by the
    cross-fitted ratio they sit among the training cells of the same data, in both inputs."""
    from factvae import simulate
    from factvae.data.preprocessing import standardise_rows

    sim = simulate(n_cells=1000, n_genes=400, n_peaks=4000, seed=2)
    new = np.random.default_rng(0).random(sim.rna.n_obs) < 0.2
    peaks, genes = sp.csr_matrix(sim.atac.X), sp.csr_matrix(sim.rna.X)
    totals = np.asarray(genes.sum(axis=1)).ravel()
    atac_input, lsi = atac_lsi(peaks[~new], 50, seed=0)
    rna_scores, pca = rna_pca(genes[~new], totals[~new], 50, seed=0, clip=SCALE_CLIP)
    rna_input = standardise_rows(rna_scores)
    assert lsi.new_cell_scale is not None and pca.new_cell_scale is not None
    # the structure's components are barely scaled, the noise's by far more
    assert abs(lsi.new_cell_scale[0] - 1) < 0.2 and lsi.new_cell_scale[-1] > 2
    scaled_atac = lsi.project(peaks[new])
    scaled_rna = standardise_rows(pca.project(genes[new], totals[new]))
    lsi.new_cell_scale = pca.new_cell_scale = None
    plain_atac = lsi.project(peaks[new])
    plain_rna = standardise_rows(pca.project(genes[new], totals[new]))
    mixed = 0.8  # the training cells' share when mixed: a random 80% of the cells
    assert _training_neighbour_share(atac_input, plain_atac) < 0.5 * mixed
    assert _training_neighbour_share(atac_input, scaled_atac) > 0.85 * mixed
    assert (
        _training_neighbour_share(rna_input, scaled_rna)
        > _training_neighbour_share(rna_input, plain_rna) + 0.1
    )


def test_projected_fits_and_tiny_sets_measure_no_scale() -> None:
    """A projected fit keeps a training cell's own input when projected again, so it scales
    nothing; too few cells to split in two halves measure nothing."""
    counts, totals = _rare_gene_counts()
    assert rna_pca(counts, totals, 10, seed=0, projected=True)[1].new_cell_scale is None
    assert rna_pca(counts[:30], totals[:30], 10, seed=0)[1].new_cell_scale is None
    assert rna_pca(counts, totals, 10, seed=0)[1].new_cell_scale.shape == (10,)


def test_a_component_the_held_out_half_never_reaches_is_not_blown_up() -> None:
    from factvae.data.preprocessing import SCALE_RANGE, out_of_sample_scale

    def fit_and_project(fitted: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = np.random.default_rng(0).standard_normal((len(fitted), 3))
        outside = np.random.default_rng(1).standard_normal((len(held), 3))
        outside[:, 2] = 0.0  # no held-out cell reaches the third component
        return inside, outside[:, :3]

    scale = out_of_sample_scale(500, 5, 0, fit_and_project)
    assert scale is not None and scale.shape == (5,)
    assert 0.8 < scale[0] < 1.25 and scale[2] == SCALE_RANGE[1] and scale[4] == scale[2]
