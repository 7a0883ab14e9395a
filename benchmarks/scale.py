"""Training cost against data size: seconds per step and per epoch, cells per second, peak RSS
against the input CSR size, and the ATAC decoder's GFLOP/s as a fraction of this machine's
dense matmul rate measured in the same run.

Each size runs in its own process (its peak RSS is its own). Epoch time is extrapolated from
timed steps (after warm-up steps), because a full epoch at 100k cells takes far longer than a
benchmark should. Writes benchmarks/results/scale.json and scale.md.

    .venv/bin/python benchmarks/scale.py --sizes 10000x50000 50000x150000 --steps 20
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def matmul_gflops(seconds: float = 2.0) -> float:
    """This machine's dense float32 matmul rate (2048^3), median of repeats."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        rates.append(2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def decoder_gflops(n_latent: int, n_peaks: int, batch: int, repeats: int = 10) -> dict:
    """Time the ATAC decoder's forward + backward (three factor matrices, fused ZINB)."""
    import numpy as np
    import torch

    from factvae.likelihoods import SparseCounts, factorised_nll

    g = torch.Generator().manual_seed(0)
    z = torch.randn(batch, n_latent, requires_grad=True)
    factors = [(torch.randn(n_latent, n_peaks) * 0.1).requires_grad_(True) for _ in range(3)]
    mask = torch.rand(batch, n_peaks, generator=g) < 0.02
    rows, cols = torch.nonzero(mask, as_tuple=True)
    counts = SparseCounts(rows, cols, torch.ones(len(rows)), (batch, n_peaks))
    library = torch.full((batch,), 7.0)
    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        factorised_nll(z, *factors, library, counts).sum().backward()
        if i >= 2:
            times.append(time.perf_counter() - t)
    seconds = float(np.median(times))
    flops = 9 * 2 * batch * n_latent * n_peaks  # 3 forward and 6 backward matmuls
    return {"decoder_s": seconds, "decoder_gflops": flops / seconds / 1e9}


def run_size(n_cells: int, n_peaks: int, steps: int, seed: int) -> dict:
    import numpy as np
    import torch

    import factvae
    from factvae.training import Trainer, make_batch, minibatches

    started = time.perf_counter()
    sim = factvae.simulate(n_cells=n_cells, n_genes=2000, n_peaks=n_peaks, atac_density=0.02,
                           seed=seed)  # fmt: skip
    simulated = time.perf_counter()
    csr_bytes = sum(
        m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in (sim.rna.X, sim.atac.X)
    )
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes)
    prepared = time.perf_counter()
    coo = model.g2p.matrix.tocoo()
    trainer = Trainer(model.network, (coo.row, coo.col), model.settings.loss_weights(),
                      model.settings.optimiser(), torch.device("cpu"))  # fmt: skip
    batches = minibatches(n_cells, 128, np.random.default_rng(seed))
    times = []
    for i, index in enumerate(batches[: steps + 3]):
        t = time.perf_counter()
        trainer.step(make_batch(model._data, index, torch.device("cpu")))
        if i >= 3:
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "cells": n_cells,
        "peaks": n_peaks,
        "atac_nnz": int(sim.atac.X.nnz),
        "input_csr_gb": csr_bytes / 1e9,
        "simulate_s": simulated - started,
        "preprocess_s": prepared - simulated,
        "step_s": step,
        "epoch_s": step * len(batches),
        "cells_per_s": 128 / step,
        "peak_rss_gb": peak / 1e9,
        "rss_after_simulate_gb": rss_input / 1e9,
        "rss_over_input": peak / csr_bytes,
        "threads": torch.get_num_threads(),
        **decoder_gflops(50, n_peaks, 128),
    }


def table(rows: list[dict], matmul: float) -> str:
    lines = [
        f"{platform.machine()} CPU, {rows[0]['threads']} threads; dense float32 matmul "
        f"{matmul:.0f} GFLOP/s (2048^3, same run). Epoch time = median step x steps per epoch.",
        "",
        "| cells x peaks | ATAC nnz | input CSR GB | preprocess s | s/step | s/epoch | cells/s "
        "| peak RSS GB | RSS / input | decoder GFLOP/s (fraction of matmul) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cells']:,} x {r['peaks']:,} | {r['atac_nnz']:,} | {r['input_csr_gb']:.2f} "
            f"| {r['preprocess_s']:.0f} | {r['step_s']:.3f} | {r['epoch_s']:.0f} "
            f"| {r['cells_per_s']:.0f} | {r['peak_rss_gb']:.2f} | {r['rss_over_input']:.1f} "
            f"| {r['decoder_gflops']:.0f} ({r['decoder_gflops'] / matmul:.0%}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10000x50000", "50000x150000"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.one:
        cells, peaks = (int(v) for v in args.one.split("x"))
        print(json.dumps(run_size(cells, peaks, args.steps, args.seed)))
        return
    rows = []
    for size in args.sizes:
        child = [sys.executable, __file__, "--one", size, "--steps", str(args.steps)]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    matmul = matmul_gflops()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "scale.json").write_text(json.dumps({"matmul_gflops": matmul, "rows": rows}, indent=2))
    text = table(rows, matmul)
    (out / "scale.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
