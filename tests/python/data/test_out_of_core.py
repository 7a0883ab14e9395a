"""Out-of-core training: AnnData opened with backed="r" gives the same model as in memory, and
the ATAC counts are only ever read and held a block of rows at a time."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import factvae
from factvae.data import counts as rowsource
from factvae.data.counts import BackedRows

SETTINGS = {"n_hvg": 60, "n_components": 10, "n_latent": 8}
CHUNK_ENTRIES = 8000  # ~40 cells of the dense ATAC below: many blocks per pass
BATCH = 64


@pytest.fixture(scope="module")
def sim() -> factvae.SimulatedMultiome:
    # dense ATAC (20%) so the whole matrix is many blocks; some peaks and genes are all-zero
    return factvae.simulate(n_cells=800, n_genes=100, n_peaks=3000, atac_density=0.2, seed=3)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowsource, "CHUNK_ENTRIES", CHUNK_ENTRIES)


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the simulated data have all-zero features
        yield


def _backed(sim: factvae.SimulatedMultiome, folder: Path, atac_order: np.ndarray):
    sim.rna.write_h5ad(folder / "rna.h5ad")
    sim.atac[atac_order].write_h5ad(folder / "atac.h5ad")
    return (
        ad.read_h5ad(folder / "rna.h5ad", backed="r"),
        ad.read_h5ad(folder / "atac.h5ad", backed="r"),
    )


def _fit(model: factvae.FactVAE) -> factvae.FactVAE:
    return model.fit(max_epochs=2, batch_size=BATCH, device="cpu", seed=0, progress=False)


@pytest.mark.parametrize("shuffled", [False, True], ids=["same order", "atac cells shuffled"])
def test_backed_gives_the_same_encoder_inputs_and_latent(sim, tmp_path, shuffled):
    order = np.random.default_rng(0).permutation(sim.atac.n_obs) if shuffled else slice(None)
    rna, atac = _backed(sim, tmp_path, order)
    memory = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, **SETTINGS)
    backed = factvae.FactVAE(rna, atac, gene_annotation=sim.genes, **SETTINGS)
    assert isinstance(backed._data.atac_counts, BackedRows)
    assert backed.genes.equals(memory.genes) and backed.peaks.equals(memory.peaks)
    for name in ("_rna_rep", "_atac_rep", "_rna_log_library", "_atac_log_library"):
        np.testing.assert_allclose(getattr(backed, name), getattr(memory, name), rtol=1e-5)
    # the new cells' scale is cross-fitted on a subset of the cells, read a block at a time
    np.testing.assert_allclose(
        backed.projections["atac"].new_cell_scale, memory.projections["atac"].new_cell_scale,
        rtol=1e-4,
    )  # fmt: skip
    index = np.array([5, 700, 3, 42])
    for kind in ("rna_counts", "atac_counts"):
        got, want = (getattr(m._data, kind).rows(index) for m in (backed, memory))
        assert (got != want).nnz == 0
    np.testing.assert_allclose(
        _fit(backed).get_latent(), _fit(memory).get_latent(), rtol=1e-5, atol=1e-6
    )


class LargestAtac:
    """The most ATAC values read from disk at once, and the most cells in any ATAC sparse
    matrix made: a whole-matrix load pushes either to the full size."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path, min_columns: int) -> None:
        self.values_read, self.rows_held = 0, 0
        getitem = h5py.Dataset.__getitem__

        def read(dataset: h5py.Dataset, key: object) -> object:
            out = getitem(dataset, key)
            if Path(dataset.file.filename) == path and dataset.name in ("/X/data", "/X/indices"):
                self.values_read = max(self.values_read, np.size(out))
            return out

        monkeypatch.setattr(h5py.Dataset, "__getitem__", read)
        for kind in (sp.csr_matrix, sp.csc_matrix):
            monkeypatch.setattr(kind, "__init__", self._watch(kind.__init__, min_columns))

    def _watch(self, init, min_columns: int):
        def watched(matrix, *args, **kwargs) -> None:
            init(matrix, *args, **kwargs)
            if max(matrix.shape) >= min_columns:  # a cells x peaks (or peaks x cells) matrix
                self.rows_held = max(self.rows_held, min(matrix.shape))

        return watched


