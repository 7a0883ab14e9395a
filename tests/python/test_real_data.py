"""The paper's claims on the real SNARE-seq cell-line mixture (skipped where the data is absent)."""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import factvae
from baselines import baseline_embeddings
from factvae.cli import main
from factvae.data.preprocessing import atac_lsi
from factvae.outputs.scores import clustering_scores, embedding_scores
from snare_data import snare_folder

pytestmark = pytest.mark.slow  # trains on the real data for minutes


def _ari(embedding: np.ndarray, labels) -> float:
    """The benchmarks' ARI, the median of several k-means draws: one draw moves by a cell or
    two with the thread count (seed 0's joint embedding, the same on one and on two threads:
    the seed-0 draw 0.968 and 0.973, the median 0.970 on both)."""
    return embedding_scores(embedding, labels)["ari"]


@pytest.fixture(scope="module")
def snare_model(snare):
    rna, atac, genes = snare
    model = factvae.FactVAE(rna, atac, gene_annotation=genes, preset="paper")  # the authors'
    return model.fit(seed=0, progress=False)


def test_the_defaults_stop_by_themselves_and_every_output_beats_its_baseline(snare):
    """The default schedule: 10% held out, early stopping, at most 200 epochs here. Issue 23's
    bars on this set, scored as the benchmarks score (seed 0 measured joint / RNA half / ATAC
    half ARI 0.970 / 0.970 / 0.91-0.915 on one and on two threads; under this LSI the augmented
    ATAC 0.96, decoded from the ATAC half alone 0.90, raw 0.76): the joint embedding at least
    its RNA half and its 15-NN accuracy above every simple pipeline's (0.989 against PCA +
    LSI's 0.982), an ATAC half that learnt the lines from the RNA, and an augmented ATAC that
    clusters better than the raw counts under the same LSI, and no worse than the ATAC half's
    own decoding, which it replaced as the default."""
    rna, atac, genes = snare
    model = factvae.FactVAE(rna, atac, gene_annotation=genes).fit(seed=0, progress=False)
    summary = model.training_summary
    assert summary["max_epochs"] == 200 and summary["validation_cells"] == 105
    assert len(model.history) <= 200 and summary["skipped_steps"] == 0
    labels = rna.obs["cell_type"].to_numpy()
    joint, rna_half = (
        embedding_scores(model.get_latent(kind), labels) for kind in ("joint", "rna")
    )
    assert joint["ari"] >= 0.97 and joint["ari"] >= rna_half["ari"], (joint, rna_half)
    baseline_knn = {name: embedding_scores(embedding, labels)["knn"] for name, embedding in
                    baseline_embeddings(rna.X, atac.X).items()}  # fmt: skip
    assert joint["knn"] > max(baseline_knn.values()), (joint, baseline_knn)
    assert _ari(model.get_latent("atac"), labels) >= 0.85
    assert model.get_latent("joint").shape == (rna.n_obs, 50)  # the halves averaged
    raw_lsi, _ = atac_lsi(sp.csr_matrix(atac.X), 100, seed=0)
    augmented_lsi, _ = atac_lsi(sp.csr_matrix(model.augment_atac()), 100, seed=0)
    alone_lsi, _ = atac_lsi(sp.csr_matrix(model.augment_atac(latent="atac")), 100, seed=0)
    raw, augmented, alone = (
        _ari(lsi[:, 1:30], labels) for lsi in (raw_lsi, augmented_lsi, alone_lsi)
    )
    assert augmented >= 0.85 and augmented > raw and augmented >= alone, (raw, augmented, alone)


def test_prior_matches_the_design_cross_check(snare):
    """genes.bed is hg38, the peaks' build: 13,434 annotated genes seen in >= 3 cells; the 2,000
    HVGs' gene body + 2 kb loci overlap 3,105 peaks (the authors' own prior, of other HVGs: 3,311),
    and the build check stays silent."""
    rna, atac, genes = snare
    detected = np.asarray((rna.X > 0).sum(axis=0)).ravel() >= 3
    assert int((detected & rna.var_names.isin(genes["gene_name"])).sum()) == 13_434
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*genome build")
        model = factvae.FactVAE(rna, atac, gene_annotation=genes)
    assert len(model.genes) == 2000 and len(model.peaks) == 27_399
    assert abs(model.g2p.nnz - 3105) <= 0.01 * 3105


def test_hg19_genes_on_the_hg38_peaks_warn_in_python_and_in_the_cli(snare, tmp_path, capsys):
    """The GENCODE hg19 table: 7.3% of its RNA genes' TSSs hit a peak, 1.7x the rate 100-200 kb
    away (genes.bed: 65.7%, 13.7x). One line, from the API and from ``factvae fit``."""
    rna, atac, _ = snare
    hg19 = snare_folder().parent / "annotations" / "gene_annotation_hg19_gencode.bed.gz"
    if not hg19.exists():
        pytest.skip(f"the hg19 annotation is not at {hg19}")
    expected = (
        r"another genome build than the peaks: 7\.3% of 17,524 annotated genes have a peak "
        r"within 1,000 bp of their TSS against 4\.3% 100-200 kb away \(1\.7x;.*genome build "
        r"mismatch"
    )
    with pytest.warns(UserWarning, match=expected):
        factvae.FactVAE(rna, atac, gene_annotation=hg19)
    rna.write_h5ad(tmp_path / "rna.h5ad")
    atac.write_h5ad(tmp_path / "atac.h5ad")
    args = ["fit", "--rna", str(tmp_path / "rna.h5ad"), "--atac", str(tmp_path / "atac.h5ad")]
    args += ["--annotation", str(hg19), "--out", str(tmp_path / "out"), "--epochs", "1"]
    assert main([*args, "--quiet", "--no-links"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "genome build" in line]
    assert len(lines) == 1 and re.search(expected, lines[0]), lines
    assert lines[0].startswith("factvae: warning: The gene annotation looks like another")


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
