"""Genomic coordinates: peak names, gene annotations and chromosome naming.

Everything here returns plain pandas frames with columns ``chrom, start, end`` (0-based,
half-open, like BED) so the prior and the link inference never see a user's format.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from factvae.errors import FactVAEInputError

AnnotationLike = Union[pd.DataFrame, str, Path]

_PEAK_NAME = re.compile(r"^(?P<chrom>.+?)[:\-_](?P<start>\d+)[\-_](?P<end>\d+)$")
_NAME_COLUMNS = ("gene_name", "name", "gene", "gene_id", "symbol")
_STRANDS = {"+", "-", "."}


def parse_peak_names(names: pd.Index | list[str]) -> pd.DataFrame:
    """Parse ``chr-start-end`` / ``chr:start-end`` names (Seurat turns ``_`` into ``-``)."""
    names = pd.Index([str(n) for n in names])
    parts = names.str.extract(_PEAK_NAME)
    bad = parts["chrom"].isna()
    if bad.any():
        examples = ", ".join(repr(n) for n in names[bad.to_numpy()][:3])
        raise FactVAEInputError(
            f"{int(bad.sum())} peak names do not parse as 'chr-start-end' or 'chr:start-end' "
            f"(for example {examples}). Name peaks by their coordinates, or give atac.var the "
            "columns chrom, start and end."
        )
    frame = pd.DataFrame(
        {
            "chrom": parts["chrom"].to_numpy(),
            "start": parts["start"].astype(np.int64).to_numpy(),
            "end": parts["end"].astype(np.int64).to_numpy(),
        },
        index=names,
    )
    return check_intervals(frame, "peak")


def peak_ranges(var: pd.DataFrame) -> pd.DataFrame:
    """Peak coordinates from ``var`` columns chrom/start/end when present, else from the names."""
    columns = {c.lower(): c for c in var.columns}
    for chrom_key, start_key, end_key in (
        ("chrom", "start", "end"),
        ("chrom", "chromstart", "chromend"),
        ("seqnames", "start", "end"),
    ):
        if {chrom_key, start_key, end_key} <= set(columns):
            frame = pd.DataFrame(
                {
                    "chrom": var[columns[chrom_key]].astype(str).to_numpy(),
                    "start": _as_int(var[columns[start_key]], "peak start"),
                    "end": _as_int(var[columns[end_key]], "peak end"),
                },
                index=pd.Index(var.index.astype(str)),
            )
            return check_intervals(frame, "peak")
    return parse_peak_names(var.index)


def _as_int(values: pd.Series, what: str) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.isna().any():
        raise FactVAEInputError(f"Some {what} coordinates are not numbers; fix those rows.")
    return numeric.to_numpy().astype(np.int64)


def check_intervals(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """Reject negative starts and empty or inverted intervals, which no overlap can use."""
    bad = (frame["start"] < 0) | (frame["end"] <= frame["start"])
    if bad.any():
        example = frame.index[bad.to_numpy()][0]
        raise FactVAEInputError(
            f"{int(bad.sum())} {what} intervals have a negative start or end <= start "
            f"(for example {example!r}); fix their coordinates."
        )
    return frame


def read_gene_annotation(annotation: AnnotationLike) -> pd.DataFrame:
    """Genes as ``chrom, start, end, strand`` indexed by gene name, from a frame or a BED/GTF path.

    Duplicated names keep their longest span (the same rule as the shipped genes.bed).
    """
    if isinstance(annotation, (str, Path)):
        frame = _read_annotation_file(Path(annotation))
    elif isinstance(annotation, pd.DataFrame):
        frame = _normalise_annotation_frame(annotation)
    else:
        raise FactVAEInputError(
            "gene_annotation must be a pandas DataFrame (chrom, start, end, gene_name, strand) or "
            f"the path of a BED or GTF file, not {type(annotation).__name__}."
        )
    frame = frame.dropna(subset=["chrom", "start", "end", "gene_name"])
    frame = frame[frame["gene_name"].astype(str).str.len() > 0]
    frame = frame[(frame["start"] >= 0) & (frame["end"] > frame["start"])]
    if frame.empty:
        raise FactVAEInputError(
            "The gene annotation has no usable rows (each needs chrom, start < end and a gene "
            "name). Check the file's columns: BED is chrom, start, end, name, [score,] strand."
        )
    frame = frame.assign(span=frame["end"] - frame["start"])
    frame = frame.sort_values("span", ascending=False, kind="stable")
    frame = frame.drop_duplicates("gene_name").drop(columns="span")
    return frame.set_index("gene_name")[["chrom", "start", "end", "strand"]]


def _normalise_annotation_frame(frame: pd.DataFrame) -> pd.DataFrame:
    lower = {c.lower(): c for c in frame.columns}
    chrom = lower.get("chrom", lower.get("seqnames", lower.get("chromosome")))
    start, end = lower.get("start"), lower.get("end")
    name = next((lower[c] for c in _NAME_COLUMNS if c in lower), None)
    if name is None and frame.index.dtype == object and not frame.index.isna().all():
        frame = frame.assign(gene_name=frame.index.astype(str))
        name = "gene_name"
    if chrom is None or start is None or end is None or name is None:
        raise FactVAEInputError(
            "The gene annotation frame needs columns chrom, start, end and gene_name (strand "
            f"optional); it has {list(frame.columns)}."
        )
    strand = frame[lower["strand"]].astype(str) if "strand" in lower else "+"
    return pd.DataFrame(
        {
            "chrom": frame[chrom].astype(str).to_numpy(),
            "start": pd.to_numeric(frame[start], errors="coerce").to_numpy(),
            "end": pd.to_numeric(frame[end], errors="coerce").to_numpy(),
            "gene_name": frame[name].astype(str).to_numpy(),
            "strand": np.asarray(strand if isinstance(strand, str) else strand.to_numpy()),
        }
    )


def _read_annotation_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FactVAEInputError(f"Gene annotation file {str(path)!r} does not exist.")
    suffixes = "".join(path.suffixes).lower()
    if ".gtf" in suffixes or ".gff" in suffixes:
        return _read_gtf(path)
    table = pd.read_csv(path, sep="\t", header=None, comment="#", dtype=str)
    if table.shape[1] < 4:
        raise FactVAEInputError(
            f"{path} has {table.shape[1]} columns; a BED gene annotation needs at least chrom, "
            "start, end and name."
        )
    strand_column = next((c for c in table.columns[4:] if table[c].isin(_STRANDS).all()), None)
    return pd.DataFrame(
        {
            "chrom": table[0],
            "start": pd.to_numeric(table[1], errors="coerce"),
            "end": pd.to_numeric(table[2], errors="coerce"),
            "gene_name": table[3],
            "strand": table[strand_column] if strand_column is not None else "+",
        }
    )


def _read_gtf(path: Path) -> pd.DataFrame:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9 or fields[2] != "gene":
                continue
            match = re.search(r'gene_name "([^"]+)"', fields[8]) or re.search(
                r'gene_id "([^"]+)"', fields[8]
            )
            if match is None:
                continue
            # GTF is 1-based inclusive; BED-style start is 0-based.
            rows.append((fields[0], int(fields[3]) - 1, int(fields[4]), match.group(1), fields[6]))
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "gene_name", "strand"])


def _chrom_style(chroms: pd.Series) -> bool:
    """True when most names carry the ``chr`` prefix."""
    unique = pd.Series(pd.unique(chroms.astype(str)))
    return bool(unique.str.startswith("chr").mean() >= 0.5) if len(unique) else True


def harmonise_chromosomes(genes: pd.DataFrame, peaks: pd.DataFrame) -> pd.DataFrame:
    """Rename the genes' chromosomes to the peaks' style (``chr1`` vs ``1``, ``chrM`` vs ``MT``)."""
    peak_prefixed = _chrom_style(peaks["chrom"])
    gene_prefixed = _chrom_style(genes["chrom"])
    if peak_prefixed == gene_prefixed:
        return genes
    chrom = genes["chrom"].astype(str)
    if peak_prefixed:
        chrom = ("chr" + chrom).replace({"chrMT": "chrM"})
    else:
        chrom = chrom.str.replace(r"^chr", "", regex=True).replace({"M": "MT"})
    return genes.assign(chrom=chrom.to_numpy())


def tss(genes: pd.DataFrame) -> np.ndarray:
    """Transcription start site (0-based) of each gene, strand-aware."""
    minus = genes["strand"].astype(str).to_numpy() == "-"
    return np.where(minus, genes["end"].to_numpy() - 1, genes["start"].to_numpy()).astype(np.int64)
