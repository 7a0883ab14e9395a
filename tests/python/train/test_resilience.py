"""A killed or terminated `factvae fit` resumes to the same model; --nproc runs on gloo."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import factvae

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses, killed and resumed

FACTVAE = [sys.executable, "-m", "factvae.cli"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("inputs")
    sim = factvae.simulate(n_cells=300, n_genes=200, n_peaks=1200, seed=9)
    sim.rna.write_h5ad(folder / "rna.h5ad")
    sim.atac.write_h5ad(folder / "atac.h5ad")
    sim.genes[["chrom", "start", "end", "gene_name", "strand"]].to_csv(
        folder / "genes.bed", sep="\t", header=False, index=False
    )
    return [
        "fit", "--rna", str(folder / "rna.h5ad"), "--atac", str(folder / "atac.h5ad"),
        "--annotation", str(folder / "genes.bed"), "--hvg", "150", "--latent", "8",
        "--batch-size", "64", "--seed", "5", "--quiet", "--no-links",
    ]  # fmt: skip


def _embeddings(out: Path) -> np.ndarray:
    return pd.read_csv(out / "embeddings.tsv.gz", sep="\t", index_col=0).to_numpy()


def _checkpoint_epoch(out: Path) -> int:
    path = out / "checkpoints" / "checkpoint.pt"
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def _start_and_stop(args: list[str], out: Path, how: signal.Signals) -> subprocess.Popen:
    """Start a long run, and stop it with ``how`` once its first checkpoint is on disk."""
    process = subprocess.Popen([*FACTVAE, *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _checkpoint_epoch(out) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(how)
    process.wait(timeout=120)
    return process


EPOCHS = ["--epochs", "30", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory) -> np.ndarray:
    out = tmp_path_factory.mktemp("straight")
    subprocess.run([*FACTVAE, *inputs, *EPOCHS, "--out", str(out)], check=True)
    return _embeddings(out)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_stopped_run_resumes_to_the_uninterrupted_model(inputs, uninterrupted, tmp_path, how):
    stopped = tmp_path / "stopped"
    process = _start_and_stop([*inputs, *EPOCHS, "--out", str(stopped)], stopped, how)
    stderr = process.stderr.read()
    if how == signal.SIGTERM:
        assert process.returncode == 130, stderr
        assert "--resume" in stderr
    else:
        assert process.returncode == -signal.SIGKILL
    assert 2 <= _checkpoint_epoch(stopped) < 30
    assert not (stopped / "embeddings.tsv.gz").exists()

    subprocess.run([*FACTVAE, *inputs, *EPOCHS, "--out", str(stopped), "--resume"], check=True)
    np.testing.assert_array_equal(_embeddings(stopped), uninterrupted)


def test_fit_with_two_processes(inputs, tmp_path):
    out = tmp_path / "ranks"
    done = subprocess.run(
        [*FACTVAE, *inputs, "--epochs", "3", "--nproc", "2", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "2 processes" not in done.stdout  # --quiet
    assert _embeddings(out).shape == (300, 24)  # joint, RNA and ATAC, 8 columns each
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = factvae.FactVAE.load(out / "model")
    assert len(model.history) == 3
