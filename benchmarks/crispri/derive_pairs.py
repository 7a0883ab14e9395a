"""K562 CRISPRi enhancer-gene pairs mapped onto the snare_hcellline peaks and genes (issue 24).

The link benchmark needs ground truth expressed in this data set's own features: a gene of
genes.tsv and a peak of peaks.bed, named as the project names peaks. This script only filters
and derives; it computes no model scores. Source: the K562 rows of the two GRCh38 tables in
EngreitzLab/CRISPR_comparison (``resources/crispr_data``), read from a bare git directory or a
checkout, so nothing is downloaded here.

Rules: a tested element overlaps a peak (0-based half-open, any base in common); its gene is
in genes.tsv; the element's centre lies within 150 kb of the gene's TSS, taken strand-aware
from snare's genes.bed (the project's own ``tss``). One element overlapping several peaks
gives several pairs; a (gene, peak) pair reached by several elements is positive when any
element is ``Regulated`` (this does not happen in the current tables).

    .venv/bin/python benchmarks/crispri/derive_pairs.py PATH_TO_CRISPR_comparison [--snare DIR]
"""

from __future__ import annotations

import argparse
import gzip
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from factvae.data.genomics import format_peak_names, tss

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_SNARE = ROOT.parent / "shared" / "data" / "snare_hcellline"
DEFAULT_OUT = HERE / "k562_pairs_snare.tsv"
SOURCES = {
    "training": "resources/crispr_data/EPCrisprBenchmark_combined_data.training_K562.GRCh38.tsv.gz",
    "heldout": (
        "resources/crispr_data/EPCrisprBenchmark_combined_data.heldout_5_cell_types.GRCh38.tsv.gz"
    ),
}
WINDOW = 150_000
CELL_TYPE = "K562"
# Source columns carried over as written (text), besides those turned into typed columns.
KEPT_TEXT = [
    "name",
    "EffectSize",
    "pValueAdjusted",
    "PowerAtEffectSize10",
    "PowerAtEffectSize15",
    "PowerAtEffectSize20",
    "PowerAtEffectSize25",
    "PowerAtEffectSize50",
    "ValidConnection",
    "Dataset",
    "measuredGeneEnsemblId",
    "measuredGeneUbiquitousExpressed",
    "elementChromatinCategory",
    "direct_vs_indirect_negative",
]


def _is_bare_git(path: Path) -> bool:
    """A bare git directory has HEAD and objects at its top and no work tree."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def _git(repo: Path, *args: str) -> bytes:
    flag = ["--git-dir", str(repo)] if _is_bare_git(repo) else ["-C", str(repo)]
    return subprocess.run(["git", *flag, *args], check=True, capture_output=True).stdout


def source_commit(repo: Path) -> str | None:
    """Commit of the copy read (None for a plain folder), so the README can cite it."""
    try:
        return _git(repo, "rev-parse", "HEAD").decode().strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def read_source_table(repo: Path, relpath: str) -> pd.DataFrame:
    """One gzipped CRISPR table as text columns, from a bare git dir (HEAD) or a folder.

    Text keeps the source's values exactly as written; LFS pointers are refused, since a
    snapshot may hold a pointer in place of a large file.
    """
    if _is_bare_git(repo):
        raw = _git(repo, "show", f"HEAD:{relpath}")
    else:
        raw = (repo / relpath).read_bytes()
    if raw.startswith(b"version https://git-lfs"):
        raise SystemExit(f"{relpath} is a Git LFS pointer in {repo}, not the table")
    with gzip.open(io.BytesIO(raw), "rt") as handle:
        return pd.read_csv(handle, sep="\t", dtype=str, keep_default_na=False)


def load_crispr(repo: Path) -> pd.DataFrame:
    """K562 rows of the training and held-out tables, with the file each came from."""
    frames = []
    for source, relpath in SOURCES.items():
        table = read_source_table(repo, relpath)
        table = table[table["CellType"] == CELL_TYPE].assign(source_file=source)
        frames.append(table)
    crispr = pd.concat(frames, ignore_index=True)
    for col in ("chromStart", "chromEnd", "startTSS", "distanceToTSS"):
        crispr[col] = crispr[col].astype(np.int64)
    for col in ("Regulated", "Significant"):
        values = crispr[col].str.upper()
        if not values.isin(["TRUE", "FALSE"]).all():
            raise SystemExit(f"column {col} holds values other than TRUE/FALSE")
        crispr[col] = values == "TRUE"
    return crispr


def load_snare(snare: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Peaks (with their row index and project name) and the genes of genes.tsv that have
    coordinates in genes.bed, with their strand-aware TSS."""
    peaks = pd.read_csv(
        snare / "peaks.bed", sep="\t", header=None, names=["chrom", "start", "end"], dtype=str
    ).astype({"start": np.int64, "end": np.int64})
    peaks["peak_index"] = np.arange(len(peaks))
    peaks["peak"] = format_peak_names(peaks["chrom"], peaks["start"], peaks["end"])
    rna_genes = pd.read_csv(snare / "genes.tsv", header=None, dtype=str)[0]
    genes = pd.read_csv(
        snare / "genes.bed",
        sep="\t",
        header=None,
        names=["chrom", "start", "end", "gene", "strand"],
        dtype=str,
    ).astype({"start": np.int64, "end": np.int64})
    genes = genes[genes["gene"].isin(set(rna_genes))].drop_duplicates("gene")
    genes["tss"] = tss(genes)
    lifted_file = snare / "genes_lifted_from_hg19.txt"
    lifted = set(lifted_file.read_text().split()) if lifted_file.exists() else set()
    genes["gene_tss_lifted"] = genes["gene"].isin(lifted)
    return peaks, genes


