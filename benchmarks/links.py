"""Link inference at genome scale: 20,000 genes x 250,000 peaks on hg38-sized chromosomes,
150 kb window, 100,000 background pairs. Candidates come from per-chromosome sorted searches,
never a dense genes x peaks matrix; this times ``infer_links`` and records the memory it adds
(VmHWM above the RSS before the call). Writes benchmarks/results/links.json and links.md.

    .venv/bin/python benchmarks/links.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
GENES, PEAKS, LATENT, GENOME = 20_000, 250_000, 50, 3.1e9


def random_genome(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Genes and peaks spread uniformly over 23 chromosomes of a 3.1 Gb genome."""
    chrom_len = int(GENOME / 23)
    chroms = np.array([f"chr{i}" for i in range(1, 24)])

    def intervals(n: int, width: tuple[int, int]) -> pd.DataFrame:
        start = rng.integers(0, chrom_len - width[1], n)
        end = start + rng.integers(*width, n)
        return pd.DataFrame({"chrom": rng.choice(chroms, n), "start": start, "end": end})

    genes = intervals(GENES, (1_000, 100_000)).assign(strand=rng.choice(["+", "-"], GENES))
    genes.index = pd.Index([f"gene{i}" for i in range(GENES)])
    peaks = intervals(PEAKS, (200, 1_500))
    peaks.index = peaks["chrom"] + "-" + peaks["start"].astype(str) + "-" + peaks["end"].astype(str)
    return genes, peaks[~peaks.index.duplicated()]


def main() -> None:
    sys.path.insert(0, str(HERE))
    from factvae.outputs.links import cosine_scorer, infer_links
    from scale import memory_kb, reset_peak_memory

    rng = np.random.default_rng(0)
    genes, peaks = random_genome(rng)
    scorer = cosine_scorer(
        rng.standard_normal((len(genes), LATENT)), rng.standard_normal((len(peaks), LATENT))
    )
    accessibility = rng.uniform(0.001, 0.2, len(peaks))  # each peak's share of cells
    before = memory_kb("VmRSS")
    reset_peak_memory()
    start = time.perf_counter()
    links = infer_links(scorer, genes, peaks, 150_000, 100_000, 0, accessibility=accessibility)
    seconds = time.perf_counter() - start
    added_mb = (memory_kb("VmHWM") - before) / 1024
    dense_gb = len(genes) * len(peaks) * 8 / 1e9
    result = {"genes": len(genes), "peaks": len(peaks), "pairs": len(links),
              "seconds": seconds, "added_mb": added_mb, "dense_float64_gb": dense_gb}  # fmt: skip
    text = (
        f"{result['genes']:,} genes x {result['peaks']:,} peaks, 150 kb window: "
        f"{result['pairs']:,} candidate pairs scored and tested in {seconds:.1f} s, adding "
        f"{added_mb:.0f} MB at peak (a dense genes x peaks float64 matrix would be "
        f"{dense_gb:.0f} GB)."
    )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "links.json").write_text(json.dumps(result, indent=2))
    (out / "links.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
