"""Several samples: does ``batch_key`` mix batches without losing cell types, and do query
cells mapped with ``map_query`` land next to their own type? Writes
benchmarks/results/batches.json and batches.md.

Data: ``simulate`` with 4 batches that differ in depth (log-normal sd 0.3 per modality) and
in the log rates of a random 20% of genes and of peaks (shifts of sd ``--shift-sd``): strong
enough that, fitted without a batch covariate, neighbouring cells come from one batch.

1. Integration, all batches in one fit, with and without ``batch_key`` (and with
   ``encode_batch``): k-means ARI of the cell types, batch ASW and iLISI (scIB's
   definitions, ``factvae.outputs.scores.batch_mixing_scores``) on the joint latent, and
   the iLISI of each half.
2. Mapping: a reference fitted on batches 1-2, the query (batches 3-4) mapped with
   ``map_query``; the accuracy of a 15-nearest-neighbour classifier trained on the
   reference's latent and cell types, predicting the query cells' types. Also the same for a
   model without a batch covariate (query embedded by ``get_latent(rna=, atac=)``), and the
   iLISI of reference and query cells together.

    .venv/bin/python benchmarks/batches.py --seeds 0 1 2 --jobs 2
    .venv/bin/python benchmarks/batches.py --seeds 0 1 --jobs 2 --imbalanced --no-mapping \
        --name batches_imbalanced
    .venv/bin/python benchmarks/batches.py --seeds 0 1 --shift-sd 2.0 --name batches_strong
    .venv/bin/python benchmarks/batches.py --seeds 0 1 2 3 4 --jobs 2 --no-integration \
        --variants "batch_key (default mixing term)" --name batches_mapping
    .venv/bin/python benchmarks/batches.py --variants "batch_key (default mixing term)" \
        --settings '{"ssa_objective": "similarity", "joint_embedding": "concatenate"}' \
        --name batches_similarity
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REFERENCE_BATCHES = ("batch1", "batch2")
NEIGHBOURS = 15
VARIANTS = {
    "no batch covariate": {},
    "batch_key (default mixing term)": {"batch_key": "batch"},
    "batch_key, batch_mmd_weight=0": {"batch_key": "batch", "batch_mmd_weight": 0.0},
    "batch_key + encode_batch": {"batch_key": "batch", "encode_batch": True},
}  # fmt: skip
ABSENT_TYPE, ABSENT_FROM = "type1", ("batch1", "batch2")  # --imbalanced


def simulated(args: argparse.Namespace, seed: int):
    """The simulated batches; with ``--imbalanced``, ABSENT_TYPE's cells are left out of the
    ABSENT_FROM batches, so a mixing term that forced every batch onto every other would
    merge that type with others."""
    from factvae.data.simulate import simulate

    sim = simulate(
        n_cells=args.cells, n_genes=args.genes, n_peaks=args.peaks, n_batches=args.batches,
        batch_depth_sd=0.3, batch_shift_sd=args.shift_sd, seed=seed,
    )  # fmt: skip
    if args.imbalanced:
        obs = sim.rna.obs
        absent = (obs["cell_type"].astype(str) == ABSENT_TYPE) & obs["batch"].isin(ABSENT_FROM)
        sim.rna, sim.atac = sim.rna[~absent.to_numpy()].copy(), sim.atac[~absent.to_numpy()].copy()
    return sim


def integration(sim, seed: int, settings: dict) -> dict:
    """One fit on every batch; its cell-type and batch-mixing scores."""
    import factvae
    from factvae.outputs.scores import batch_mixing_scores, clustering_scores

    start = time.perf_counter()
    model = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, **settings)
    model.fit(seed=seed, progress=False)
    seconds = time.perf_counter() - start
    latent = model.get_latent()
    types, batches = sim.rna.obs["cell_type"], sim.rna.obs["batch"]
    halves = {  # each half mixes its batches, or the joint embedding cannot
        f"ilisi_{kind}": batch_mixing_scores(model.get_latent(kind), batches, types)["ilisi"]
        for kind in ("rna", "atac")
    }
    return {
        "ari": clustering_scores(latent, types, seed)["ari"],
        **batch_mixing_scores(latent, batches, types),
        **halves,
        "fit_s": seconds,
        "epochs": len(model.history),
    }


def mapping(sim, seed: int, settings: dict) -> dict:
    """Reference on REFERENCE_BATCHES, query on the rest: kNN label transfer accuracy."""
    from sklearn.neighbors import KNeighborsClassifier

    import factvae
    from factvae.outputs.scores import batch_mixing_scores

    in_reference = sim.rna.obs["batch"].isin(REFERENCE_BATCHES).to_numpy()
    reference_rna, reference_atac = sim.rna[in_reference].copy(), sim.atac[in_reference].copy()
    query_rna, query_atac = sim.rna[~in_reference].copy(), sim.atac[~in_reference].copy()
    start = time.perf_counter()
    model = factvae.FactVAE(reference_rna, reference_atac, gene_annotation=sim.genes, **settings)
    model.fit(seed=seed, progress=False)
    fitted = time.perf_counter()
    if settings.get("batch_key"):
        query = model.map_query(query_rna, query_atac, seed=seed, progress=False)
        query_latent = query.get_latent()
    else:
        query_latent = model.get_latent(rna=query_rna, atac=query_atac)
    mapped = time.perf_counter()
    reference_latent = model.get_latent()
    classifier = KNeighborsClassifier(NEIGHBOURS).fit(
        reference_latent, reference_rna.obs["cell_type"].astype(str)
    )
    predicted = classifier.predict(query_latent)
    truth = query_rna.obs["cell_type"].astype(str).to_numpy()
    together = np.vstack([reference_latent, query_latent])
    origin = np.repeat(["reference", "query"], [len(reference_latent), len(query_latent)])
    labels = np.concatenate([reference_rna.obs["cell_type"].astype(str), truth])
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "reference_query_ilisi": batch_mixing_scores(together, origin, labels)["ilisi"],
        "reference_fit_s": fitted - start,
        "map_s": mapped - fitted,
    }


def one_seed(args: argparse.Namespace, seed: int) -> dict:
    """Every variant's integration and mapping on one simulated data set."""
    if args.jobs > 1:  # share the cores between the processes
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.jobs))
    sim = simulated(args, seed)
    rows: dict = {"integration": {}, "mapping": {}}
    for name in args.variants:
        settings = {**VARIANTS[name], **json.loads(args.settings)}
        if args.integration:
            rows["integration"][name] = integration(sim, seed, settings)
            print(f"seed {seed} integration {name}: {rows['integration'][name]}", flush=True)
        if args.mapping:
            rows["mapping"][name] = mapping(sim, seed, settings)
            print(f"seed {seed} mapping {name}: {rows['mapping'][name]}", flush=True)
    return rows


