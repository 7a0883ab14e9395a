"""Training cost against data size: seconds per step and per epoch, cells per second, peak
memory against the input CSR size, and the ATAC decoder's GFLOP/s as a fraction of this
machine's dense matmul rate in the same precision (float32 or bf16), measured in the same run.

Sizes are ``snare`` (the real SNARE-seq set in ../shared/data) or ``CELLSxPEAKS`` (simulated,
2,000 genes, 2% ATAC density); ``CELLSxPEAKS:reps`` gives the model random 100-d encoder
inputs instead of computing PCA and LSI, to time training at sizes where the LSI alone would
take longer than the benchmark should. Each size runs in its own process. Peak memory is the
kernel's high-water mark (VmHWM), reset once the input matrices exist, so it covers
preprocessing and training but not the simulator. Epoch time = median step x steps per epoch
(a full epoch at 100k cells would take far longer than a benchmark should). The memory bound
checked is

    peak <= 2.5 x input CSR + fixed overhead,
    fixed overhead = interpreter, libraries and compiled kernels (RSS after a tiny warm-up fit)
                     + parameters, gradients and Adam moments (4 copies)
                     + 16 batch x peaks float32 work arrays.

Writes benchmarks/results/NAME.json and NAME.md (``--name``, default ``scale``).

    .venv/bin/python benchmarks/scale.py \
        --sizes snare 10000x50000 50000x150000:reps 100000x200000:reps [--precision auto]
    # peak RSS against peaks at fixed cells, and against cells at fixed peaks:
    .venv/bin/python benchmarks/scale.py --name scale_peaks \
        --sizes 5000x25000:reps 5000x50000:reps 5000x100000:reps 5000x200000:reps
    .venv/bin/python benchmarks/scale.py --name scale_cells \
        --sizes 5000x50000:reps 10000x50000:reps 20000x50000:reps 40000x50000:reps
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCH = 128
WORK_ARRAYS = 16


def memory_kb(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM) in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_memory() -> None:
    """Make VmHWM restart from the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def matmul_gflops(dtype_name: str, seconds: float = 2.0) -> float:
    """This machine's dense matmul rate (2048^3) in ``float32`` or ``bf16``, median of repeats."""
    import torch

    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        rates.append(2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def decoder_gflops(n_latent: int, n_peaks: int, precision: str, repeats: int = 10) -> dict:
    """Time the ATAC decoder's forward + backward (three factor matrices, fused ZINB)."""
    import torch

    from factvae.model.fused import SparseCounts, factorised_nll
    from factvae.train.allocator import reuse_freed_memory

    g = torch.Generator().manual_seed(0)
    z = torch.randn(BATCH, n_latent, requires_grad=True)
    factors = [(torch.randn(n_latent, n_peaks) * 0.1).requires_grad_(True) for _ in range(3)]
    rows, cols = torch.nonzero(torch.rand(BATCH, n_peaks, generator=g) < 0.02, as_tuple=True)
    counts = SparseCounts(rows, cols, torch.ones(len(rows)), (BATCH, n_peaks))
    library = torch.full((BATCH,), 7.0)
    products = torch.bfloat16 if precision == "bf16" else None
    times = []
    with reuse_freed_memory():
        for i in range(repeats + 2):
            t = time.perf_counter()
            factorised_nll(z, *factors, library, counts, products).sum().backward()
            if i >= 2:
                times.append(time.perf_counter() - t)
    seconds = statistics.median(times)
    flops = 9 * 2 * BATCH * n_latent * n_peaks  # 3 forward and 6 backward matmuls
    return {"decoder_s": seconds, "decoder_gflops": flops / seconds / 1e9}


def warm_up() -> None:
    """A tiny fit, so the libraries and the compiled kernels count as fixed overhead."""
    import factvae

    sim = factvae.simulate(n_cells=200, n_genes=100, n_peaks=1000, seed=1)
    small = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, n_hvg=50,
                            n_components=10, n_latent=8)  # fmt: skip
    small.fit(max_epochs=1, batch_size=64, progress=False)


def load(size: str, seed: int):
    """(rna, atac, genes) of the real set or a simulated one."""
    size = size.removesuffix(":reps")
    if size == "snare":
        from snare_data import load_snare

        return load_snare()
    import factvae

    cells, peaks = (int(v) for v in size.split("x"))
    sim = factvae.simulate(n_cells=cells, n_genes=2000, n_peaks=peaks, atac_density=0.02,
                           seed=seed)  # fmt: skip
    return sim.rna, sim.atac, sim.genes


