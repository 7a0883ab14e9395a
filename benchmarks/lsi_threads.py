"""TF-IDF + LSI at 10,000 cells x 50,000 peaks: one core against all of them.

The sparse products of the randomized SVD run over bands of rows (``InMemoryRows.dot``) or of
columns (``tdot``) on a thread each; the result is the single-threaded one bit for bit (checked
here, and in tests/python/test_preprocessing.py). Median of ``--repeats`` runs each; writes
benchmarks/results/lsi_threads.{json,md}.

    .venv/bin/python benchmarks/lsi_threads.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--peaks", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import factvae
    from factvae.data import counts as rowsource
    from factvae.data.preprocessing import atac_lsi

    sim = factvae.simulate(n_cells=args.cells, n_genes=2000, n_peaks=args.peaks, seed=0)
    counts = sim.atac.X
    cores = rowsource.available_cores()
    timings: dict[int, list[float]] = {}
    results = {}
    for used in (1, cores):
        rowsource.available_cores = lambda used=used: used
        timings[used] = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            results[used] = atac_lsi(counts, 100, seed=0, new_cells=False)[0]
            timings[used].append(time.perf_counter() - start)
    identical = bool(np.array_equal(results[1], results[cores]))
    medians = {used: statistics.median(values) for used, values in timings.items()}
    payload = {"cells": args.cells, "peaks": args.peaks, "nnz": int(counts.nnz),
               "timings_s": timings, "median_s": medians, "identical": identical}  # fmt: skip
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "lsi_threads.json").write_text(json.dumps(payload, indent=2))
    table = "\n".join(
        [
            f"TF-IDF + LSI (100 components), {args.cells} cells x {args.peaks} peaks, "
            f"{counts.nnz} non-zeros, median of {args.repeats}:",
            "",
            "| cores | median (s) | runs (s) |",
            "|---|---|---|",
            *(
                f"| {used} | {medians[used]:.1f} | {', '.join(f'{t:.1f}' for t in timings[used])} |"
                for used in timings
            ),
            "",
            f"Speed-up {medians[1] / medians[cores]:.2f}x; results identical bit for bit: "
            f"{identical}.",
        ]
    )
    (out / "lsi_threads.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