def test_fit_from_backed_reads_and_holds_only_blocks_of_atac_rows(sim, tmp_path, monkeypatch):
    rna, atac = _backed(sim, tmp_path, slice(None))
    indptr = atac.X.group["indptr"][:]
    longest_row = int(np.diff(indptr).max())
    block_rows = np.diff(rowsource.H5CSR(atac.X.group, "atac.X").chunk_bounds())
    row_bound = 2 * max(BATCH, int(block_rows.max()))
    # the check can tell: many blocks, a bound far below all cells and above the genes x peaks
    # prior's row count
    assert len(block_rows) >= 10 and sim.rna.n_vars < row_bound <= sim.atac.n_obs // 4

    largest = LargestAtac(monkeypatch, tmp_path / "atac.h5ad", min_columns=sim.atac.n_vars // 2)
    _fit(factvae.FactVAE(rna, atac, gene_annotation=sim.genes, **SETTINGS))
    assert largest.values_read <= CHUNK_ENTRIES + longest_row
    assert 0 < largest.rows_held <= row_bound

    atac.X.to_memory()  # what loading the whole matrix looks like to the same check
    assert largest.values_read == indptr[-1] and largest.rows_held == sim.atac.n_obs


@pytest.mark.parametrize(("value", "message"), [(np.nan, "NaN or infinite"), (-1, "negative")])
def test_bad_counts_in_the_last_block_are_a_clear_error(sim, tmp_path, value, message):
    bad = sim.atac.copy()
    bad.X.data[-1] = value  # the last cell: only a pass over every block finds it
    bad.write_h5ad(tmp_path / "atac.h5ad")
    atac = ad.read_h5ad(tmp_path / "atac.h5ad", backed="r")
    with pytest.raises(factvae.FactVAEInputError, match=f"atac.X holds {message}"):
        factvae.FactVAE(sim.rna, atac, gene_annotation=sim.genes, **SETTINGS)


def test_closed_backed_file_is_a_clear_error(sim, tmp_path):
    rna, atac = _backed(sim, tmp_path, slice(None))
    model = factvae.FactVAE(rna, atac, gene_annotation=sim.genes, **SETTINGS)
    atac.file.close()
    with pytest.raises(factvae.FactVAEInputError, match="was closed; keep the AnnData"):
        _fit(model)


def test_backed_csc_is_loaded_with_a_warning_that_names_the_fix(sim, tmp_path):
    csc = sim.atac.copy()
    csc.X = sp.csc_matrix(csc.X)
    csc.write_h5ad(tmp_path / "atac.h5ad")
    atac = ad.read_h5ad(tmp_path / "atac.h5ad", backed="r")
    with pytest.warns(UserWarning, match="store it as CSR"):
        model = factvae.FactVAE(sim.rna, atac, gene_annotation=sim.genes, **SETTINGS)
    assert not isinstance(model._data.atac_counts, BackedRows)


def test_a_subset_of_rows_reads_the_same_rows_a_block_at_a_time(sim, tmp_path):
    _, atac = _backed(sim, tmp_path, slice(None))
    backed = BackedRows(rowsource.H5CSR(atac.X.group, "atac.X"))
    rows = np.random.default_rng(1).choice(sim.atac.n_obs, 300, replace=False)
    subset = backed.select_rows(rows)
    want = sp.csr_matrix(sim.atac.X, dtype=np.float32)[rows]
    assert subset.shape == want.shape
    assert (subset.to_memory() != want).nnz == 0 and (subset.rows([7, 2]) != want[[7, 2]]).nnz == 0
    vector = np.random.default_rng(2).standard_normal((want.shape[1], 3))
    np.testing.assert_allclose(subset.dot(vector), want @ vector, rtol=1e-5)
    np.testing.assert_allclose(subset.tdot(vector[:300]), want.T @ vector[:300], rtol=1e-5)
    # each block is cut down as it is read: more than one block, none holding every row
    blocks = list(subset.chunks())
    assert len(blocks) > 1 and max(len(positions) for positions, _ in blocks) < len(rows)
