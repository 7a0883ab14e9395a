"""Genomic coordinates: peak names, gene annotations and chromosome naming.

Everything here returns plain pandas frames with columns ``chrom, start, end`` (0-based,
half-open, like BED) so the prior and the link inference never see a user's format.

These functions are the one definition of three rules that the R package uses too (through
:mod:`factvae.r_bridge`, never a second implementation): how a peak name is read
(:func:`parse_peak_names`) and written (:func:`format_peak_names`), how gene annotations are
tidied (:func:`read_gene_annotation`) and how chromosome names are matched
(:func:`harmonise_chromosome_names`); the gene-to-peak rule is
``factvae.data.prior.gene_to_peak``. ``tests/python/data/test_cross_language.py`` holds both
languages to one output.
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

# CHROM SEP START SEP END; START and END are the last two fields, so a chromosome name may hold
# separators itself. ASCII digits only (``\d`` would take other scripts' digits too).
_PEAK_NAME = re.compile(r"^(?P<chrom>.+)[:_-](?P<start>[0-9]+)[_-](?P<end>[0-9]+)\Z")
_MAX_DIGITS = 15  # far beyond any chromosome, and exact in int64 and in R's doubles
_NAME_COLUMNS = ("gene_name", "name", "gene", "gene_id", "symbol")
_TRANSCRIPT_COLUMNS = ("tx_id", "transcript_id")
_STRANDS = {"+", "-", "."}


def _examples(names: pd.Index, bad: np.ndarray) -> str:
    return ", ".join(repr(str(n)) for n in names[bad][:3])


def peak_name_fields(names: pd.Index | list[str]) -> pd.DataFrame:
    """The three fields of each peak name as written: chrom and the two numbers (strings).

    Errors on names that do not have the form of :func:`parse_peak_names`.
    """
    names = pd.Index([str(n) for n in names], dtype=object)
    parts = names.str.extract(_PEAK_NAME)
    bad = parts["chrom"].isna().to_numpy()
    if bad.any():
        raise FactVAEInputError(
            f"{int(bad.sum())} of {len(names)} peak names do not parse as 'chr-start-end' "
            f"(e.g. {_examples(names, bad)}). Peak names are read as chr-start-end, "
            "chr:start-end or chr_start_end (1-based start, as Signac reads them). Name the "
            "peaks by their coordinates, or give their ranges: atac.var columns chrom, start "
            "and end in Python, a Signac ChromatinAssay in R."
        )
    too_long = (parts["start"].str.len() > _MAX_DIGITS) | (parts["end"].str.len() > _MAX_DIGITS)
    if too_long.any():
        raise FactVAEInputError(
            f"{int(too_long.sum())} of {len(names)} peak names have coordinates of more than "
            f"{_MAX_DIGITS} "
            f"digits (e.g. {_examples(names, too_long.to_numpy())}); fix their coordinates."
        )
    parts.index = names
    return parts


def parse_peak_names(names: pd.Index | list[str]) -> pd.DataFrame:
    """Peak coordinates read from peak names: the one rule, used by Python and by R.

    **Form.** ``CHROM SEP START SEP END``: the first separator is ``-``, ``:`` or ``_``, the
    second ``-`` or ``_``, so ``chr1-1000-1500``, ``chr1:1000-1500`` and ``chr1_1000_1500``
    (Seurat turns ``_`` into ``-`` in feature names) all name the same peak. START and END
    are the last two fields (ASCII digits), so a chromosome name may hold separators itself:
    ``chrUn-gl000220-1-5000-6000`` is on ``chrUn-gl000220-1``.

    **Reading** (Signac's, as ``StringToGRanges`` reads names): START and END are 1-based and
    inclusive. ``chr1-1000-1500`` covers the bases 1000 to 1500 (501 bp): a GRanges with
    start 1000 and end 1500 in R, and ``start=999, end=1500`` here (0-based, half-open, as in
    BED). ``END == START`` is a 1-bp peak; ``END < START`` is an error. A START of 0 (names
    written from BED coordinates can hold one at a chromosome's first base) is read as base
    1; END must be at least 1. :func:`format_peak_names` writes the inverse.

    Returns a frame with columns chrom, start, end (0-based, half-open) indexed by the names.
    """
    parts = peak_name_fields(names)
    names = parts.index
    first = parts["start"].astype(np.int64).to_numpy()
    last = parts["end"].astype(np.int64).to_numpy()
    inverted = last < first
    if inverted.any():
        raise FactVAEInputError(
            f"{int(inverted.sum())} of {len(names)} peak names have end < start (e.g. "
            f"{_examples(names, inverted)}); fix their coordinates."
        )
    empty = last < 1
    if empty.any():
        raise FactVAEInputError(
            f"{int(empty.sum())} of {len(names)} peak names end at 0 (e.g. "
            f"{_examples(names, empty)}); "
            "positions in peak names count from 1."
        )
    frame = pd.DataFrame(
        {
            "chrom": parts["chrom"].to_numpy(dtype=object),
            "start": np.maximum(first - 1, 0),
            "end": last,
        },
        index=names,
    )
    return check_intervals(frame, "peak")


def format_peak_names(chrom, start, end) -> pd.Index:
    """``chrom-start-end`` names of 0-based, half-open intervals: the inverse of
    :func:`parse_peak_names` (``chr1``, 999, 1500 gives ``chr1-1000-1500``).

    Used for peaks that come without a name (a BED file, an unnamed GRanges in R).
    """
    chrom = np.asarray(chrom, dtype=object).astype(str)
    first = np.asarray(start, dtype=np.int64) + 1
    last = np.asarray(end, dtype=np.int64)
    return pd.Index(
        [f"{c}-{s}-{e}" for c, s, e in zip(chrom, first, last)], dtype=object, name=None
    )


def normalise_peak_names(names: pd.Index | list[str]) -> pd.Index:
    """Names with their separators rewritten to ``-`` (as Seurat and Signac name features).

    ``chr1:1000-1500`` and ``chr1_1000_1500`` become ``chr1-1000-1500``: the numbers are kept
    as written, so the name reads as the same interval.
    """
    parts = peak_name_fields(names)
    return pd.Index(
        (parts["chrom"] + "-" + parts["start"] + "-" + parts["end"]).to_numpy(dtype=object),
        name=None,
    )


def peak_ranges(var: pd.DataFrame) -> pd.DataFrame:
    """Peak coordinates from ``var`` columns chrom/start/end when present, else from the names.

    Columns are coordinates as given (0-based start, half-open, as in BED) and win over the
    names; names are read by :func:`parse_peak_names`.
    """
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

    The one tidying rule (R's ``GeneToPeak`` uses it too): a row needs a chromosome, a gene
    name and ``0 <= start < end`` (0-based, half-open); the rows of one transcript (same gene
    name, ``tx_id`` or ``transcript_id``, chromosome and strand: the exons and UTRs of
    annotations such as Signac's) become the transcript's span; a gene listed several times
    keeps its longest span (the first of equal ones), so a gene spans its longest transcript.
    Genes come in the order of their first row.
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
            "The gene annotation has no usable rows (each needs a chromosome, a gene name and "
            "start < end). A BED file's columns are chrom, start, end, name, [score,] strand."
        )
    frame = _transcript_spans(frame.reset_index(drop=True))
    order = pd.unique(frame["gene_name"])
    frame = frame.assign(span=frame["end"] - frame["start"])
    frame = frame.sort_values("span", ascending=False, kind="stable")
    frame = frame.drop_duplicates("gene_name").set_index("gene_name").loc[order]
    return frame[["chrom", "start", "end", "strand"]]


def _transcript_spans(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per transcript (its first row, spanning the transcript's rows)."""
    if "tx_id" not in frame.columns:
        return frame
    key = [frame[c].astype(str) for c in ("gene_name", "tx_id", "chrom", "strand")]
    groups = frame.groupby(key, sort=False)
    first = groups.cumcount().to_numpy() == 0
    spans = frame.assign(start=groups["start"].transform("min"), end=groups["end"].transform("max"))
    return spans[first].drop(columns="tx_id")


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
    columns = {
        "chrom": frame[chrom].astype(str).to_numpy(),
        "start": pd.to_numeric(frame[start], errors="coerce").to_numpy(),
        "end": pd.to_numeric(frame[end], errors="coerce").to_numpy(),
        "gene_name": frame[name].astype(str).to_numpy(),
        "strand": np.asarray(strand if isinstance(strand, str) else strand.to_numpy()),
    }
    transcript = next((lower[c] for c in _TRANSCRIPT_COLUMNS if c in lower), None)
    if transcript is not None:
        columns["tx_id"] = frame[transcript].astype(str).to_numpy()
    return pd.DataFrame(columns)


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


def harmonise_chromosome_names(chroms, target) -> np.ndarray:
    """Chromosome names in the naming style of ``target`` (the peaks'): the one rule.

    Each name is spelled three ways: as given; with a ``chr`` prefix (a name that has one
    keeps it, ``MT`` becomes ``chrM``); without it (``chrM`` becomes ``MT``). The spelling
    under which the most of ``chroms`` (one per gene, so large chromosomes weigh more) are
    among ``target``'s names wins, a tie going to the earlier spelling, so names that match
    already are never renamed. When none matches, the names stay as given.
    """
    chroms = pd.Series(np.asarray(chroms, dtype=object).astype(str))
    wanted = set(np.asarray(target, dtype=object).astype(str))
    prefixed = chroms.str.startswith("chr")
    with_chr = chroms.where(prefixed, "chr" + chroms).where(chroms != "MT", "chrM")
    without_chr = chroms.str.replace(r"^chr", "", regex=True).where(chroms != "chrM", "MT")
    spellings = [chroms, with_chr, without_chr]
    matched = [int(s.isin(wanted).sum()) for s in spellings]
    return spellings[int(np.argmax(matched))].to_numpy(dtype=object)


def check_shared_chromosomes(chroms, target) -> None:
    """Error when no gene chromosome (already harmonised) is among the peaks' names."""
    chroms = pd.unique(np.asarray(chroms, dtype=object).astype(str))
    target = pd.unique(np.asarray(target, dtype=object).astype(str))
    if not np.isin(chroms, target).any():
        raise FactVAEInputError(
            "The gene annotation and the peaks share no chromosome: the annotation's chromosome "
            f"names (e.g. {', '.join(chroms[:3])}) match none of the peaks' (e.g. "
            f"{', '.join(target[:3])}), with or without a 'chr' prefix. Use an annotation of "
            "the same genome build as the peaks."
        )


def harmonise_chromosomes(genes: pd.DataFrame, peaks: pd.DataFrame) -> pd.DataFrame:
    """The genes with their chromosomes renamed to the peaks' style
    (:func:`harmonise_chromosome_names`)."""
    return genes.assign(chrom=harmonise_chromosome_names(genes["chrom"], peaks["chrom"]))


def tss(genes: pd.DataFrame) -> np.ndarray:
    """Transcription start site (0-based) of each gene, strand-aware."""
    minus = genes["strand"].astype(str).to_numpy() == "-"
    return np.where(minus, genes["end"].to_numpy() - 1, genes["start"].to_numpy()).astype(np.int64)