def run_size(size: str, steps: int, seed: int, precision: str) -> dict:
    import numpy as np
    import torch

    import factvae
    from factvae.train.allocator import reuse_freed_memory
    from factvae.train.batches import make_batch, minibatches
    from factvae.train.trainer import Trainer

    warm_up()
    baseline_kb = memory_kb("VmRSS")
    started = time.perf_counter()
    rna, atac, genes = load(size, seed)
    loaded = time.perf_counter()
    csr_bytes = sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in (rna.X, atac.X))
    reset_peak_memory()
    reps = {}
    if size.endswith(":reps"):
        rng = np.random.default_rng(seed)
        reps = {k: rng.standard_normal((atac.n_obs, 100), dtype=np.float32)
                for k in ("rna_rep", "atac_rep")}  # fmt: skip
    model = factvae.FactVAE(rna, atac, gene_annotation=genes, **reps)
    prepared = time.perf_counter()
    trainer = Trainer(model.network, model.settings.loss_weights(len(model.peaks)),
                      model.settings.optimiser(), torch.device("cpu"), precision,
                      ssa=model.settings.ssa_objective)  # fmt: skip
    n_cells, n_peaks = atac.shape
    batches = minibatches(n_cells, BATCH, np.random.default_rng(seed))
    times = []
    with reuse_freed_memory():
        for i, index in enumerate(batches[: steps + 3]):
            t = time.perf_counter()
            trainer.step(make_batch(model._data, index, torch.device("cpu")))
            if i >= 3:
                times.append(time.perf_counter() - t)
    step = statistics.median(times)
    peak = memory_kb("VmHWM") * 1024
    parameters = sum(p.numel() for p in model.network.parameters())
    overhead = baseline_kb * 1024 + 4 * 4 * parameters + WORK_ARRAYS * 4 * BATCH * n_peaks
    bound = 2.5 * csr_bytes + overhead
    return {
        "size": size,
        "preprocessing": "random reps" if reps else "PCA + LSI",
        "cells": n_cells,
        "peaks": n_peaks,
        "atac_nnz": int(atac.X.nnz),
        "input_csr_gb": csr_bytes / 1e9,
        "load_s": loaded - started,
        "preprocess_s": prepared - loaded,
        "step_s": step,
        "epoch_s": step * len(batches),
        "cells_per_s": BATCH / step,
        "peak_rss_gb": peak / 1e9,
        "baseline_rss_gb": baseline_kb * 1024 / 1e9,
        "fixed_overhead_gb": overhead / 1e9,
        "memory_bound_gb": bound / 1e9,
        "within_bound": bool(peak <= bound),
        "threads": torch.get_num_threads(),
        "precision": trainer.precision,
        **decoder_gflops(model.settings.n_latent, n_peaks, trainer.precision),
    }


def table(rows: list[dict], matmul: dict[str, float]) -> str:
    rates = ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in matmul.items())
    lines = [
        f"{platform.machine()} CPU, {rows[0]['threads']} threads, {rows[0]['precision']} "
        f"products; dense matmul (2048^3, same run): {rates}. Epoch time = median step x steps "
        "per epoch. Bound = 2.5 x input CSR + fixed overhead (see benchmarks/scale.py).",
        "",
        "| data (cells x peaks) | ATAC nnz | input CSR GB | preprocess s | s/step | s/epoch "
        "| cells/s | peak RSS GB | bound GB | decoder GFLOP/s (fraction of matmul) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "snare " if r["size"] == "snare" else ""
        if r["preprocessing"] == "random reps":
            name = "(random encoder inputs) "
        lines.append(
            f"| {name}{r['cells']:,} x {r['peaks']:,} | {r['atac_nnz']:,} "
            f"| {r['input_csr_gb']:.2f} | {r['preprocess_s']:.0f} | {r['step_s']:.3f} "
            f"| {r['epoch_s']:.1f} | {r['cells_per_s']:.0f} | {r['peak_rss_gb']:.2f} "
            f"| {r['memory_bound_gb']:.2f} {'ok' if r['within_bound'] else 'EXCEEDED'} "
            f"| {r['decoder_gflops']:.0f} ({r['decoder_gflops'] / matmul[r['precision']]:.0%}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["snare", "10000x50000", "50000x150000"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"])
    parser.add_argument("--name", default="scale", help="results file name, without suffix")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.one:
        print(json.dumps(run_size(args.one, args.steps, args.seed, args.precision)))
        return
    rows = []
    for size in args.sizes:
        child = [sys.executable, __file__, "--one", size, "--steps", str(args.steps),
                 "--precision", args.precision]  # fmt: skip
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    matmul = {name: matmul_gflops(name) for name in sorted({r["precision"] for r in rows})}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(
        json.dumps({"matmul_gflops": matmul, "rows": rows}, indent=2)
    )
    text = table(rows, matmul)
    (out / f"{args.name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
