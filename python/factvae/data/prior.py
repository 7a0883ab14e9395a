"""The gene-to-peak prior (G2P, paper Eq. 8-9): which gene loci overlap which peaks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyranges as pr
import scipy.sparse as sp

from factvae.data.genomics import (
    AnnotationLike,
    check_shared_chromosomes,
    format_peak_names,
    harmonise_chromosomes,
    peak_ranges,
    read_gene_annotation,
)
from factvae.errors import FactVAEInputError


@dataclass(frozen=True)
class GeneToPeak:
    """A genes x peaks 0/1 sparse matrix with its row and column names."""

    matrix: sp.csr_matrix
    genes: pd.Index
    peaks: pd.Index

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def pairs(self) -> pd.DataFrame:
        """The linked (gene, peak) pairs as a two-column frame."""
        coo = self.matrix.tocoo()
        return pd.DataFrame({"gene": self.genes[coo.row], "peak": self.peaks[coo.col]})

    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        """The linked pairs as (gene row, peak column) positions, what the network ties."""
        coo = self.matrix.tocoo()
        return coo.row, coo.col

    def subset(self, genes: pd.Index, peaks: pd.Index) -> GeneToPeak:
        """Reorder to the model's genes and peaks; features absent from the prior get no pairs."""
        rows = self.genes.get_indexer(genes)
        cols = self.peaks.get_indexer(peaks)
        coo = self.matrix.tocoo()
        row_map = np.full(len(self.genes), -1)
        row_map[rows[rows >= 0]] = np.nonzero(rows >= 0)[0]
        col_map = np.full(len(self.peaks), -1)
        col_map[cols[cols >= 0]] = np.nonzero(cols >= 0)[0]
        new_rows, new_cols = row_map[coo.row], col_map[coo.col]
        keep = (new_rows >= 0) & (new_cols >= 0)
        matrix = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32), (new_rows[keep], new_cols[keep])),
            shape=(len(genes), len(peaks)),
        )
        return GeneToPeak(matrix, pd.Index(genes), pd.Index(peaks))


def gene_loci(genes: pd.DataFrame, upstream: int = 2000) -> pd.DataFrame:
    """Gene body extended ``upstream`` bp before the TSS, on the gene's own strand.

    0-based, half-open: ``[start - upstream, end)`` on ``+`` (and any strand but ``-``), the
    start clamped at 0; ``[start, end + upstream)`` on ``-``.
    """
    minus = genes["strand"].astype(str).to_numpy() == "-"
    start = genes["start"].to_numpy().astype(np.int64)
    end = genes["end"].to_numpy().astype(np.int64)
    start = np.where(minus, start, np.maximum(start - upstream, 0))
    end = np.where(minus, end + upstream, end)
    return genes.assign(start=start, end=end)