def map_pairs(crispr: pd.DataFrame, peaks: pd.DataFrame, genes: pd.DataFrame) -> pd.DataFrame:
    """Element-peak overlaps of genes in the RNA set within WINDOW of the TSS, one row per
    (gene, peak)."""
    elements = crispr.merge(
        genes[["gene", "chrom", "strand", "tss", "gene_tss_lifted"]].rename(
            columns={"chrom": "gene_chrom"}
        ),
        left_on="measuredGeneSymbol",
        right_on="gene",
    )
    elements = elements[elements["gene_chrom"] == elements["chrom"]]
    hits = elements.merge(
        peaks.rename(columns={"start": "peak_start", "end": "peak_end"}), on="chrom"
    )
    hits = hits[(hits["chromStart"] < hits["peak_end"]) & (hits["chromEnd"] > hits["peak_start"])]
    element_centre = (hits["chromStart"] + hits["chromEnd"]) // 2
    hits = hits.assign(element_distance=(element_centre - hits["tss"]).abs())
    hits = hits[hits["element_distance"] <= WINDOW].copy()

    sign = np.where(hits["strand"] == "-", -1, 1)
    t = hits["tss"].to_numpy()
    start, end = hits["peak_start"].to_numpy(), hits["peak_end"].to_numpy()
    hits["distance"] = ((start + end) // 2 - t) * sign  # peak centre; negative = upstream
    hits["abs_distance"] = np.abs(hits["distance"])
    # factvae.outputs.links.candidate_pairs' distance: 0 over the TSS, else gap to nearer end.
    hits["peak_gap"] = np.where(t < start, start - t, np.where(t >= end, end - 1 - t, 0)) * sign

    # Several elements on one (gene, peak): positive if any is; keep the regulated element,
    # else the one with the most negative effect, and count them.
    hits["_effect"] = hits["EffectSize"].astype(float)
    hits = hits.sort_values(
        ["gene", "peak_index", "Regulated", "_effect", "chromStart", "chromEnd", "source_file"],
        ascending=[True, True, False, True, True, True, True],
        kind="mergesort",
    )
    n_elements = hits.groupby(["gene", "peak_index"])["chromStart"].transform("size")
    hits = hits.assign(n_elements=n_elements).drop_duplicates(["gene", "peak_index"])

    out = pd.DataFrame(
        {
            "gene": hits["gene"],
            "peak": hits["peak"],
            "peak_index": hits["peak_index"],
            "chrom": hits["chrom"],
            "peak_start": hits["peak_start"],
            "peak_end": hits["peak_end"],
            "element_start": hits["chromStart"],
            "element_end": hits["chromEnd"],
            "strand": hits["strand"],
            "tss": hits["tss"],
            "tss_crispr": hits["startTSS"],
            "gene_tss_lifted": hits["gene_tss_lifted"],
            "distance": hits["distance"],
            "abs_distance": hits["abs_distance"],
            "peak_gap": hits["peak_gap"],
            "element_distance": hits["element_distance"],
            "distanceToTSS": hits["distanceToTSS"],
            "Regulated": hits["Regulated"],
            "Significant": hits["Significant"],
            "source_file": hits["source_file"],
            "n_elements": hits["n_elements"],
        }
    )
    for col in KEPT_TEXT:
        out[col] = hits[col]
    out = out.rename(columns={"name": "element_name"})
    chrom_key = (
        out["chrom"]
        .str.removeprefix("chr")
        .map(lambda c: (0, int(c), "") if c.isdigit() else (1, 0, c))
    )
    out = out.assign(_chrom=chrom_key).sort_values(
        ["_chrom", "peak_start", "peak_end", "gene"], kind="mergesort"
    )
    return out.drop(columns="_chrom").reset_index(drop=True)


def summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs and positives per source file and Dataset, with totals."""
    by = pairs.groupby(["source_file", "Dataset"])["Regulated"].agg(pairs="size", positive="sum")
    total = pd.DataFrame(
        {"pairs": [len(pairs)], "positive": [int(pairs["Regulated"].sum())]},
        index=pd.MultiIndex.from_tuples([("all", "all")], names=by.index.names),
    )
    return pd.concat([by, total])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", type=Path, help="CRISPR_comparison: bare git dir or a checkout")
    parser.add_argument("--snare", type=Path, default=DEFAULT_SNARE, help="snare_hcellline dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="TSV to write")
    args = parser.parse_args(argv)

    crispr = load_crispr(args.repo)
    peaks, genes = load_snare(args.snare)
    pairs = map_pairs(crispr, peaks, genes)
    pairs.to_csv(args.out, sep="\t", index=False, lineterminator="\n")
    print(f"source commit: {source_commit(args.repo)}", file=sys.stderr)
    print(f"wrote {len(pairs)} pairs to {args.out}", file=sys.stderr)
    print(summary(pairs).to_string(), file=sys.stderr)


if __name__ == "__main__":
    main()
