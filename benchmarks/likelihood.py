"""What the lean likelihood gains: forward + backward of the ATAC reconstruction term at the
snare_hcellline shape (batch 128 x 27,399 peaks, latent 50, 3% non-zero), three ways:

* dense:  Eq. 5-6 at every entry with autograd (``lgamma`` everywhere, as the authors do);
* lean, eager:  closed-form zero case, ``lgamma`` at non-zeros only, analytic gradients;
* lean, compiled:  the same with the dense kernel fused by ``torch.compile``;
* lean, compiled, bf16 products:  the same with the factor products in bf16 (the default on
  CPUs with native bf16, ``precision="auto"``).

Each variant runs in its own process (eager via FACTVAE_COMPILE=0), reporting the median of
timed repeats after warm-up and the memory the step adds (VmHWM above the RSS before it).
Writes benchmarks/results/likelihood.json and likelihood.md.

    .venv/bin/python benchmarks/likelihood.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPE = {"cells": 128, "peaks": 27_399, "latent": 50, "density": 0.03}
VARIANTS = {
    "dense": "1",
    "lean, eager": "0",
    "lean, compiled": "1",
    "lean, compiled, bf16 products": "1",
}


def run_variant(variant: str, repeats: int) -> dict:
    import torch

    from factvae.model.fused import SparseCounts, factorised_nll
    from factvae.model.reference import dense_log_likelihood
    from factvae.train.allocator import reuse_freed_memory
    from scale import memory_kb, reset_peak_memory

    n, p, d = SHAPE["cells"], SHAPE["peaks"], SHAPE["latent"]
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, d, generator=g).requires_grad_(True)
    factors = [(torch.randn(d, p, generator=g) * 0.1).requires_grad_(True) for _ in range(3)]
    library = torch.full((n,), 8.0)
    mask = torch.rand(n, p, generator=g) < SHAPE["density"]
    rows, cols = torch.nonzero(mask, as_tuple=True)
    values = torch.poisson(torch.full((len(rows),), 1.5), generator=g) + 1
    counts = SparseCounts(rows, cols, values, (n, p))
    dense_counts = torch.zeros(n, p)  # the dense variant needs the block densified
    dense_counts[rows, cols] = values

    def dense_step() -> None:
        mu = torch.exp(library)[:, None] * torch.softmax(z @ factors[0], dim=1)
        theta = torch.exp(torch.softmax(z @ factors[1], dim=1))
        (-dense_log_likelihood(dense_counts, mu, theta, z @ factors[2])).sum().backward()

    products = torch.bfloat16 if variant.endswith("bf16 products") else None

    def lean_step() -> None:
        factorised_nll(z, *factors, library, counts, products).sum().backward()

    step = dense_step if variant == "dense" else lean_step
    with reuse_freed_memory():
        step()
        step()
        before = memory_kb("VmRSS")
        reset_peak_memory()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        added = memory_kb("VmHWM") - before
    return {
        "variant": variant,
        "ms": 1000 * statistics.median(times),
        "added_mb": added / 1024,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.one:
        print(json.dumps(run_variant(args.one, args.repeats)))
        return
    rows = []
    for variant, compile_flag in VARIANTS.items():
        env = {**os.environ, "FACTVAE_COMPILE": compile_flag}
        child = [sys.executable, __file__, "--one", variant, "--repeats", str(args.repeats)]
        output = subprocess.run(child, check=True, capture_output=True, text=True, env=env)
        rows.append(json.loads(output.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    dense_ms = rows[0]["ms"]
    lines = [
        f"ATAC reconstruction term, forward + backward, batch {SHAPE['cells']} x "
        f"{SHAPE['peaks']:,} peaks, latent {SHAPE['latent']}, {SHAPE['density']:.0%} non-zero, "
        f"{rows[0]['threads']} threads; median of {args.repeats}.",
        "",
        "| variant | ms per step | speed-up vs dense | memory added MB |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['ms']:.1f} | {dense_ms / r['ms']:.1f}x | {r['added_mb']:.0f} |"
        )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "likelihood.json").write_text(json.dumps({"shape": SHAPE, "rows": rows}, indent=2))
    (out / "likelihood.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
