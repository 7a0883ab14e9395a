"""FactVAE on the real SNARE-seq cell-line set: clustering quality, time and memory per seed.

Every factvae embedding (joint, RNA half, ATAC half, Signac's LSI of the augmented and of the
raw ATAC) beside the simple pipelines of ``baselines.py`` (RNA PCA at the median library and
at 1e4, ATAC LSI, PCA + LSI), each scored by k-means ARI (k = 4, median of 5 draws) and 15-NN
accuracy. Each seed runs in its own process so its peak RSS is its own. Writes
benchmarks/results/snare_seeds.json and prints a Markdown table.

    .venv/bin/python benchmarks/snare_seeds.py --seeds 0 1 2 3 4             # the defaults
    .venv/bin/python benchmarks/snare_seeds.py --seeds 0 1 2 3 4 --preset paper  # 300 epochs
    .venv/bin/python benchmarks/snare_seeds.py --seeds 0 1 2 --name snare_seeds_former \
        --settings '{"atac_kl_weight": 0.03, "ssa_lr": 0.0005, "joint_atac_share": null}'
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


def run_one(
    seed: int, epochs: int | None, precision: str, preset: str, settings: dict,
    joint_shares: tuple = (),
) -> dict:  # fmt: skip
    """Train with the preset's settings and score k-means (k = 4) on each embedding."""
    import torch

    import factvae
    from baselines import model_embeddings, scored
    from factvae.train.devices import resolve_precision
    from snare_data import load_snare

    rna, atac, genes = load_snare()
    labels = rna.obs["cell_type"].to_numpy()
    start = time.perf_counter()
    model = factvae.FactVAE(rna, atac, gene_annotation=genes, preset=preset, **settings)
    prepared = time.perf_counter()
    model.fit(max_epochs=epochs, seed=seed, progress=False, precision=precision)
    trained = time.perf_counter()
    epochs = len(model.history)
    result = {
        "seed": seed,
        "preset": preset,
        "settings": settings,
        "epochs": epochs,
        "max_epochs": model.training_summary["max_epochs"],
        "best_epoch": model.training_summary["best_epoch"],
        "threads": torch.get_num_threads(),
        "precision": resolve_precision(precision, torch.device("cpu")),
        "preprocess_s": prepared - start,
        "train_s": trained - prepared,
        "s_per_epoch": (trained - prepared) / epochs,
    }
    # the fit's high-water mark, before the augmented matrix and its LSI add their own
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["scores"] = scored(model_embeddings(model, atac.X, joint_shares), labels)
    result["n_prior_pairs"] = int(model.g2p.nnz)
    return result


def summarise(rows: list[dict], base: dict) -> str:
    from baselines import embedding_table

    lines = [
        f"snare_hcellline, {len(rows)} seeds ({', '.join(str(r['seed']) for r in rows)}), "
        f"preset '{rows[0].get('preset', 'paper')}'"
        + "".join(f", {key}={value}" for key, value in rows[0].get("settings", {}).items())
        + ", epochs run "
        f"{', '.join(str(r['epochs']) for r in rows)} (of {rows[0].get('max_epochs', 300)}), "
        f"{platform.machine()} CPU, {rows[0]['threads']} threads, {rows[0]['precision']} products",
        "",
        embedding_table([r["scores"] for r in rows], base),
    ]
    train = [r["train_s"] for r in rows]
    rss = [r["peak_rss_gb"] for r in rows]
    lines += [
        "",
        f"Training time: median {statistics.median(train):.0f} s "
        f"({statistics.median(r['s_per_epoch'] for r in rows):.2f} s per epoch); "
        f"preprocessing median {statistics.median(r['preprocess_s'] for r in rows):.1f} s; "
        f"peak RSS median {statistics.median(rss):.2f} GB.",
    ]
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(HERE))
    from baselines import add_joint_shares_option

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="most epochs (default: preset's)")
    parser.add_argument("--preset", default="default", choices=["default", "paper"])
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"])
    parser.add_argument("--settings", default="{}", help="model settings as JSON")
    parser.add_argument("--name", help="results file name (default: from the preset)")
    add_joint_shares_option(parser)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one seed
    args = parser.parse_args()
    if args.one is not None:
        settings = json.loads(args.settings)
        shares = tuple(args.joint_shares)
        row = run_one(args.one, args.epochs, args.precision, args.preset, settings, shares)
        print(json.dumps(row))
        return
    from baselines import baseline_embeddings, scored
    from snare_data import load_snare

    rna, atac, _ = load_snare()
    base = scored(baseline_embeddings(rna.X, atac.X), rna.obs["cell_type"].to_numpy())
    rows = []
    for seed in args.seeds:
        child = [sys.executable, __file__, "--one", str(seed), "--precision", args.precision,
                 "--preset", args.preset, "--settings", args.settings,
                 "--joint-shares", *map(str, args.joint_shares)]  # fmt: skip
        if args.epochs is not None:
            child += ["--epochs", str(args.epochs)]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    name = "snare_seeds" if args.preset == "default" else f"snare_seeds_{args.preset}"
    if args.precision != "auto":
        name += f"_{args.precision}"
    name = args.name or name
    (out / f"{name}.json").write_text(json.dumps({"baselines": base, "runs": rows}, indent=2))
    table = summarise(rows, base)
    (out / f"{name}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
