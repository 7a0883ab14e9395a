"""Peak memory of FactVAE (build + 1 training epoch) from h5ad inputs read into memory against
the same files opened with backed="r", whose counts are read a block of cells at a time.

Each size is simulated (2,000 genes, 2% ATAC density) and written to .h5ad by one process, and
each (size, mode) is measured in a fresh process, so every peak RSS (ru_maxrss) is that run's
own; this parent imports nothing heavy, so it adds nothing to its children's peaks. Writes
benchmarks/results/out_of_core.json and out_of_core.md.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/out_of_core.py \
        --cells 5000 10000 20000 --peaks 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("memory", "backed")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_inputs(folder: Path, n_cells: int, n_peaks: int, seed: int) -> dict:
    """Simulate and write rna.h5ad, atac.h5ad (CSR X) and genes.bed; sizes of what was written."""
    import factvae

    sim = factvae.simulate(
        n_cells=n_cells, n_genes=2000, n_peaks=n_peaks, atac_density=0.02, seed=seed
    )
    sim.rna.write_h5ad(folder / "rna.h5ad")
    sim.atac.write_h5ad(folder / "atac.h5ad")
    sim.genes.to_csv(folder / "genes.tsv", sep="\t")

    def csr_mb(matrix) -> float:
        return (matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes) / 2**20

    return {
        "cells": n_cells,
        "peaks": n_peaks,
        "atac_nnz": int(sim.atac.X.nnz),
        "atac_csr_mb": csr_mb(sim.atac.X),
        "rna_csr_mb": csr_mb(sim.rna.X),
        "files_mb": sum((folder / f).stat().st_size for f in ("rna.h5ad", "atac.h5ad")) / 2**20,
    }


def measure(folder: Path, mode: str, seed: int) -> dict:
    """Read the inputs (into memory, or backed), build FactVAE and train one epoch on CPU."""
    import anndata as ad
    import pandas as pd
    import torch

    import factvae

    torch.set_num_threads(1)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    backed = "r" if mode == "backed" else None
    rna = ad.read_h5ad(folder / "rna.h5ad", backed=backed)
    atac = ad.read_h5ad(folder / "atac.h5ad", backed=backed)
    genes = pd.read_csv(folder / "genes.tsv", sep="\t", index_col=0)
    model = factvae.FactVAE(rna, atac, gene_annotation=genes)
    built = time.perf_counter()
    model.fit(max_epochs=1, device="cpu", seed=seed, progress=False)
    return {
        "mode": mode,
        "read_and_preprocess_s": built - started,
        "epoch_s": time.perf_counter() - built,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }


def child(*args: str) -> dict:
    command = [sys.executable, __file__, *args]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [
        f"{platform.machine()} CPU, 1 thread; FactVAE defaults (2,000 HVGs, 100 LSI/PCA "
        "components, latent 50), build + 1 epoch (batch 128). Peak RSS = ru_maxrss of a fresh "
        "process per run; baseline = after imports. CSR MB = RNA + ATAC counts as CSR "
        "(float32 values, int32 indices).",
        "",
        "| cells | peaks | ATAC nnz | CSR MB | peak RSS MB in memory | peak RSS MB backed "
        "| backed / in memory | build s (mem / backed) | epoch s (mem / backed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem, back = r["memory"], r["backed"]
        lines.append(
            f"| {r['cells']:,} | {r['peaks']:,} | {r['atac_nnz']:,} "
            f"| {r['atac_csr_mb'] + r['rna_csr_mb']:.0f} | {mem['peak_rss_mb']:.0f} "
            f"| {back['peak_rss_mb']:.0f} | {back['peak_rss_mb'] / mem['peak_rss_mb']:.2f} "
            f"| {mem['read_and_preprocess_s']:.0f} / {back['read_and_preprocess_s']:.0f} "
            f"| {mem['epoch_s']:.0f} / {back['epoch_s']:.0f} |"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        csr = sum(last[k] - first[k] for k in ("atac_csr_mb", "rna_csr_mb"))
        grew = {m: last[m]["peak_rss_mb"] - first[m]["peak_rss_mb"] for m in MODES}
        lines += [
            "",
            f"From {first['cells']:,} to {last['cells']:,} cells the CSR grew by {csr:.0f} MB; "
            f"peak RSS grew by {grew['memory']:.0f} MB in memory and {grew['backed']:.0f} MB "
            "backed (its cells x components arrays and the cells x HVGs RNA CSR).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", type=int, default=[5000, 10000, 20000])
    parser.add_argument("--peaks", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", nargs=3, help=argparse.SUPPRESS)  # FOLDER CELLS PEAKS
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # FOLDER MODE
    args = parser.parse_args()
    if args.write:
        folder, cells, peaks = args.write
        print(json.dumps(write_inputs(Path(folder), int(cells), int(peaks), args.seed)))
        return
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1], args.seed)))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    rows = []
    for cells in args.cells:
        with tempfile.TemporaryDirectory() as folder:
            row = child("--write", folder, str(cells), str(args.peaks), "--seed", str(args.seed))
            for mode in MODES:
                row[mode] = child("--measure", folder, mode, "--seed", str(args.seed))
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "out_of_core.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = table(rows)
    (out / "out_of_core.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
