"""The paper's claims on the real SNARE-seq cell-line mixture (skipped where the data is absent)."""

import numpy as np
import pytest
import scipy.sparse as sp

import factvae
from factvae.data.preprocessing import atac_lsi
from factvae.outputs.scores import clustering_scores

pytestmark = pytest.mark.slow  # trains on the real data for minutes


def _ari(embedding: np.ndarray, labels) -> float:
    return clustering_scores(embedding, labels)["ari"]


@pytest.fixture(scope="module")
def snare_model(snare):
    rna, atac, genes = snare
    model = factvae.FactVAE(rna, atac, gene_annotation=genes, preset="paper")  # the authors'
    return model.fit(seed=0, progress=False)


def test_the_defaults_stop_by_themselves_and_cluster_the_cell_lines(snare):
    """The default schedule: 10% held out, early stopping, at most 200 epochs here."""
    rna, atac, genes = snare
    model = factvae.FactVAE(rna, atac, gene_annotation=genes).fit(seed=0, progress=False)
    summary = model.training_summary
    assert summary["max_epochs"] == 200 and summary["validation_cells"] == 105
    assert len(model.history) <= 200 and summary["skipped_steps"] == 0
    labels = rna.obs["cell_type"].to_numpy()
    assert _ari(model.get_latent("joint"), labels) >= 0.94


def test_prior_matches_the_design_cross_check(snare):
    """DESIGN.md: 13,050 annotated genes seen in >= 3 cells; 2,000 HVGs give ~2,207 pairs."""
    rna, atac, genes = snare
    detected = np.asarray((rna.X > 0).sum(axis=0)).ravel() >= 3
    assert int((detected & rna.var_names.isin(genes["gene_name"])).sum()) == 13_050
    model = factvae.FactVAE(rna, atac, gene_annotation=genes)
    assert len(model.genes) == 2000 and len(model.peaks) == 27_399
    assert abs(model.g2p.nnz - 2207) <= 0.01 * 2207


def test_joint_embedding_clusters_the_cell_lines(snare, snare_model):
    labels = snare[0].obs["cell_type"].to_numpy()
    scores = clustering_scores(snare_model.get_latent("joint"), labels)
    assert scores["ari"] >= 0.94
    assert scores["nmi"] >= 0.90


def test_augmented_atac_clusters_better_than_raw(snare, snare_model):
    """Same recipe on raw and augmented ATAC: LSI, then k-means on components 2-30 (Signac's
    default dims; component 1 tracks depth in raw data and the mean profile in augmented)."""
    rna, atac, _ = snare
    labels = rna.obs["cell_type"].to_numpy()
    raw_lsi, _ = atac_lsi(sp.csr_matrix(atac.X), 100, seed=0)
    augmented_lsi, _ = atac_lsi(sp.csr_matrix(snare_model.augment_atac()), 100, seed=0)
    raw_ari = _ari(raw_lsi[:, 1:30], labels)
    augmented_ari = _ari(augmented_lsi[:, 1:30], labels)
    assert augmented_ari > raw_ari, (raw_ari, augmented_ari)
