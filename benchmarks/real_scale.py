"""The default fit on data shaped like a first real multiome set, against plain baselines.

The ``real_scale`` preset of the simulator (10,309 cells, 1,677 genes, 25,734 peaks, 14 types,
12 libraries; the statistics of a SNARE-seq2 mouse cortex set, printed next to the target) with
a prior that assigns each peak to its nearest gene, as that user's was. Each seed runs
``FactVAE(rna, atac, g2p=pairs).fit(seed=s)`` at the defaults in its own process (so its peak
RSS is its own) and reports: finished or not, epochs run, fit time, peak RSS, and the ARI/NMI of
k-means (k = 14) on the joint embedding; next to it, the same scores for plain RNA PCA, ATAC
LSI and PCA + LSI on the same cells. Writes benchmarks/results/<name>.{json,md}.

    .venv/bin/python benchmarks/real_scale.py --seeds 0 1 2
    .venv/bin/python benchmarks/real_scale.py --seeds 0 --peaks 100000 --name real_scale_100k
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


def baselines(sim) -> dict[str, dict[str, float]]:
    """Plain RNA PCA (50 PCs of the scaled HVGs), ATAC LSI (components 2-51) and PCA + LSI
    (50 + 50, each cell's vector standardised so neither modality dominates), scored as the
    model is."""
    import scipy.sparse as sp

    from factvae.data.counts import InMemoryRows
    from factvae.data.preprocessing import (
        atac_lsi,
        highly_variable_genes,
        rna_pca,
        standardise_rows,
    )
    from factvae.outputs.scores import clustering_scores

    rna = sp.csr_matrix(sim.rna.X)
    totals = np.asarray(rna.sum(axis=1)).ravel()
    hvg = highly_variable_genes(InMemoryRows(rna), 2000)
    pca, _ = rna_pca(rna[:, hvg], totals, 50, 0)
    lsi, _ = atac_lsi(sp.csr_matrix(sim.atac.X), 51, 0)
    labels = sim.rna.obs["cell_type"].to_numpy()
    both = np.hstack([standardise_rows(pca), lsi[:, 1:]])  # LSI's first component is depth
    return {
        "rna_pca": clustering_scores(pca, labels),
        "atac_lsi": clustering_scores(lsi[:, 1:], labels),
        "pca_lsi": clustering_scores(both, labels),
    }


def run_one(seed: int, fit_kwargs: dict, overrides: dict, settings: dict) -> dict:
    import torch

    import factvae
    from factvae.outputs.scores import clustering_scores

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
    if model.is_trained:
        for kind in ("joint", "rna", "atac"):
            scores = clustering_scores(model.get_latent(kind), labels)
            result[f"{kind}_ari"], result[f"{kind}_nmi"] = scores["ari"], scores["nmi"]
    return result


def summarise(rows: list[dict], stats: dict, base: dict, settings: dict) -> str:
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
    lines += [
        "",
        "| run | finished | epochs | fit (s) | peak RSS (GB) | joint ARI | joint NMI | RNA ARI "
        "| ATAC ARI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    run = "default fit"
    if settings:
        run = "fit with " + ", ".join(f"{key}={value}" for key, value in settings.items())
    for r in rows:
        scored = "joint_ari" in r
        lines.append(
            f"| {run}, seed {r['seed']} | {'yes' if r['finished'] else 'no'} | "
            f"{r['epochs']} | {r['fit_s']:.0f} | {r['peak_rss_gb']:.2f} | "
            + (
                f"{r['joint_ari']:.3f} | {r['joint_nmi']:.3f} | {r['rna_ari']:.3f} | "
                f"{r['atac_ari']:.3f} |"
                if scored
                else "- | - | - | - |"
            )
        )
    shown = (("rna_pca", "plain RNA PCA"), ("atac_lsi", "ATAC LSI"), ("pca_lsi", "PCA + LSI"))
    for name, label in (b for b in shown if b[0] in base):  # older results lack ATAC LSI
        lines.append(f"| {label} | | | | | {base[name]['ari']:.3f} | {base[name]['nmi']:.3f} | | |")
    fits = [r["fit_s"] for r in rows]
    aris = [r["joint_ari"] for r in rows if "joint_ari" in r]
    lines += [
        "",
        f"{sum(r['finished'] for r in rows)}/{len(rows)} seeds finished; fit time median "
        f"{statistics.median(fits):.0f} s; joint ARI mean "
        + (f"{statistics.mean(aris):.3f}" if aris else "-")
        + f"; preprocessing median {statistics.median(r['preprocess_s'] for r in rows):.0f} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fit", default="{}", help="extra fit() arguments as JSON")
    parser.add_argument("--settings", default="{}", help="model settings as JSON")
    parser.add_argument("--peaks", type=int, help="peaks to simulate (default: the preset's)")
    parser.add_argument("--name", default="real_scale")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one seed
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    fit_kwargs = json.loads(args.fit)
    overrides = {} if args.peaks is None else {"n_peaks": args.peaks}
    if args.one is not None:
        print(json.dumps(run_one(args.one, fit_kwargs, overrides, json.loads(args.settings))))
        return
    import factvae
    from factvae.data.simulate import count_statistics

    sim = factvae.simulate_preset(PRESET, seed=0, **overrides)
    stats = count_statistics(sim)
    base = baselines(sim)
    print(json.dumps({"statistics": stats, "baselines": base}), flush=True)
    rows = []
    for seed in args.seeds:
        peaks = ["--peaks", str(args.peaks)] if args.peaks else []
        child = [sys.executable, __file__, "--one", str(seed), "--fit", args.fit,
                 "--settings", args.settings, *peaks]  # fmt: skip
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
