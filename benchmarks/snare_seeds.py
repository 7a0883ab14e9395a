"""FactVAE on the real SNARE-seq cell-line set: clustering quality, time and memory per seed.

Each seed runs in its own process so its peak RSS is its own. Writes
benchmarks/results/snare_seeds.json and prints a Markdown table.

    .venv/bin/python benchmarks/snare_seeds.py --seeds 0 1 2 3 4             # the defaults
    .venv/bin/python benchmarks/snare_seeds.py --seeds 0 1 2 3 4 --preset paper  # 300 epochs
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


def run_one(seed: int, epochs: int | None, precision: str, preset: str) -> dict:
    """Train with the preset's settings and score k-means (k = 4) on each embedding."""
    import numpy as np
    import torch

    import factvae
    from factvae.outputs.scores import clustering_scores
    from factvae.train.devices import resolve_precision
    from snare_data import load_snare

    rna, atac, genes = load_snare()
    labels = rna.obs["cell_type"].to_numpy()
    start = time.perf_counter()
    model = factvae.FactVAE(rna, atac, gene_annotation=genes, preset=preset)
    prepared = time.perf_counter()
    model.fit(max_epochs=epochs, seed=seed, progress=False, precision=precision)
    trained = time.perf_counter()
    epochs = len(model.history)
    result = {
        "seed": seed,
        "preset": preset,
        "epochs": epochs,
        "max_epochs": model.training_summary["max_epochs"],
        "best_epoch": model.training_summary["best_epoch"],
        "threads": torch.get_num_threads(),
        "precision": resolve_precision(precision, torch.device("cpu")),
        "preprocess_s": prepared - start,
        "train_s": trained - prepared,
        "s_per_epoch": (trained - prepared) / epochs,
    }
    for kind in ("joint", "rna", "atac"):
        scores = clustering_scores(model.get_latent(kind), labels)
        result[f"{kind}_ari"], result[f"{kind}_nmi"] = scores["ari"], scores["nmi"]
    # the fit's high-water mark, before the augmented matrix and its LSI below add their own
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    # Augmented ATAC against raw: LSI, then k-means on components 2-30 (as the real-data test)
    import scipy.sparse as sp

    from factvae.data.preprocessing import atac_lsi

    for name, matrix in (("raw", atac.X), ("augmented", model.augment_atac())):
        lsi, _ = atac_lsi(sp.csr_matrix(matrix), 100, seed=0)
        result[f"{name}_lsi_ari"] = clustering_scores(lsi[:, 1:30], labels)["ari"]
    result["n_prior_pairs"] = int(model.g2p.nnz)
    del np
    return result


def summarise(rows: list[dict]) -> str:
    def ms(key: str) -> str:
        values = [r[key] for r in rows]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {sd:.3f}"

    lines = [
        f"snare_hcellline, {len(rows)} seeds ({', '.join(str(r['seed']) for r in rows)}), "
        f"preset '{rows[0].get('preset', 'paper')}', epochs run "
        f"{', '.join(str(r['epochs']) for r in rows)} (of {rows[0].get('max_epochs', 300)}), "
        f"{platform.machine()} CPU, {rows[0]['threads']} threads, {rows[0]['precision']} products",
        "",
        "| embedding | ARI (mean ± sd) | NMI (mean ± sd) |",
        "|---|---|---|",
    ]
    for kind in ("joint", "rna", "atac"):
        lines.append(f"| {kind} | {ms(f'{kind}_ari')} | {ms(f'{kind}_nmi')} |")
    if "augmented_lsi_ari" in rows[0]:
        lines.append(f"| LSI of the augmented ATAC | {ms('augmented_lsi_ari')} | |")
        lines.append(f"| LSI of the raw ATAC | {ms('raw_lsi_ari')} | |")
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="most epochs (default: preset's)")
    parser.add_argument("--preset", default="default", choices=["default", "paper"])
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one seed
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.epochs, args.precision, args.preset)))
        return
    rows = []
    for seed in args.seeds:
        child = [sys.executable, __file__, "--one", str(seed), "--precision", args.precision,
                 "--preset", args.preset]  # fmt: skip
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
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2))
    table = summarise(rows)
    (out / f"{name}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
