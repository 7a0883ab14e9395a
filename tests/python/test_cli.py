"""The ``factvae`` command end to end on tiny simulated data: outputs, readers, errors, resume."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import torch

from factvae import FactVAE
from factvae.cli import main
from factvae.data.counts import BackedRows
from factvae.data.readers import read_10x_multiome, read_g2p
from factvae.data.simulate import SimulatedMultiome, simulate
from factvae.errors import FactVAEInputError
from factvae.train.trainer import Trainer

FAST = ["--epochs", "2", "--latent", "8", "--hvg", "100", "--quiet"]


@pytest.fixture(scope="module")
def sim() -> SimulatedMultiome:
    return simulate(n_cells=160, n_genes=120, n_peaks=1200, seed=1)


@pytest.fixture(scope="module")
def inputs(sim: SimulatedMultiome, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The simulated pair as h5ad files plus its BED annotation and planted links as a TSV."""
    folder = tmp_path_factory.mktemp("inputs")
    paths = {name: folder / name for name in ("rna.h5ad", "atac.h5ad", "genes.bed", "g2p.tsv")}
    sim.rna.write_h5ad(paths["rna.h5ad"])
    sim.atac.write_h5ad(paths["atac.h5ad"])
    columns = ["chrom", "start", "end", "gene_name", "score", "strand"]
    sim.genes.assign(score=0)[columns].to_csv(
        paths["genes.bed"], sep="\t", header=False, index=False
    )
    sim.links.to_csv(paths["g2p.tsv"], sep="\t", index=False)
    return paths


def _pair_args(inputs: dict[str, Path]) -> list[str]:
    return ["--rna", str(inputs["rna.h5ad"]), "--atac", str(inputs["atac.h5ad"])]


def _fit(inputs: dict[str, Path], out: Path, *extra: str) -> int:
    args = ["fit", *_pair_args(inputs), "--annotation", str(inputs["genes.bed"])]
    return main([*args, "--out", str(out), *FAST, *extra])


def _embeddings(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "embeddings.tsv.gz", sep="\t", index_col=0)


def _barcodes(n: int) -> list[str]:
    return [f"AAACGT{i:010d}-1" for i in range(n)]


def _symbols(sim: SimulatedMultiome) -> np.ndarray:
    """Gene symbols where gene 2 repeats gene 1's, as real 10x features can."""
    names = sim.genes["gene_name"].to_numpy().copy()
    names[1] = names[0]
    return names


def _write_10x(folder: Path, sim: SimulatedMultiome, n_columns: int = 6) -> Path:
    """A Cell Ranger ARC style filtered_feature_bc_matrix folder of the simulated counts."""
    folder.mkdir()
    genes, peaks = sim.genes, sim.atac.var
    gene_rows = pd.DataFrame(
        {
            "id": [f"ENSG{i:011d}" for i in range(len(genes))],
            "name": _symbols(sim),
            "type": "Gene Expression",
            "chrom": genes["chrom"],
            "start": genes["start"],
            "end": genes["end"],
        }
    )
    peak_ids = [f"{c}:{s}-{e}" for c, s, e in zip(peaks["chrom"], peaks["start"], peaks["end"])]
    peak_rows = pd.DataFrame(
        {
            "id": peak_ids,
            "name": peak_ids,
            "type": "Peaks",
            "chrom": peaks["chrom"].to_numpy(),
            "start": peaks["start"].to_numpy(),
            "end": peaks["end"].to_numpy(),
        }
    )
    features = pd.concat([gene_rows, peak_rows]).iloc[:, :n_columns]
    features.to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)
    pd.Series(_barcodes(sim.rna.n_obs)).to_csv(
        folder / "barcodes.tsv.gz", header=False, index=False
    )
    counts = sp.hstack([sim.rna.X, sim.atac.X]).T.tocoo()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
        scipy.io.mmwrite(handle, counts)
    return folder


