"""Shared fixtures: a small simulated multiome set and a model trained on it once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import factvae

SMALL_SETTINGS = {"n_hvg": 300, "n_components": 20, "n_latent": 10}


@pytest.fixture(scope="session")
def sim() -> factvae.SimulatedMultiome:
    return factvae.simulate(n_cells=300, n_genes=300, n_peaks=2000, seed=1)


@pytest.fixture(scope="session")
def trained(sim) -> factvae.FactVAE:
    model = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, **SMALL_SETTINGS)
    return model.fit(max_epochs=15, batch_size=64, progress=False, seed=0)


@pytest.fixture(scope="session")
def snare():
    """The real SNARE-seq set, or a skip that says where it was looked for."""
    from snare_data import load_snare, snare_folder

    folder = snare_folder()
    if not (folder / "rna_counts.mtx.gz").exists():
        pytest.skip(
            f"real data not found at {folder}: set FACTVAE_SHARED_DATA to the folder holding "
            "snare_hcellline/ to run this test"
        )
    return load_snare(folder)


def pytest_terminal_summary(terminalreporter) -> None:
    """Count the bad-input corpus in the output: how many malformed inputs, how many handled."""
    reports = [
        r
        for key in ("passed", "failed")
        for r in terminalreporter.stats.get(key, [])
        if getattr(r, "when", "") == "call" and "test_bad_input_is_a_clear_error" in r.nodeid
    ]
    if reports:
        handled = sum(r.passed for r in reports)
        terminalreporter.write_line(
            f"bad-input corpus (Python): {len(reports)} malformed inputs, {handled} handled with "
            "a clear error and the caller's objects unchanged"
        )