def gene_to_peak(
    genes: AnnotationLike, peaks: pd.DataFrame | AnnotationLike, upstream: int = 2000
) -> GeneToPeak:
    """Build G2P from coordinates: 1 where a gene locus (body + ``upstream`` bp) overlaps a peak.

    The one G2P rule (R's ``GeneToPeak`` and ``RunFactVAE`` call it through
    :mod:`factvae.r_bridge`): genes are tidied by ``read_gene_annotation`` and their
    chromosomes renamed to the peaks' style by ``harmonise_chromosome_names`` (both in
    :mod:`factvae.data.genomics`); each gene's locus is :func:`gene_loci`, its body plus
    ``upstream`` bp before the TSS, strand-aware; a gene and a peak are linked when locus and
    peak share at least one base. All intervals are 0-based and half-open, so a peak ending
    where a locus starts does not touch it; a peak named ``chr1-1000-1500`` is the bases
    1000..1500, i.e. ``[999, 1500)`` (``parse_peak_names``).

    ``genes`` is a frame (chrom, start, end, gene_name, strand) or a BED/GTF path; ``peaks`` is a
    frame with chrom/start/end indexed by peak name (or named peaks without those columns), or
    a BED path (its peaks named by ``format_peak_names``).
    """
    if upstream < 0:
        raise FactVAEInputError(f"upstream must be >= 0 bp, got {upstream}.")
    gene_frame = read_gene_annotation(genes)
    peak_frame = _peak_frame(peaks)
    gene_frame = harmonise_chromosomes(gene_frame, peak_frame)
    check_shared_chromosomes(gene_frame["chrom"], peak_frame["chrom"])
    loci = gene_loci(gene_frame, upstream)
    left = _ranges(loci, "gene_idx")
    right = _ranges(peak_frame, "peak_idx")
    joined = left.join(right).df
    rows = joined["gene_idx"].to_numpy() if len(joined) else np.array([], dtype=int)
    cols = joined["peak_idx"].to_numpy() if len(joined) else np.array([], dtype=int)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(gene_frame), len(peak_frame)),
    )
    matrix.data[:] = 1.0  # duplicates (if any) collapse to a single 1
    return GeneToPeak(matrix, pd.Index(gene_frame.index), pd.Index(peak_frame.index))


def _ranges(frame: pd.DataFrame, position: str) -> pr.PyRanges:
    """``frame``'s chrom/start/end as PyRanges, each row carrying its position as ``position``."""
    return pr.PyRanges(
        pd.DataFrame(
            {
                "Chromosome": frame["chrom"].to_numpy(),
                "Start": frame["start"].to_numpy(),
                "End": frame["end"].to_numpy(),
                position: np.arange(len(frame)),
            }
        )
    )


def _peak_frame(peaks: pd.DataFrame | AnnotationLike) -> pd.DataFrame:
    if isinstance(peaks, pd.DataFrame):
        return peak_ranges(peaks)
    table = pd.read_csv(peaks, sep="\t", header=None, comment="#", usecols=[0, 1, 2])
    table.columns = ["chrom", "start", "end"]
    table.index = format_peak_names(table["chrom"], table["start"], table["end"])
    return peak_ranges(table)


def coerce_g2p(g2p: object, genes: pd.Index, peaks: pd.Index) -> GeneToPeak:
    """Accept a GeneToPeak, a genes x peaks matrix in model order, or a (gene, peak) pair frame."""
    if isinstance(g2p, GeneToPeak):
        return g2p.subset(genes, peaks)
    if isinstance(g2p, pd.DataFrame):
        if not {"gene", "peak"} <= set(g2p.columns):
            raise FactVAEInputError(
                "A G2P DataFrame needs columns 'gene' and 'peak' (one row per linked pair); it has "
                f"{list(g2p.columns)}."
            )
        rows = genes.get_indexer(g2p["gene"].astype(str))
        cols = peaks.get_indexer(g2p["peak"].astype(str))
        keep = (rows >= 0) & (cols >= 0)
        matrix = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
            shape=(len(genes), len(peaks)),
        )
        matrix.data[:] = 1.0
        return GeneToPeak(matrix, genes, peaks)
    if sp.issparse(g2p) or isinstance(g2p, np.ndarray):
        matrix = sp.csr_matrix(g2p, dtype=np.float32)
        if matrix.shape != (len(genes), len(peaks)):
            raise FactVAEInputError(
                f"The G2P matrix has shape {matrix.shape} but the model has {len(genes)} genes "
                f"and {len(peaks)} peaks; give a genes x peaks matrix in the model's feature order "
                "or a DataFrame of (gene, peak) pairs."
            )
        matrix.eliminate_zeros()
        matrix.data[:] = 1.0
        return GeneToPeak(matrix, genes, peaks)
    raise FactVAEInputError(
        "g2p must be a GeneToPeak, a scipy.sparse/numpy genes x peaks matrix or a DataFrame of "
        f"(gene, peak) pairs, not {type(g2p).__name__}."
    )