def _expect_error(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "factvae: error:" in err and message in err
    assert "Traceback" not in err


def test_demo_writes_inputs_outputs_and_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2", "--cells", "200", "--quiet"]) == 0
    for name in ("input/rna.h5ad", "input/atac.h5ad", "input/genes.bed", "model/weights.pt"):
        assert (out / name).is_file()
    embeddings = _embeddings(out)
    assert embeddings.shape == (200, 150)
    assert list(embeddings.columns[[0, 50, 100]]) == ["joint_1", "rna_1", "atac_1"]
    links = pd.read_csv(out / "links.tsv.gz", sep="\t")
    assert {"gene", "peak", "score", "qvalue", "distance"} <= set(links.columns)
    printed = capsys.readouterr().out
    assert "ARI" in printed and "NMI" in printed and "AUROC" in printed
    assert str(out / "embeddings.tsv.gz") in printed


def test_fit_h5ad_writes_outputs_and_the_model_reloads(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    # 60 modelled genes (the last --hvg counts) of the 97 in >= 3 cells: links reach the others
    assert (
        _fit(inputs, out, "--augment-threshold", "0.05", "--augment-latent", "atac",
             "--atac-weight", "0.05", "--hvg", "60")
        == 0
    )  # fmt: skip
    assert "augmented_atac.h5ad" in capsys.readouterr().out

    model = FactVAE.load(out / "model")
    assert len(model.history) == 2
    assert model.settings.atac_recon_weight == 0.05
    embeddings = _embeddings(out)
    assert embeddings.shape == (160, 24)  # joint, RNA and ATAC, 8 columns each
    assert list(embeddings.index) == list(model.obs_names)
    # the file is written losslessly, so the reloaded model must give exactly these values
    for kind in ("joint", "rna", "atac"):
        block = embeddings.filter(regex=f"^{kind}_").to_numpy(dtype=np.float32)
        np.testing.assert_array_equal(model.get_latent(kind), block)

    links = pd.read_csv(out / "links.tsv.gz", sep="\t")
    assert len(links) > 0 and links["score"].is_monotonic_decreasing
    assert set(links["peak"]) <= set(model.peaks)
    # every detected gene is linked, the modelled ones among them flagged
    assert set(links.loc[links["modelled"], "gene"]) <= set(model.genes)
    assert not links.loc[~links["modelled"], "gene"].isin(model.genes).any()
    assert set(links["gene"]) > set(links.loc[links["modelled"], "gene"])
    assert ((links["gene_detection"] > 0) & (links["gene_detection"] <= 1)).all()

    augmented = anndata.read_h5ad(out / "augmented_atac.h5ad")
    assert augmented.shape == (160, len(model.peaks))
    assert sp.issparse(augmented.X) and augmented.X.data.min() >= 0.05
    assert list(augmented.var.columns) == ["chrom", "start", "end"]
    # the ATAC half alone was decoded, as asked, not the default joint latent
    atac_alone = model.augment_atac(threshold=0.05, latent="atac")
    np.testing.assert_allclose(augmented.X.toarray(), atac_alone.toarray(), rtol=1e-5)
    assert (atac_alone != model.augment_atac(threshold=0.05)).nnz > 0


def test_fit_with_a_g2p_table_instead_of_an_annotation(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    g2p = ["--g2p", str(inputs["g2p.tsv"]), "--no-links"]
    assert main(["fit", *_pair_args(inputs), *g2p, "--out", str(out), *FAST]) == 0
    assert (out / "embeddings.tsv.gz").is_file() and not (out / "links.tsv.gz").exists()
    assert FactVAE.load(out / "model").g2p.nnz > 0


def test_fit_backed_reads_from_disk_and_matches_in_memory(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _fit(inputs, tmp_path / "memory", "--no-links") == 0
    minibatch_reads = []
    read_rows = BackedRows.rows
    monkeypatch.setattr(
        BackedRows,
        "rows",
        lambda self, index: minibatch_reads.append(index) or read_rows(self, index),
    )
    assert _fit(inputs, tmp_path / "backed", "--no-links", "--backed") == 0
    assert minibatch_reads  # the ATAC minibatches came from the file
    pd.testing.assert_frame_equal(
        _embeddings(tmp_path / "backed"), _embeddings(tmp_path / "memory"), rtol=1e-5
    )
    tenx = ["fit", "--10x", str(tmp_path), "--annotation", str(inputs["genes.bed"])]
    _expect_error(capsys, [*tenx, "--backed", "--out", str(tmp_path / "x")], "--backed reads")


def test_read_g2p_matrix_and_table(sim: SimulatedMultiome, tmp_path: Path) -> None:
    genes, peaks = sim.rna.var_names, sim.atac.var_names
    rows, cols = genes.get_indexer(sim.links["gene"]), peaks.get_indexer(sim.links["peak"])
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(genes), len(peaks)))
    sp.save_npz(tmp_path / "g2p.npz", matrix)
    assert (read_g2p(tmp_path / "g2p.npz", genes, peaks) != matrix).nnz == 0
    with pytest.raises(FactVAEInputError, match="input's feature order"):
        read_g2p(tmp_path / "g2p.npz", genes[:-1], peaks)

    table = pd.concat([sim.links, pd.DataFrame({"gene": ["nope"], "peak": [peaks[0]]})])
    table.to_csv(tmp_path / "g2p.tsv", sep="\t", index=False)
    with pytest.warns(UserWarning, match="1 of"):
        pairs = read_g2p(tmp_path / "g2p.tsv", genes, peaks)
    pd.testing.assert_frame_equal(pairs, sim.links)
    with pytest.raises(FactVAEInputError, match="No \\(gene, peak\\) pair"):
        read_g2p(tmp_path / "g2p.tsv", genes + "x", peaks)


def test_fit_reads_a_10x_folder(sim: SimulatedMultiome, inputs: dict[str, Path], tmp_path: Path):
    _write_10x(tmp_path / "filtered_feature_bc_matrix", sim)
    out = tmp_path / "run"
    # the run's outs/ folder works as well as the filtered_feature_bc_matrix folder in it
    args = ["fit", "--10x", str(tmp_path), "--annotation", str(inputs["genes.bed"])]
    assert main([*args, "--out", str(out), *FAST]) == 0
    assert list(_embeddings(out).index) == _barcodes(sim.rna.n_obs)
    assert (out / "links.tsv.gz").is_file()


def test_read_10x_folder_h5_and_old_features_agree(sim: SimulatedMultiome, tmp_path: Path):
    rna, atac = read_10x_multiome(_write_10x(tmp_path / "new", sim))
    assert isinstance(rna.X, sp.csr_matrix) and rna.X.dtype == np.float32
    assert (rna.X != sim.rna.X).nnz == 0 and (atac.X != sim.atac.X).nnz == 0
    assert list(rna.var_names[:3]) == ["gene0001", "gene0001-1", "gene0003"]
    assert rna.var["gene_ids"].iloc[1] == "ENSG00000000001"
    peaks = sim.atac.var  # Cell Ranger names peaks by their BED numbers, chrom:start-end
    cell_ranger = [f"{c}-{s}-{e}" for c, s, e in zip(peaks["chrom"], peaks["start"], peaks["end"])]
    assert list(atac.var_names) == cell_ranger
    pd.testing.assert_frame_equal(
        atac.var[["chrom", "start", "end"]],
        sim.atac.var[["chrom", "start", "end"]].astype({"chrom": str}).set_axis(atac.var_names),
    )

    # older features.tsv without coordinates: peaks come from their "chr:start-end" ids, read
    # as Signac reads names (1-based start), so one base wider than the BED columns above
    _, old_atac = read_10x_multiome(_write_10x(tmp_path / "old", sim, 3))
    pd.testing.assert_frame_equal(old_atac.var, atac.var.assign(start=atac.var["start"] - 1))

    h5 = tmp_path / "filtered_feature_bc_matrix.h5"
    counts = sp.hstack([rna.X, atac.X], format="csr")
    with h5py.File(h5, "w") as handle:
        group = handle.create_group("matrix")
        group["data"], group["indices"], group["indptr"] = (
            counts.data,
            counts.indices,
            counts.indptr,
        )
        group["shape"] = [counts.shape[1], counts.shape[0]]
        group["barcodes"] = rna.obs_names.to_numpy(dtype="S")
        ids = [*rna.var["gene_ids"], *(c.replace("-", ":", 1) for c in atac.var_names)]
        group["features/id"] = np.array(ids, dtype="S")
        group["features/name"] = np.array([*_symbols(sim), *ids[rna.n_vars :]], dtype="S")
        kinds = ["Gene Expression"] * rna.n_vars + ["Peaks"] * atac.n_vars
        group["features/feature_type"] = np.array(kinds, dtype="S")
    h5_rna, h5_atac = read_10x_multiome(h5)
    assert list(h5_rna.var_names) == list(rna.var_names)
    assert list(h5_atac.var_names) == list(atac.var_names)
    assert (h5_atac.X != atac.X).nnz == 0


def test_read_10x_rejects_rna_only_output(sim: SimulatedMultiome, tmp_path: Path) -> None:
    folder = tmp_path / "rna_only"
    folder.mkdir()
    pd.DataFrame({"id": ["g1", "g2"], "name": ["A", "B"], "type": "Gene Expression"}).to_csv(
        folder / "features.tsv", sep="\t", header=False, index=False
    )
    (folder / "barcodes.tsv").write_text("c1\nc2\nc3\n")
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(np.ones((2, 3))))
    with pytest.raises(FactVAEInputError, match="no 'Peaks' features"):
        read_10x_multiome(folder)
    (folder / "barcodes.tsv").unlink()
    with pytest.raises(FactVAEInputError, match=r"no barcodes\.tsv"):
        read_10x_multiome(folder)


def test_bad_inputs_exit_2_with_a_message(
    sim: SimulatedMultiome,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = ["--out", str(tmp_path / "run")]
    bed = ["--annotation", str(inputs["genes.bed"])]
    missing = ["--rna", str(tmp_path / "nope.h5ad"), "--atac", str(inputs["atac.h5ad"])]
    _expect_error(capsys, ["fit", *missing, *bed, *out], "does not exist")
    _expect_error(capsys, ["fit", *_pair_args(inputs), *out], "--annotation")
    _expect_error(
        capsys, ["fit", *_pair_args(inputs), "--g2p", str(inputs["g2p.tsv"]), *out], "--no-links"
    )
    _expect_error(
        capsys, ["fit", "--10x", str(tmp_path), *_pair_args(inputs), *bed, *out], "one way"
    )
    _expect_error(capsys, ["fit", "--h5mu", str(tmp_path / "no.h5mu"), *bed, *out], "not exist")

    unnamed = anndata.AnnData(X=sim.atac.X, obs=sim.atac.obs)
    unnamed.var_names = [f"peak{i}" for i in range(unnamed.n_vars)]
    unnamed.write_h5ad(tmp_path / "unnamed.h5ad")
    pair = ["--rna", str(inputs["rna.h5ad"]), "--atac", str(tmp_path / "unnamed.h5ad")]
    _expect_error(capsys, ["fit", *pair, *bed, *out, *FAST], "do not parse")

    assert main(["fit", *_pair_args(inputs)]) == 2  # argparse: --out is required
    assert "--out" in capsys.readouterr().err
    assert main(["fit", *_pair_args(inputs), *bed, *out, "--atac-weight", "-1"]) == 2
    assert "--atac-weight: must be a positive number" in capsys.readouterr().err
    assert main(["fit", *_pair_args(inputs), *bed, *out, "--precision", "fp16"]) == 2
    assert "--precision: invalid choice: 'fp16'" in capsys.readouterr().err


def test_interrupted_fit_resumes_to_the_uninterrupted_model(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_epoch = Trainer.run_epoch

    def stop_after_epoch_1(self: Trainer, *args: object) -> dict:
        if self.epoch == 1:
            raise KeyboardInterrupt
        return run_epoch(self, *args)

    out = tmp_path / "run"
    epochs = ["--epochs", "2", "--checkpoint-every", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "run_epoch", stop_after_epoch_1)
        assert _fit(inputs, out, *epochs) == 130
    assert "interrupted; run the same command with --resume" in capsys.readouterr().err
    state = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and not (out / "model").exists()

    other_latent = ["fit", *_pair_args(inputs), "--annotation", str(inputs["genes.bed"])]
    other_latent += ["--out", str(out), "--hvg", "100", "--latent", "9", "--resume"]
    _expect_error(capsys, other_latent, "n_latent")
    assert _fit(inputs, out, *epochs, "--resume") == 0
    assert len(FactVAE.load(out / "model").history) == 2

    assert _fit(inputs, tmp_path / "straight", *epochs) == 0
    np.testing.assert_array_equal(_embeddings(out), _embeddings(tmp_path / "straight"))

    assert _fit(inputs, out, "--epochs", "1") == 0  # without --resume: a fresh run
    assert len(FactVAE.load(out / "model").history) == 1


def test_console_script_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    script = Path(sys.executable).parent / "factvae"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "fit" in result.stdout and "demo" in result.stdout
    assert main(["fit", "--help"]) == 0
    printed = capsys.readouterr().out
    assert "embeddings.tsv.gz" in printed and "--resume" in printed


def test_schedule_options_follow_the_python_names() -> None:
    from factvae.cli import FitOptions, build_parser

    base = ["fit", "--rna", "r.h5ad", "--atac", "a.h5ad", "--annotation", "g.bed", "--out", "o"]
    defaults = FitOptions.from_args(build_parser().parse_args(base))
    assert (defaults.epochs, defaults.preset, defaults.early_stopping) == (None, "default", None)
    assert defaults.validation_fraction is None and defaults.patience is None
    chosen = FitOptions.from_args(build_parser().parse_args([
        *base, "--preset", "paper", "--max-epochs", "40", "--no-early-stopping",
        "--validation-fraction", "0.2", "--patience", "7",
    ]))  # fmt: skip
    assert (chosen.preset, chosen.epochs, chosen.early_stopping) == ("paper", 40, False)
    assert (chosen.validation_fraction, chosen.patience) == (0.2, 7)
    assert FitOptions.from_args(build_parser().parse_args([*base, "--epochs", "9"])).epochs == 9


def test_batch_key_option_takes_one_or_several_columns(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from factvae.cli import FitOptions, build_parser
    from factvae.settings import ModelSettings

    base = ["fit", "--rna", "r.h5ad", "--atac", "a.h5ad", "--annotation", "g.bed", "--out", "o"]
    assert FitOptions.from_args(build_parser().parse_args(base)).batch_key is None
    chosen = FitOptions.from_args(build_parser().parse_args(
        [*base, "--batch-key", "donor,protocol", "--batch-key", "lane", "--encode-batch"]
    ))  # fmt: skip
    assert chosen.batch_key == ["donor", "protocol", "lane"] and chosen.encode_batch
    assert chosen.batch_mmd_weight == ModelSettings().batch_mmd_weight > 0
    off = build_parser().parse_args([*base, "--batch-key", "lane", "--batch-mmd-weight", "0"])
    assert FitOptions.from_args(off).batch_mmd_weight == 0
    assert main([*base, "--batch-key", "donor,"]) == 2
    assert "column names separated by commas" in capsys.readouterr().err
    assert main([*base, "--batch-key", "lane", "--batch-mmd-weight", "-1"]) == 2
    assert "must be a number >= 0" in capsys.readouterr().err
    _expect_error(
        capsys,
        ["fit", *_pair_args(inputs), "--annotation", str(inputs["genes.bed"]),
         "--out", str(tmp_path / "run"), *FAST, "--batch-key", "sample"],
        "'sample' is not a column of rna.obs",
    )  # fmt: skip
