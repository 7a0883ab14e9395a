"""MuData in and out: a fit from an .h5mu through the API and the CLI, the results written back
where scverse users look for them and read back from disk; bad MuData get clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import factvae
from factvae.cli import RESULTS_H5MU, main
from factvae.io.mudata import AUGMENTED_LAYER, EMBEDDING_KEYS, LINKS_KEY, add_results

SETTINGS = {"n_hvg": 100, "n_components": 8, "n_latent": 4}


@pytest.fixture(scope="module")
def sim() -> factvae.SimulatedMultiome:
    return factvae.simulate(n_cells=160, n_genes=120, n_peaks=1200, seed=4)


@pytest.fixture(scope="module")
def h5mu(sim, tmp_path_factory) -> Path:
    """The simulated pair as an .h5mu whose ATAC modality lists its cells in another order."""
    atac = sim.atac[::-1].copy()
    path = tmp_path_factory.mktemp("h5mu") / "multiome.h5mu"
    mudata.MuData({"rna": sim.rna.copy(), "atac": atac}).write(path)
    return path


def _fit_quietly(*args, **kwargs) -> factvae.FactVAE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # features without counts in small data
        model = factvae.FactVAE(*args, **SETTINGS, **kwargs)
        return model.fit(max_epochs=2, batch_size=32, progress=False, seed=0)


def test_a_fit_from_mudata_equals_the_fit_from_its_anndata_pair(sim, h5mu):
    mdata = mudata.read_h5mu(h5mu)
    from_mudata = _fit_quietly(mdata, gene_annotation=sim.genes)
    from_pair = _fit_quietly(sim.rna, sim.atac, gene_annotation=sim.genes)
    assert list(from_mudata.obs_names) == list(sim.rna.obs_names)
    np.testing.assert_array_equal(from_mudata.get_latent(), from_pair.get_latent())


def test_results_written_into_the_mudata_read_back_from_disk(sim, h5mu, tmp_path):
    mdata = mudata.read_h5mu(h5mu)
    model = _fit_quietly(mdata, gene_annotation=sim.genes)
    links = model.infer_links()
    augmented = model.augment_atac(threshold=0.05)
    add_results(mdata, model, links, augmented)
    mdata.write(tmp_path / "out.h5mu")
    back = mudata.read_h5mu(tmp_path / "out.h5mu")

    rows = pd.Index(back.obs_names).get_indexer(model.obs_names)
    for kind, key in EMBEDDING_KEYS.items():
        np.testing.assert_array_equal(back.obsm[key][rows], model.get_latent(kind))
    stored = pd.DataFrame(back.uns[LINKS_KEY])
    assert stored[["gene", "peak"]].values.tolist() == links[["gene", "peak"]].values.tolist()
    np.testing.assert_allclose(stored["score"].to_numpy(), links["score"].to_numpy())
    # the layer is in the ATAC modality's own (reversed) cell order and its own peaks
    layer = back.mod["atac"].layers[AUGMENTED_LAYER]
    assert sp.issparse(layer) and layer.shape == back.mod["atac"].shape
    cells = pd.Index(back.mod["atac"].obs_names).get_indexer(model.obs_names)
    peaks = pd.Index(back.mod["atac"].var_names).get_indexer(model.peaks)
    np.testing.assert_array_equal(
        sp.csr_matrix(layer)[cells][:, peaks].toarray(), augmented.toarray()
    )


def test_the_cli_fits_an_h5mu_and_writes_the_results_into_a_copy(sim, h5mu, tmp_path):
    bed = tmp_path / "genes.bed"
    sim.genes[["chrom", "start", "end", "gene_name", "strand"]].to_csv(
        bed, sep="\t", header=False, index=False
    )
    out = tmp_path / "run"
    args = ["fit", "--h5mu", str(h5mu), "--annotation", str(bed), "--out", str(out)]
    assert main([*args, "--epochs", "2", "--latent", "4", "--hvg", "100", "--quiet"]) == 0
    back = mudata.read_h5mu(out / RESULTS_H5MU)
    embeddings = pd.read_csv(out / "embeddings.tsv.gz", sep="\t", index_col=0)
    rows = pd.Index(back.obs_names).get_indexer(embeddings.index)
    joint = embeddings.filter(regex="^joint_").to_numpy()
    np.testing.assert_allclose(back.obsm["X_factvae"][rows], joint, rtol=1e-6)
    assert len(pd.DataFrame(back.uns[LINKS_KEY])) == len(
        pd.read_csv(out / "links.tsv.gz", sep="\t")
    )
    assert "X_factvae" not in mudata.read_h5mu(h5mu).obsm  # the input file is left as it was


def test_bad_mudata_get_errors_that_name_the_fix(sim, h5mu):
    mdata = mudata.read_h5mu(h5mu)
    with pytest.raises(factvae.FactVAEInputError, match=r"no modality 'ATAC'.*modalities="):
        factvae.FactVAE(mdata, gene_annotation=sim.genes, modalities=("rna", "ATAC"))
    with pytest.raises(factvae.FactVAEInputError, match="give no atac argument"):
        factvae.FactVAE(mdata, sim.atac, gene_annotation=sim.genes)
    with pytest.raises(factvae.FactVAEInputError, match="FactVAE needs the ATAC counts"):
        factvae.FactVAE(sim.rna, gene_annotation=sim.genes)
    unmatched = mudata.MuData({"rna": sim.rna.copy(), "atac": sim.atac[:100].copy()})
    with pytest.raises(factvae.FactVAEInputError, match="must hold the same cells"):
        factvae.FactVAE(unmatched, gene_annotation=sim.genes)
    model = _fit_quietly(sim.rna, sim.atac, gene_annotation=sim.genes)
    with pytest.raises(factvae.FactVAEInputError, match="not in this MuData"):
        add_results(unmatched[:50].copy(), model)
