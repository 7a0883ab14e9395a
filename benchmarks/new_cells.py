"""Cells the model never saw: does ``get_latent(rna=, atac=)`` place new cells of the same
samples among the training cells of their kind, in each half? Writes
benchmarks/results/<name>.{json,md}.

A simulated set (one sample) is split at random: the model is fitted on 80% of the cells and
the other 20% are embedded through the preprocessing saved at fit time, as a user embeds new
cells. For the joint embedding and each half: iLISI of training and new cells together (scIB's
definition; 1 = apart, 2 at most), the training cells' share of
each new cell's 15 nearest neighbours (0.8 when mixed), the accuracy of 15-NN label transfer
from the training cells, and, on the training cells, k-means ARI of the cell types (median of
5 k-means draws), so a variant that helps new cells at the training cells' cost shows it.

Each fit is scored twice: as new cells are embedded (their projections scaled per component to
the training cells' reach, ``out_of_sample_scale``) and with that scale removed (how they were
embedded before 2026-12-04), so the two rows of one fit differ only in that. ``--data snare``
(the real snare_hcellline, 4 cell lines) and ``--data real_scale`` (the simulator's preset shaped
like a SNARE-seq2 cortex set, 14 types, with a nearest-gene prior) replace the small simulated
set.

    .venv/bin/python benchmarks/new_cells.py --seeds 0 1
    .venv/bin/python benchmarks/new_cells.py --seeds 0 --data snare --variants default \
        --name new_cells_snare
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HELD_OUT = 0.2
NEIGHBOURS = 15
KINDS = ("joint", "rna", "atac")
VARIANTS = {"default": {}, "projected inputs": {"projected_inputs": True}}


def data_set(args: argparse.Namespace, seed: int) -> tuple:
    """(rna, atac, model arguments) of the chosen data; cell types in ``obs['cell_type']``."""
    import factvae

    if args.data == "snare":
        from snare_data import load_snare

        rna, atac, genes = load_snare()
        return rna, atac, {"gene_annotation": genes}
    if args.data == "real_scale":
        from real_scale import PRESET, nearest_gene_pairs

        sim = factvae.simulate_preset(PRESET, seed=0)
        return sim.rna, sim.atac, {"g2p": nearest_gene_pairs(sim)}
    sim = factvae.simulate(n_cells=args.cells, n_genes=args.genes, n_peaks=args.peaks, seed=seed)
    return sim.rna, sim.atac, {"gene_annotation": sim.genes}


def one_fit(seed: int, args: argparse.Namespace, settings: dict) -> tuple[dict, dict]:
    """Fit on the training cells; every score of each embedding, with new cells scaled as
    they are embedded and with that scale removed."""
    import factvae

    rna, atac, inputs = data_set(args, seed)
    new = np.random.default_rng(seed).random(rna.n_obs) < HELD_OUT
    start = time.perf_counter()
    model = factvae.FactVAE(rna[~new].copy(), atac[~new].copy(), **inputs, **settings)
    model.fit(seed=seed, progress=False)
    row: dict = {"seed": seed, "fit_s": time.perf_counter() - start, "epochs": len(model.history)}
    types = rna.obs["cell_type"].astype(str).to_numpy()
    scored = scores(model, rna, atac, new, types, row)
    for projection in model.projections.values():
        if projection is not None:
            projection.new_cell_scale = None
    unscaled = scores(model, rna, atac, new, types, dict(row))
    print(json.dumps({"scaled": scored, "unscaled": unscaled}), flush=True)
    return scored, unscaled


def scores(model, rna, atac, new: np.ndarray, types: np.ndarray, row: dict) -> dict:
    """``row`` with each embedding's scores of the training and the new cells."""
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

    from factvae.outputs.scores import batch_mixing_scores, clustering_scores

    known, unseen = types[~new], types[new]
    for kind in KINDS:
        training = model.get_latent(kind)
        embedded = model.get_latent(kind, rna=rna[new].copy(), atac=atac[new].copy())
        together = np.vstack([training, embedded])
        origin = np.repeat(["training", "new"], [len(training), len(embedded)])
        neighbours = (
            NearestNeighbors(n_neighbors=NEIGHBOURS)
            .fit(together)
            .kneighbors(embedded, return_distance=False)
        )
        transfer = KNeighborsClassifier(NEIGHBOURS).fit(training, known)
        row[kind] = {
            "ilisi": batch_mixing_scores(together, origin, np.r_[known, unseen])["ilisi"],
            "training_neighbours": float((neighbours < len(training)).mean()),
            "transfer": float(np.mean(transfer.predict(embedded) == unseen)),
            "ari": statistics.median(
                clustering_scores(training, known, draw)["ari"] for draw in range(5)
            ),
        }
    return row


def summarise(result: dict) -> str:
    data = result.get("data", "simulated")
    described = (
        f"{result['cells']} simulated cells ({100 * HELD_OUT:.0f}% held out), "
        f"{result['genes']} genes, {result['peaks']} peaks"
        if data == "simulated"
        else f"{data} ({100 * HELD_OUT:.0f}% of the cells held out)"
    )
    lines = [
        f"{described}; median over seeds {', '.join(map(str, result['seeds']))}. Each fit's "
        "new cells are embedded as they are now (projections scaled to the training cells' "
        "reach) and with that scale removed (as before 2026-12-04).",
        "",
        "| fit | embedding | training-new iLISI (1-2) | training cells among new cells' "
        f"{NEIGHBOURS} neighbours (0.8 mixed) | label transfer | training cells' k-means ARI |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in result["variants"].items():
        for kind in KINDS:
            values = [
                statistics.median(row[kind][key] for row in rows)
                for key in ("ilisi", "training_neighbours", "transfer", "ari")
            ]
            lines.append(f"| {name} | {kind} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--cells", type=int, default=3000)
    parser.add_argument("--genes", type=int, default=1000)
    parser.add_argument("--peaks", type=int, default=10000)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--data", choices=["simulated", "snare", "real_scale"], default="simulated")
    parser.add_argument("--name", default="new_cells")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    result: dict = {
        "seeds": args.seeds, "cells": args.cells, "genes": args.genes, "peaks": args.peaks,
        "data": args.data, "variants": {},
    }  # fmt: skip
    for name in args.variants:
        fits = [one_fit(seed, args, VARIANTS[name]) for seed in args.seeds]
        result["variants"][name] = [scaled for scaled, _ in fits]
        result["variants"][f"{name}, new cells unscaled"] = [unscaled for _, unscaled in fits]
    out = HERE / "results" / args.name
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    table = summarise(result)
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
