"""The simulated genome: genes on a few chromosomes and peaks placed around them, one per slot,
so that the planted gene-peak links are known and no two peaks overlap."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from factvae.data.genomics import format_peak_names
from factvae.errors import FactVAEInputError

# Every peak sits alone in one slot of the genome, which makes overlaps impossible by construction.
_SLOT = 1100
_SLOT_PAD = 50  # at least 2 x 50 bp between neighbouring peaks
_PEAK_WIDTH = (200, 1000)
_GENE_LENGTH = (5_000, 60_000)
_UPSTREAM = 2_000
_DISTAL = (10_000, 140_000)
_LINK_WINDOW = 150_000
_CHROM_MARGIN = 200_000  # no gene window runs off a chromosome end
_MIN_MEAN_GAP = 250_000  # gene-to-gene gaps are 0.6-1.4 x this, so windows overlap little
_SLOTS_PER_PEAK = 10  # genome size: about one peak per 10 slots (11 kb)
_N_CHROMOSOMES = 5
_BACKGROUND_NO_PROGRAM = 0.4


@dataclass
class _Layout:
    genes: pd.DataFrame  # chrom, start, end, gene_name, strand (chromosome coordinates)
    chrom_names: list[str]
    chrom_offset: np.ndarray  # global start of each chromosome, multiples of _SLOT
    gene_offset: np.ndarray  # global start of each gene's chromosome
    n_slots: int


def gene_layout(rng: np.random.Generator, n_genes: int, n_peaks: int) -> _Layout:
    """Genes spread over ~5 chromosomes with wide gaps; the genome grows with ``n_peaks``."""
    n_chrom = min(_N_CHROMOSOMES, n_genes)
    per_chrom = 1 + rng.multinomial(n_genes - n_chrom, rng.dirichlet(np.full(n_chrom, 10.0)))
    chrom_of_gene = np.repeat(np.arange(n_chrom), per_chrom)
    low, high = np.log(_GENE_LENGTH[0]), np.log(_GENE_LENGTH[1])
    length = np.exp(rng.uniform(low, high, n_genes)).astype(np.int64)
    length = np.clip(length, *_GENE_LENGTH)
    wanted = _SLOTS_PER_PEAK * n_peaks * _SLOT - int(length.sum()) - 2 * n_chrom * _CHROM_MARGIN
    mean_gap = max(_MIN_MEAN_GAP, math.ceil(wanted / n_genes))
    gap = (mean_gap * rng.uniform(0.6, 1.4, n_genes)).astype(np.int64)
    strand = np.where(rng.random(n_genes) < 0.5, "+", "-")

    start = np.empty(n_genes, dtype=np.int64)
    chrom_length = np.empty(n_chrom, dtype=np.int64)
    first = 0
    for k, count in enumerate(per_chrom):
        idx = slice(first, first + count)
        steps = length[idx] + gap[idx]
        start[idx] = _CHROM_MARGIN + np.concatenate([[0], np.cumsum(steps[:-1])])
        last_end = start[first + count - 1] + length[first + count - 1]
        chrom_length[k] = math.ceil((last_end + _CHROM_MARGIN) / _SLOT) * _SLOT
        first += count
    chrom_offset = np.concatenate([[0], np.cumsum(chrom_length)[:-1]]).astype(np.int64)
    chrom_names = [f"chr{k + 1}" for k in range(n_chrom)]
    width = max(4, len(str(n_genes)))
    genes = pd.DataFrame(
        {
            "chrom": np.array(chrom_names, dtype=object)[chrom_of_gene],
            "start": start,
            "end": start + length,
            "gene_name": [f"gene{i + 1:0{width}d}" for i in range(n_genes)],
            "strand": strand,
        }
    )
    return _Layout(
        genes=genes,
        chrom_names=chrom_names,
        chrom_offset=chrom_offset,
        gene_offset=chrom_offset[chrom_of_gene],
        n_slots=int(chrom_length.sum() // _SLOT),
    )


def place_peaks(
    rng: np.random.Generator,
    layout: _Layout,
    gene_program: np.ndarray,
    n_peaks: int,
    peaks_per_gene: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Regulatory peaks around regulated genes, then background peaks in free intergenic slots.

    Returns the peaks in genome order (index ``chrN-start-end``) and, per peak, the index of the
    gene it regulates (-1 for background).
    """
    genes = layout.genes
    minus = genes["strand"].to_numpy() == "-"
    start = genes["start"].to_numpy() + layout.gene_offset
    end = genes["end"].to_numpy() + layout.gene_offset
    tss = np.where(minus, end - 1, start)
    locus_start = np.where(minus, start, start - _UPSTREAM)
    locus_end = np.where(minus, end + _UPSTREAM, end)
    n_proximal = math.ceil(peaks_per_gene / 2)
    n_distal = peaks_per_gene - n_proximal

    taken: dict[int, int] = {}  # slot -> regulated gene
    regulated = np.nonzero(gene_program >= 0)[0]
    # Proximal first: loci never overlap, so every gene finds free slots inside its own locus.
    for g in regulated:
        first = -(-int(locus_start[g]) // _SLOT)
        last = int(locus_end[g]) // _SLOT  # exclusive: slots wholly inside the locus
        for slot in rng.choice(np.arange(first, last), n_proximal, replace=False):
            taken[int(slot)] = int(g)
    for g in regulated:
        placed = 0
        while placed < n_distal:
            side = 1 if rng.random() < 0.5 else -1
            centre = int(tss[g]) + side * int(rng.integers(_DISTAL[0], _DISTAL[1] + 1))
            slot = centre // _SLOT
            inside_locus = slot * _SLOT < locus_end[g] and (slot + 1) * _SLOT > locus_start[g]
            if slot in taken or inside_locus:
                continue
            taken[slot] = int(g)
            placed += 1

    reg_slots = np.fromiter(taken.keys(), dtype=np.int64, count=len(taken))
    reg_genes = np.fromiter(taken.values(), dtype=np.int64, count=len(taken))
    n_background = n_peaks - len(reg_slots)
    # Background peaks stay outside every gene locus: a peak inside a locus is in the prior
    # (G2P), and the prior's premise is that such peaks regulate their gene.
    blocked = np.zeros(layout.n_slots, dtype=bool)
    for first, last in zip(locus_start // _SLOT, -(-locus_end // _SLOT)):
        blocked[first:last] = True
    blocked[reg_slots] = True
    free = np.nonzero(~blocked)[0]
    if len(free) < n_background:
        raise FactVAEInputError(
            f"n_peaks={n_peaks} leaves too little room outside the gene loci; use fewer peaks "
            "per gene or more n_peaks (the genome grows with n_peaks)."
        )
    candidates = rng.choice(free, n_background, replace=False)
    slots = np.concatenate([reg_slots, candidates])
    link_gene = np.concatenate([reg_genes, np.full(n_background, -1, dtype=np.int64)])
    order = np.argsort(slots, kind="stable")
    slots, link_gene = slots[order], link_gene[order]

    width = rng.integers(_PEAK_WIDTH[0], _PEAK_WIDTH[1] + 1, n_peaks)
    offset = rng.integers(_SLOT_PAD, _SLOT - _SLOT_PAD - width + 1)
    global_start = slots * _SLOT + offset
    chrom = np.searchsorted(layout.chrom_offset, global_start, side="right") - 1
    peak_start = global_start - layout.chrom_offset[chrom]
    peak_end = peak_start + width
    chrom_name = np.array(layout.chrom_names, dtype=object)[chrom]
    names = format_peak_names(chrom_name, peak_start, peak_end)  # read back exactly
    peaks = pd.DataFrame(
        {"chrom": chrom_name, "start": peak_start, "end": peak_end}, index=pd.Index(names)
    )
    return peaks, link_gene


def peak_programs(
    rng: np.random.Generator, link_gene: np.ndarray, gene_program: np.ndarray, n_types: int
) -> np.ndarray:
    """Regulatory peaks share their gene's program; background peaks get a random one or none."""
    random_program = rng.integers(0, n_types, len(link_gene))
    random_program[rng.random(len(link_gene)) < _BACKGROUND_NO_PROGRAM] = -1
    return np.where(link_gene >= 0, gene_program[np.maximum(link_gene, 0)], random_program)