def median(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def summarise(result: dict) -> str:
    seeds = result["seeds"]
    absent = (
        f" {ABSENT_TYPE} left out of {' and '.join(ABSENT_FROM)}."
        if result.get("imbalanced") else ""
    )  # fmt: skip
    lines = [
        f"{result['cells']} simulated cells, {result['genes']} genes, {result['peaks']} peaks, "
        f"{result['batches']} batches (feature shifts sd {result['shift_sd']}); median over "
        f"seeds {', '.join(map(str, seeds))}.{absent}"
        + "".join(f" {key}={value}." for key, value in result.get("settings", {}).items()),
    ]
    if result["integration"]:
        lines += [
            "",
            f"| fit | cell-type ARI | batch ASW | iLISI (1-{result['batches']}) | RNA half "
            "iLISI | ATAC half iLISI | fit (s) |",
            "|---|---|---|---|---|---|---|",
        ]
    for name, rows in result["integration"].items():
        halves = [  # older results lack the halves
            f"{median(rows, key):.2f}" if key in rows[0] else "-"
            for key in ("ilisi_rna", "ilisi_atac")
        ]
        lines.append(
            f"| {name} | {median(rows, 'ari'):.3f} | {median(rows, 'batch_asw'):.3f} | "
            f"{median(rows, 'ilisi'):.2f} | {' | '.join(halves)} | {median(rows, 'fit_s'):.0f} |"
        )
    if not result["mapping"]:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"Query cells of {result['batches'] - len(REFERENCE_BATCHES)} unseen batches placed in "
        f"a reference fitted on {len(REFERENCE_BATCHES)}: accuracy of {NEIGHBOURS}-NN label "
        "transfer from the reference's cells, and iLISI of reference and query cells together "
        "(1-2).",
        "",
        "| reference model | query embedded by | label transfer accuracy | reference-query "
        "iLISI | map (s) |",
        "|---|---|---|---|---|",
    ]
    for name, rows in result["mapping"].items():
        how = "map_query" if name != "no batch covariate" else "get_latent(rna=, atac=)"
        lines.append(
            f"| {name} | {how} | {median(rows, 'accuracy'):.3f} | "
            f"{median(rows, 'reference_query_ilisi'):.2f} | {median(rows, 'map_s'):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cells", type=int, default=3000)
    parser.add_argument("--genes", type=int, default=1000)
    parser.add_argument("--peaks", type=int, default=10000)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--shift-sd", type=float, default=1.5)
    parser.add_argument(
        "--imbalanced",
        action="store_true",
        help=f"leave {ABSENT_TYPE} out of {', '.join(ABSENT_FROM)}",
    )
    parser.add_argument(
        "--no-mapping", dest="mapping", action="store_false", help="integration only"
    )
    parser.add_argument(
        "--no-integration", dest="integration", action="store_false", help="mapping only"
    )
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
        help="the fits to run (default: all)",
    )  # fmt: skip
    parser.add_argument("--settings", default="{}", help="model settings for every fit, as JSON")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run side by side")
    parser.add_argument("--name", default="batches")
    args = parser.parse_args()

    result: dict = {
        "seeds": args.seeds, "cells": args.cells, "genes": args.genes, "peaks": args.peaks,
        "batches": args.batches, "shift_sd": args.shift_sd, "imbalanced": args.imbalanced,
        "settings": json.loads(args.settings),
        "integration": {name: [] for name in args.variants} if args.integration else {},
        "mapping": {name: [] for name in args.variants} if args.mapping else {},
    }  # fmt: skip
    with ProcessPoolExecutor(args.jobs) as pool:  # one seed a process
        for seed, rows in zip(args.seeds, pool.map(one_seed, [args] * len(args.seeds), args.seeds)):
            for kind in ("integration", "mapping"):
                for name, row in rows[kind].items():
                    result[kind][name].append({"seed": seed, **row})
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    table = summarise(result)
    (out / f"{args.name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
