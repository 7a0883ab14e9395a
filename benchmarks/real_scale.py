"""The default fit on data shaped like a first real multiome set, against plain baselines.

The ``real_scale`` preset of the simulator (10,309 cells, 1,677 genes, 25,734 peaks, 14 types,
12 libraries; the statistics of a SNARE-seq2 mouse cortex set, printed next to the target) with
a prior that assigns each peak to its nearest gene, as that user's was. Each seed runs
``FactVAE(rna, atac, g2p=pairs).fit(seed=s)`` at the defaults in its own process (so its peak
RSS is its own) and reports: finished or not, epochs run, fit time, peak RSS, and every factvae
embedding (joint, RNA half, ATAC half, Signac's LSI of the augmented and of the raw ATAC) beside
the simple pipelines of ``baselines.py`` (RNA PCA at the median library and at 1e4, ATAC LSI,
PCA + LSI), each scored by k-means ARI (k = 14, median of 5 draws) and 15-NN accuracy, and
the time and memory of the default links (every gene detected in >= 3 cells; >= 1% of cells
before 2026-12-06). On a GPU
(``--fit '{"device": "cuda"}'``) each run's JSON row also holds the GPU's name and its peak
allocated memory. Writes benchmarks/results/<name>.{json,md}.

    .venv/bin/python benchmarks/real_scale.py --seeds 0 1 2
    .venv/bin/python benchmarks/real_scale.py --seeds 0 --peaks 100000 --name real_scale_100k
    .venv/bin/python benchmarks/real_scale.py --seeds 0 --joint-shares 0.09 --name real_scale_w
    .venv/bin/python benchmarks/real_scale.py --seeds 0 --settings '{"atac_recon_weight": 0.02}' \
        --name real_scale_w0.02
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PRESET = "real_scale"
# The real set this preset imitates (issue 10); the benchmark prints both side by side.
REAL_TARGETS = {
    "cells": 10_309, "genes": 1_677, "rna_median_umis": 247, "rna_umis_p5": 88,
    "rna_umis_p95": 696, "rna_nonzero_pct": 6.4, "rna_max_count": 525, "peaks": 25_734,
    "atac_median_counts": 83, "atac_counts_p5": 32, "atac_counts_p95": 232,
    "atac_nonzero_pct": 0.38, "atac_max_count": 5, "median_cells_per_peak": 16,
    "empty_peaks": 990, "batches": 12, "batch_cells_min": 785, "batch_cells_max": 916,
    "batch_rna_median_min": 213, "batch_rna_median_max": 326,
}  # fmt: skip


def nearest_gene_pairs(sim) -> pd.DataFrame:
    """Each peak assigned to the gene whose TSS is nearest on its chromosome (one gene a peak)."""
    from factvae.data.genomics import tss

    genes = sim.genes
    peaks = sim.atac.var
    centre = ((peaks["start"].to_numpy() + peaks["end"].to_numpy()) // 2).astype(np.int64)
    starts = tss(genes)
    chosen = np.empty(len(peaks), dtype=object)
    for chrom, on_chrom in genes.groupby("chrom").groups.items():
        order = np.argsort(starts[on_chrom])
        sites = starts[on_chrom][order]
        names = genes["gene_name"].to_numpy()[on_chrom][order]
        mask = (peaks["chrom"] == chrom).to_numpy()
        right = np.clip(np.searchsorted(sites, centre[mask]), 1, len(sites) - 1)
        left = right - 1
        nearer_left = np.abs(centre[mask] - sites[left]) <= np.abs(sites[right] - centre[mask])
        if len(sites) == 1:
            chosen[mask] = names[0]
        else:
            chosen[mask] = names[np.where(nearer_left, left, right)]
    return pd.DataFrame({"gene": chosen, "peak": peaks.index.to_numpy()})


def run_one(
    seed: int, fit_kwargs: dict, overrides: dict, settings: dict, joint_shares: tuple = ()
) -> dict:
    import torch

    import factvae
    from baselines import model_embeddings, scored

    sim = factvae.simulate_preset(PRESET, seed=0, **overrides)
    pairs = nearest_gene_pairs(sim)
    labels = sim.rna.obs["cell_type"].to_numpy()
    start = time.perf_counter()
    model = factvae.FactVAE(sim.rna, sim.atac, g2p=pairs, **settings)
    prepared = time.perf_counter()
    result: dict = {"seed": seed, "threads": torch.get_num_threads(), **fit_kwargs, **settings}
    try:
        model.fit(seed=seed, progress=False, **fit_kwargs)
        result["finished"] = True
    except factvae.TrainingDivergedError as err:
        result.update(finished=False, error=str(err))
    trained = time.perf_counter()
    result.update(
        preprocess_s=prepared - start,
        fit_s=trained - prepared,
        epochs=len(model.history),
        atac_recon_weight=model.training_summary.get("atac_recon_weight"),
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    )
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name()
        result["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    if model.is_trained:
        result["scores"] = scored(model_embeddings(model, sim.atac.X, joint_shares), labels)
        result["links"] = timed_links(model, sim)
    return result


def timed_links(model, sim) -> dict:
    """Links for every gene detected in ``link_min_cells`` cells, as a user gets them by
    default: pairs, genes, seconds and the peak RSS they add."""
    from factvae.settings import RUN_DEFAULTS

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    links = model.infer_links(rna=sim.rna, gene_annotation=sim.genes)
    return {
        "pairs": len(links),
        "genes": int(links["gene"].nunique()),
        "min_cells": RUN_DEFAULTS.link_min_cells,
        "seconds": time.perf_counter() - started,
        "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
    }


def summarise(rows: list[dict], stats: dict, base: dict, settings: dict) -> str:
    from baselines import embedding_table

    lines = [
        f"`{PRESET}` preset (seed 0) against the real set it imitates:",
        "",
        "| statistic | simulated | real |",
        "|---|---|---|",
    ]
    for key, target in REAL_TARGETS.items():
        value = stats.get(key)
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} | {target} |")
    run = "default fit"
    if settings:
        run = "fit with " + ", ".join(f"{key}={value}" for key, value in settings.items())
    lines += [
        "",
        "| run | finished | epochs | fit (s) | peak RSS (GB) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {run}, seed {r['seed']} | {'yes' if r['finished'] else 'no'} | "
            f"{r['epochs']} | {r['fit_s']:.0f} | {r['peak_rss_gb']:.2f} |"
        )
    scored_runs = [r["scores"] for r in rows if "scores" in r]
    fits = [r["fit_s"] for r in rows]
    lines += [
        "",
        f"Embeddings of the {len(scored_runs)} finished seeds (mean ± sd over seeds) and the "
        "baselines on the same cells (k = the number of cell types):",
        "",
        embedding_table(scored_runs, base),
        "",
        f"{sum(r['finished'] for r in rows)}/{len(rows)} seeds finished; fit time median "
        f"{statistics.median(fits):.0f} s; preprocessing median "
        f"{statistics.median(r['preprocess_s'] for r in rows):.0f} s.",
    ]
    linked = [r["links"] for r in rows if "links" in r]
    if linked:
        seconds = statistics.median(k["seconds"] for k in linked)
        lines.append(
            f"Links for every gene detected in >= {linked[0]['min_cells']} cells: "
            f"{linked[0]['pairs']:,} pairs for "
            f"{linked[0]['genes']:,} genes, median {seconds:.1f} s; they raised the process's "
            f"peak RSS by at most {max(k['rss_growth_mb'] for k in linked):.0f} MB (0: they "
            "stayed below the fit's own peak)."
        )
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(HERE))
    from baselines import add_joint_shares_option

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fit", default="{}", help="extra fit() arguments as JSON")
    parser.add_argument("--settings", default="{}", help="model settings as JSON")
    parser.add_argument("--peaks", type=int, help="peaks to simulate (default: the preset's)")
    parser.add_argument("--name", default="real_scale")
    add_joint_shares_option(parser)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one seed
    args = parser.parse_args()
    fit_kwargs = json.loads(args.fit)
    overrides = {} if args.peaks is None else {"n_peaks": args.peaks}
    if args.one is not None:
        settings = json.loads(args.settings)
        shares = tuple(args.joint_shares)
        print(json.dumps(run_one(args.one, fit_kwargs, overrides, settings, shares)))
        return
    import factvae
    from baselines import baseline_embeddings, scored
    from factvae.data.simulate import count_statistics

    sim = factvae.simulate_preset(PRESET, seed=0, **overrides)
    stats = count_statistics(sim)
    labels = sim.rna.obs["cell_type"].to_numpy()
    base = scored(baseline_embeddings(sim.rna.X, sim.atac.X), labels)
    print(json.dumps({"statistics": stats, "baselines": base}), flush=True)
    rows = []
    for seed in args.seeds:
        peaks = ["--peaks", str(args.peaks)] if args.peaks else []
        child = [sys.executable, __file__, "--one", str(seed), "--fit", args.fit,
                 "--settings", args.settings, *peaks,
                 "--joint-shares", *map(str, args.joint_shares)]  # fmt: skip
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    payload = {"statistics": stats, "baselines": base, "runs": rows}
    (out / f"{args.name}.json").write_text(json.dumps(payload, indent=2))
    table = summarise(rows, stats, base, json.loads(args.settings))
    (out / f"{args.name}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
