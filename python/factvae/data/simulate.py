"""Simulated multiome data with planted cell types and gene-peak links.

Tests and benchmarks need data whose answer is known: cells of a few types, genes and peaks that
follow a type-specific "program", and regulatory peaks placed around the genes they regulate so a
model's gene-peak links can be scored against ``SimulatedMultiome.links``.

Counts are sampled sparse (never as a dense cells x features array) so the same function serves
benchmarks at 100,000 cells x 200,000 peaks.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from factvae.data.genomics import format_peak_names
from factvae.errors import FactVAEInputError

__all__ = ["PRESETS", "SimulatedMultiome", "simulate", "simulate_preset"]

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
_HOUSEKEEPING = 0.3
_BACKGROUND_NO_PROGRAM = 0.4
_LOG_FOLD = (1.5, 2.5)
_MAX_PEAKS_PER_GENE = 10  # half of them must fit inside the shortest gene body + promoter
_RNA_LOG_BASE_SD = 1.5
_RNA_DISPERSION = 0.5
_TRANSCRIPTOME_GENES = 15000  # rna_depth is spread over at least this many expressed genes
_RNA_DEPTH_SD = 0.35
_ATAC_DEPTH_SD = 0.4
_ATAC_ACCESS_SD = 0.6
_ATAC_EXTRA_COUNT = 0.15  # chance that a non-zero ATAC entry is one fragment higher
_ACTIVITY_SD = 0.2
_BATCH_SHIFTED = 0.2  # share of genes and of peaks whose log rate each batch shifts
_CHUNK_ENTRIES = 1_000_000  # dense RNA entries / ATAC draws handled at once


@dataclass
class SimulatedMultiome:
    """Paired RNA and ATAC counts with the truth they were drawn from.

    ``rna.var`` and ``atac.var`` carry a ``program`` column (a cell type, or ``"none"``) and
    ``links`` lists the planted regulatory (gene, peak) pairs.
    """

    rna: anndata.AnnData
    atac: anndata.AnnData
    genes: pd.DataFrame
    links: pd.DataFrame


def simulate(
    n_cells: int = 800,
    n_genes: int = 500,
    n_peaks: int = 5000,
    n_cell_types: int = 4,
    atac_density: float = 0.03,
    rna_depth: int = 2000,
    peaks_per_gene: int = 4,
    seed: int = 0,
    *,
    n_batches: int = 1,
    batch_depth_sd: float = 0.15,
    batch_shift_sd: float = 0.0,
    log_fold: tuple[float, float] = _LOG_FOLD,
    rna_rate_sd: float = _RNA_LOG_BASE_SD,
    atac_access_sd: float = _ATAC_ACCESS_SD,
    depth_sd: tuple[float, float] = (_RNA_DEPTH_SD, _ATAC_DEPTH_SD),
) -> SimulatedMultiome:
    """Simulate a multiome data set with planted cell types, programs and gene-peak links.

    About 30% of genes are housekeeping; every other gene belongs to one cell type's program, is
    expressed 1.5-2.5 log-units higher there and gets ``peaks_per_gene`` linked peaks (half in the
    gene body or 2 kb promoter, half 10-140 kb from the TSS) that are more accessible in the same
    type. The remaining peaks are background with a random program or none. A per-cell program
    activity scales both modalities, so linked genes and peaks co-vary within a type too.
    ``atac_density`` is the expected fraction of non-zero ATAC entries. ``rna_depth`` is the mean
    library size over a whole transcriptome of at least 15,000 expressed genes, of which the
    ``n_genes`` simulated ones get their share (about 140 counts per cell at the defaults), so
    RNA sparsity is realistic (~85-90% zeros) whatever ``n_genes``. The same ``seed`` gives
    identical output.

    The keyword-only knobs shape the data like a harder real set: ``n_batches`` sequencing
    libraries (``obs['batch']``) whose depths differ by a log-normal factor of sd
    ``batch_depth_sd`` in each modality, and (``batch_shift_sd`` > 0) whose log rates of a
    random 20% of genes and, separately, of peaks are shifted by draws of sd
    ``batch_shift_sd`` (each batch its own subset and shifts; the truth is in
    ``rna.varm["batch_shift"]`` and ``atac.varm["batch_shift"]``, features x batches);
    ``log_fold``, the range of a program's log-fold
    change (smaller is harder to cluster); ``rna_rate_sd``, the spread of the genes' log rates
    (larger gives a few very highly expressed genes and heavy counts); ``atac_access_sd``, the
    spread of the peaks' log accessibility (larger gives many rare peaks); ``depth_sd``, the
    sd of the cells' log depth in RNA and in ATAC. Their defaults give
    the same output as before they existed; :func:`simulate_preset` names tuned combinations.

    The genome is compressed (a peak every ~11 kb) and a TSS gets no peak of its own, so the
    TSS enrichment of real ATAC data is missing: from about 20,000 peaks (the ``real_scale``
    preset) ``FactVAE``'s genome build check would flag it; pass ``check_build=False`` there.
    """
    _check_arguments(
        n_cells, n_genes, n_peaks, n_cell_types, atac_density, rna_depth, peaks_per_gene, seed
    )
    _check_shape_knobs(n_batches, batch_depth_sd, log_fold, rna_rate_sd, atac_access_sd, depth_sd)
    if (
        isinstance(batch_shift_sd, bool)
        or not isinstance(batch_shift_sd, numbers.Real)
        or not batch_shift_sd >= 0
    ):
        raise FactVAEInputError(f"batch_shift_sd must be a number >= 0, got {batch_shift_sd!r}.")
    rng = np.random.default_rng(seed)
    type_names = [f"type{i + 1}" for i in range(n_cell_types)]

    cell_type = _cell_types(rng, n_cells, n_cell_types)
    activity = np.exp(rng.normal(0.0, _ACTIVITY_SD, n_cells))
    batch, rna_depth_factor, atac_depth_factor = _batches(seed, n_cells, n_batches, batch_depth_sd)
    gene_program = _gene_programs(rng, n_genes, n_cell_types)
    n_regulated = int((gene_program >= 0).sum())
    if n_peaks < n_regulated * peaks_per_gene:
        raise FactVAEInputError(
            f"n_peaks ({n_peaks}) is smaller than the {n_regulated * peaks_per_gene} regulatory "
            f"peaks needed ({n_regulated} regulated genes x peaks_per_gene={peaks_per_gene}); "
            "raise n_peaks or lower peaks_per_gene or n_genes."
        )

    rna_shift, atac_shift = _batch_shifts(seed, n_batches, n_genes, n_peaks, batch_shift_sd)
    layout = _gene_layout(rng, n_genes, n_peaks)
    peaks, link_gene = _place_peaks(rng, layout, gene_program, n_peaks, peaks_per_gene)
    peak_program = _peak_programs(rng, link_gene, gene_program, n_cell_types)

    cell_names = pd.Index([f"cell{i + 1:0{max(5, len(str(n_cells)))}d}" for i in range(n_cells)])
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(cell_type, categories=type_names)},
        index=cell_names,
    )
    if n_batches > 1:
        batch_names = [f"batch{i + 1}" for i in range(n_batches)]
        obs["batch"] = pd.Categorical.from_codes(batch, categories=batch_names)
    # Program -1 (housekeeping / background) indexes the trailing "none".
    program_labels = np.array([*type_names, "none"], dtype=object)

    rna_x = _rna_counts(
        rng, cell_type, activity, gene_program, rna_depth * rna_depth_factor, log_fold,
        rna_rate_sd, depth_sd[0], batch, rna_shift,
    )  # fmt: skip
    genes = layout.genes
    rna_var = pd.DataFrame(
        {"program": pd.Categorical(program_labels[gene_program], [*type_names, "none"])},
        index=pd.Index(genes["gene_name"].to_numpy(), name=None),
    )
    atac_x = _atac_counts(
        rng, cell_type, activity, peak_program, n_cell_types, atac_density * atac_depth_factor,
        log_fold, atac_access_sd, depth_sd[1], batch, atac_shift,
    )  # fmt: skip
    atac_var = pd.DataFrame(
        {
            "chrom": peaks["chrom"].to_numpy(),
            "start": peaks["start"].to_numpy(),
            "end": peaks["end"].to_numpy(),
            "program": pd.Categorical(program_labels[peak_program], [*type_names, "none"]),
        },
        index=pd.Index(peaks.index.to_numpy(), name=None),
    )
    has_link = link_gene >= 0
    links = pd.DataFrame(
        {
            "gene": genes["gene_name"].to_numpy()[link_gene[has_link]],
            "peak": peaks.index.to_numpy()[has_link],
        }
    )
    links = (
        links.assign(_g=link_gene[has_link], _p=np.nonzero(has_link)[0])
        .sort_values(["_g", "_p"], kind="stable")
        .drop(columns=["_g", "_p"])
        .reset_index(drop=True)
    )
    rna = anndata.AnnData(X=rna_x, obs=obs.copy(), var=rna_var)
    atac = anndata.AnnData(X=atac_x, obs=obs.copy(), var=atac_var)
    if rna_shift is not None and atac_shift is not None:
        rna.varm["batch_shift"] = rna_shift.T.copy()
        atac.varm["batch_shift"] = atac_shift.T.copy()
    return SimulatedMultiome(rna=rna, atac=atac, genes=genes.reset_index(drop=True), links=links)


# --- arguments -----------------------------------------------------------------------------------


def _check_arguments(
    n_cells: int,
    n_genes: int,
    n_peaks: int,
    n_cell_types: int,
    atac_density: float,
    rna_depth: int,
    peaks_per_gene: int,
    seed: int,
) -> None:
    """Fail early with the parameter's name, instead of deep inside numpy."""
    for name, value, minimum in (
        ("n_cells", n_cells, 1),
        ("n_genes", n_genes, 1),
        ("n_peaks", n_peaks, 1),
        ("n_cell_types", n_cell_types, 1),
        ("rna_depth", rna_depth, 1),
        ("peaks_per_gene", peaks_per_gene, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise FactVAEInputError(f"{name} must be an integer, got {value!r}.")
        if value < minimum:
            raise FactVAEInputError(f"{name} must be >= {minimum}, got {value}.")
    if (
        isinstance(atac_density, bool)
        or not isinstance(atac_density, numbers.Real)
        or not 0.0 < float(atac_density) < 1.0
    ):
        raise FactVAEInputError(
            f"atac_density must be a number strictly between 0 and 1 (the expected fraction of "
            f"non-zero ATAC entries, e.g. 0.03), got {atac_density!r}."
        )
    if n_cells < n_cell_types:
        raise FactVAEInputError(
            f"n_cells ({n_cells}) must be >= n_cell_types ({n_cell_types}) so that every type "
            "has a cell."
        )
    if peaks_per_gene > _MAX_PEAKS_PER_GENE:
        raise FactVAEInputError(
            f"peaks_per_gene must be <= {_MAX_PEAKS_PER_GENE} (half of a gene's peaks must fit "
            f"inside its body and promoter, which can be 7 kb), got {peaks_per_gene}."
        )


def _check_shape_knobs(
    n_batches: int,
    batch_depth_sd: float,
    log_fold: tuple[float, float],
    rna_rate_sd: float,
    atac_access_sd: float,
    depth_sd: tuple[float, float],
) -> None:
    if isinstance(n_batches, bool) or not isinstance(n_batches, numbers.Integral) or n_batches < 1:
        raise FactVAEInputError(f"n_batches must be an integer >= 1, got {n_batches!r}.")
    for name, value in (("batch_depth_sd", batch_depth_sd), ("rna_rate_sd", rna_rate_sd),
                        ("atac_access_sd", atac_access_sd), ("depth_sd[0]", depth_sd[0]),
                        ("depth_sd[1]", depth_sd[1])):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise FactVAEInputError(f"{name} must be a number >= 0, got {value!r}.")
    if len(log_fold) != 2 or not 0 <= log_fold[0] <= log_fold[1]:
        raise FactVAEInputError(
            f"log_fold must be a (low, high) range with 0 <= low <= high, got {log_fold!r}."
        )


# --- truth: cell types, batches, programs, genome -------------------------------------------


def _cell_types(rng: np.random.Generator, n_cells: int, n_types: int) -> np.ndarray:
    """Unequal type sizes (Dirichlet proportions), at least one cell each, in random order."""
    proportions = rng.dirichlet(np.full(n_types, 4.0))
    sizes = 1 + rng.multinomial(n_cells - n_types, proportions)
    return rng.permutation(np.repeat(np.arange(n_types), sizes))


def _batches(
    seed: int, n_cells: int, n_batches: int, depth_sd: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cell's library and its RNA and ATAC depth factors (all 1 for one library).

    Drawn from their own stream, so adding libraries leaves every other draw of a seed as is.
    """
    ones = np.ones(n_cells)
    if n_batches == 1:
        return np.zeros(n_cells, dtype=np.int64), ones, ones
    rng = np.random.default_rng([seed, 1])
    batch = rng.choice(n_batches, n_cells, p=rng.dirichlet(np.full(n_batches, 200.0)))
    rna_factor, atac_factor = np.exp(rng.normal(0.0, depth_sd, (2, n_batches)))
    return batch, rna_factor[batch], atac_factor[batch]


def _batch_shifts(
    seed: int, n_batches: int, n_genes: int, n_peaks: int, shift_sd: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per batch, shifts of the log rates of a random ``_BATCH_SHIFTED`` share of genes and
    of peaks (batches x features, zero elsewhere); None when ``shift_sd`` is 0.

    Drawn from a stream of their own, so every other draw of a seed stays as it is.
    """
    if shift_sd == 0:
        return None, None
    rng = np.random.default_rng([seed, 2])
    shifts = []
    for n_features in (n_genes, n_peaks):
        shift = np.zeros((n_batches, n_features))
        n_shifted = max(1, round(_BATCH_SHIFTED * n_features))
        for b in range(n_batches):
            chosen = rng.choice(n_features, n_shifted, replace=False)
            shift[b, chosen] = rng.normal(0.0, shift_sd, n_shifted)
        shifts.append(shift)
    return shifts[0], shifts[1]


def _gene_programs(rng: np.random.Generator, n_genes: int, n_types: int) -> np.ndarray:
    """Program (cell type index, -1 for housekeeping) of each gene; programs get equal shares."""
    n_housekeeping = round(_HOUSEKEEPING * n_genes) if n_genes > 1 else 0
    n_regulated = n_genes - n_housekeeping
    programs = np.concatenate(
        [np.arange(n_regulated) % n_types, np.full(n_housekeeping, -1)]
    ).astype(np.int64)
    return rng.permutation(programs)


@dataclass
class _Layout:
    genes: pd.DataFrame  # chrom, start, end, gene_name, strand (chromosome coordinates)
    chrom_names: list[str]
    chrom_offset: np.ndarray  # global start of each chromosome, multiples of _SLOT
    gene_offset: np.ndarray  # global start of each gene's chromosome
    n_slots: int


def _gene_layout(rng: np.random.Generator, n_genes: int, n_peaks: int) -> _Layout:
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


def _place_peaks(
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


def _peak_programs(
    rng: np.random.Generator, link_gene: np.ndarray, gene_program: np.ndarray, n_types: int
) -> np.ndarray:
    """Regulatory peaks share their gene's program; background peaks get a random one or none."""
    random_program = rng.integers(0, n_types, len(link_gene))
    random_program[rng.random(len(link_gene)) < _BACKGROUND_NO_PROGRAM] = -1
    return np.where(link_gene >= 0, gene_program[np.maximum(link_gene, 0)], random_program)


# --- counts ------------------------------------------------------------------------------------


def _rna_counts(
    rng: np.random.Generator,
    cell_type: np.ndarray,
    activity: np.ndarray,
    gene_program: np.ndarray,
    rna_depth: np.ndarray,
    log_fold_range: tuple[float, float],
    rate_sd: float,
    depth_sd: float,
    batch: np.ndarray,
    shift: np.ndarray | None,
) -> sp.csr_matrix:
    """Gamma-Poisson (negative binomial) counts, drawn in chunks of cells to bound memory.

    ``rna_depth`` is each cell's mean library size over its whole transcriptome; the simulated genes
    are a sample of at least ``_TRANSCRIPTOME_GENES`` expressed genes, so per-gene means (and the
    ~85-90% zeros of droplet data) do not depend on ``n_genes``. Gene rates are log-normal.
    """
    n_cells, n_genes = len(cell_type), len(gene_program)
    log_base = rng.normal(0.0, rate_sd, n_genes)
    log_base -= log_base.max()
    # Weight of the unsimulated rest of the transcriptome, which programs do not change.
    rest = np.exp(log_base).sum() * (max(n_genes, _TRANSCRIPTOME_GENES) / n_genes - 1.0)
    log_fold = np.where(gene_program >= 0, rng.uniform(*log_fold_range, n_genes), 0.0)
    depth = rna_depth * np.exp(rng.normal(-0.5 * depth_sd**2, depth_sd, n_cells))
    shape = 1.0 / _RNA_DISPERSION
    chunk = max(1, _CHUNK_ENTRIES // n_genes)
    blocks = []
    for first in range(0, n_cells, chunk):
        rows = slice(first, min(first + chunk, n_cells))
        in_program = gene_program[None, :] == cell_type[rows, None]
        rate = np.exp(log_base + in_program * (log_fold * activity[rows, None]))
        if shift is not None:  # the cells' batches shift some genes' log rates
            rate *= np.exp(shift[batch[rows]])
        rate *= (depth[rows] / (rate.sum(axis=1) + rest))[:, None]
        counts = rng.poisson(rng.gamma(shape, rate / shape))
        blocks.append(sp.csr_matrix(counts.astype(np.float32)))
    return _as_csr(sp.vstack(blocks, format="csr"))


def _atac_counts(
    rng: np.random.Generator,
    cell_type: np.ndarray,
    activity: np.ndarray,
    peak_program: np.ndarray,
    n_types: int,
    density: np.ndarray,
    log_fold_range: tuple[float, float],
    access_sd: float,
    depth_sd: float,
    batch: np.ndarray,
    shift: np.ndarray | None,
) -> sp.csr_matrix:
    """Sparse ATAC counts sampled as fragments, in O(non-zeros) memory.

    Each cell draws fragments from a mixture of a background profile (every peak, base
    accessibility) and its type's program profile (the type's peaks, 1.5-2.5 log-fold extra);
    its activity sets the mixture weight. The number of fragments is calibrated so the expected
    number of distinct peaks hit is ``density`` x peaks, scaled by a per-cell depth factor.
    Fragments that land in the same peak add up, and a few entries get one extra count.
    With batch ``shift``s (batches x peaks) each batch draws from its own profiles, the base
    accessibility times ``exp(shift)``; without, every cell shares one group of profiles.
    """
    n_cells, n_peaks = len(cell_type), len(peak_program)
    base = np.exp(rng.normal(0.0, access_sd, n_peaks))
    extra = np.where(peak_program >= 0, np.expm1(rng.uniform(*log_fold_range, n_peaks)), 0.0)
    if shift is None:
        group, bases = np.zeros(n_cells, dtype=np.int64), [base]
    else:
        group, bases = batch, [base * np.exp(row) for row in shift]
    background = [_Sampler(b) for b in bases]
    programs = [[_Sampler(b * extra * (peak_program == t)) for t in range(n_types)] for b in bases]
    program_mass = np.array([[sampler.total for sampler in row] for row in programs])
    background_mass = np.array([sampler.total for sampler in background])

    scale = np.exp(rng.normal(-0.5 * depth_sd**2, depth_sd, n_cells))
    target = rng.binomial(n_peaks, np.clip(density * scale, 0.0, 0.95))
    program_weight = program_mass[group, cell_type] * activity
    mix = program_weight / (program_weight + background_mass[group])
    n_draws = np.zeros(n_cells, dtype=np.int64)
    for t in range(n_types):
        for g, b in enumerate(bases):
            cells = np.nonzero((cell_type == t) & (group == g))[0]
            profile = (b + b * extra * (peak_program == t)) / (
                background_mass[g] + program_mass[g, t]
            )
            n_draws[cells] = _draws_for_distinct(profile, target[cells], rng)

    # Draws bound the non-zeros from above, so the output is allocated once, never grown.
    total_draws = int(n_draws.sum())
    index_dtype = np.int32 if max(total_draws, n_peaks) < 2**31 else np.int64
    indices = np.empty(total_draws, dtype=index_dtype)
    values = np.empty(total_draws, dtype=np.float32)
    indptr = np.zeros(n_cells + 1, dtype=index_dtype)
    cumulative_draws = np.cumsum(n_draws)
    nnz = 0
    first = 0
    while first < n_cells:
        done = cumulative_draws[first - 1] if first else 0
        last = int(np.searchsorted(cumulative_draws, done + _CHUNK_ENTRIES, side="right"))
        last = min(max(last, first + 1), n_cells)
        cells = np.arange(first, last)
        draws = n_draws[cells]
        owner = np.repeat(cells - first, draws)
        from_program = rng.random(len(owner)) < np.repeat(mix[cells], draws)
        draw_type = np.repeat(cell_type[cells], draws)
        draw_group = np.repeat(group[cells], draws)
        column = np.empty(len(owner), dtype=np.int64)
        for g in range(len(bases)):
            pick = ~from_program & (draw_group == g)
            column[pick] = background[g].draw(rng, int(pick.sum()))
        for g in range(len(bases)):
            for t in range(n_types):
                pick = from_program & (draw_type == t) & (draw_group == g)
                column[pick] = programs[g][t].draw(rng, int(pick.sum()))
        keys, multiplicity = np.unique(owner * n_peaks + column, return_counts=True)
        count = len(keys)
        indices[nnz : nnz + count] = keys % n_peaks
        bonus = rng.random(count) < _ATAC_EXTRA_COUNT
        values[nnz : nnz + count] = multiplicity + bonus
        indptr[first + 1 : last + 1] = np.bincount(keys // n_peaks, minlength=last - first)
        nnz += count
        first = last
    np.cumsum(indptr, out=indptr)
    matrix = sp.csr_matrix(
        (values[:nnz], indices[:nnz], indptr), shape=(n_cells, n_peaks), copy=False
    )
    matrix.has_sorted_indices = True
    return matrix


class _Sampler:
    """Draws indices with probability proportional to non-negative weights, fast.

    Inverse-CDF sampling with a guide table (one bucket per entry): a draw starts at its
    bucket's first candidate and steps forward a few entries, several times faster than a
    binary search per draw. Zero-weight entries are left out so no draw can land on them.
    """

    def __init__(self, weights: np.ndarray) -> None:
        self.index = np.nonzero(weights > 0)[0]
        self.total = float(weights[self.index].sum())
        if len(self.index) == 0:
            self.cumulative = np.ones(0)
            self.guide = np.zeros(0, dtype=np.int64)
            return
        cumulative = np.cumsum(weights[self.index])
        cumulative /= cumulative[-1]
        cumulative[-1] = 1.0  # uniforms are < 1, so every walk stops at the last entry at most
        self.cumulative = cumulative
        buckets = np.arange(len(cumulative)) / len(cumulative)
        self.guide = np.searchsorted(cumulative, buckets, side="right")

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if size == 0:
            return np.zeros(0, dtype=np.int64)
        if len(self.index) == 0:
            raise AssertionError("drawing from an empty profile")
        uniform = rng.random(size)
        bucket = np.minimum((uniform * len(self.guide)).astype(np.int64), len(self.guide) - 1)
        position = self.guide[bucket]
        pending = np.nonzero(self.cumulative[position] <= uniform)[0]
        while pending.size:
            position[pending] += 1
            pending = pending[self.cumulative[position[pending]] <= uniform[pending]]
        return self.index[position]


def _draws_for_distinct(
    profile: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Fragments needed so that, in expectation, ``target`` distinct peaks are hit.

    With ``m`` draws, peak ``j`` is hit with probability ``1 - exp(-m p_j)``; the sum is concave
    and increasing in ``m``, so it is tabulated on a grid and inverted by interpolation.
    """
    if len(target) == 0:
        return np.zeros(0, dtype=np.int64)
    goal = float(target.max())
    high = max(2.0 * goal, 1.0)
    while _expected_distinct(profile, high) < goal and high < 1e12:
        high *= 2.0
    grid = np.linspace(0.0, high, 65)
    distinct = np.array([_expected_distinct(profile, m) for m in grid])
    draws = np.interp(target, distinct, grid)
    # Stochastic rounding keeps the mean right for cells with few draws.
    return np.floor(draws + rng.random(len(draws))).astype(np.int64)


def _expected_distinct(profile: np.ndarray, draws: float) -> float:
    return float(-np.expm1(-draws * profile).sum())


def _as_csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Canonical float32 CSR (sorted indices, no explicit zeros), the form the model reads."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


# --- presets -----------------------------------------------------------------------------------

PRESETS: dict[str, dict] = {
    # Shaped like a first real data set (SNARE-seq2 mouse cortex, 10,309 nuclei): 12 libraries,
    # 14 types, low RNA depth with a few very highly expressed genes, sparse ATAC with many
    # rare peaks. The statistics it was checked against are in ``REAL_SCALE_TARGETS``.
    "real_scale": dict(
        n_cells=10_309,
        n_genes=1_677,
        n_peaks=25_734,
        n_cell_types=14,
        atac_density=0.0038,
        rna_depth=2_200,
        peaks_per_gene=2,
        n_batches=12,
        batch_depth_sd=0.15,
        log_fold=(0.6, 1.2),
        rna_rate_sd=2.5,
        atac_access_sd=1.5,
        depth_sd=(0.55, 0.6),
    ),
}


def simulate_preset(name: str, seed: int = 0, **overrides) -> SimulatedMultiome:
    """:func:`simulate` with a named set of arguments from ``PRESETS`` (``overrides`` win)."""
    if name not in PRESETS:
        raise FactVAEInputError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
    return simulate(**{**PRESETS[name], "seed": seed, **overrides})


def count_statistics(sim: SimulatedMultiome) -> dict[str, float]:
    """The statistics a real data set is described by, to check a preset against it."""
    rna, atac = sp.csr_matrix(sim.rna.X), sp.csr_matrix(sim.atac.X)
    rna_depth = np.asarray(rna.sum(axis=1)).ravel()
    atac_depth = np.asarray(atac.sum(axis=1)).ravel()
    cells_per_peak = np.diff(atac.tocsc().indptr)
    stats = {
        "cells": rna.shape[0],
        "genes": rna.shape[1],
        "rna_median_umis": float(np.median(rna_depth)),
        "rna_umis_p5": float(np.percentile(rna_depth, 5)),
        "rna_umis_p95": float(np.percentile(rna_depth, 95)),
        "rna_nonzero_pct": 100.0 * rna.nnz / np.prod(rna.shape),
        "rna_max_count": float(rna.data.max()),
        "peaks": atac.shape[1],
        "atac_median_counts": float(np.median(atac_depth)),
        "atac_counts_p5": float(np.percentile(atac_depth, 5)),
        "atac_counts_p95": float(np.percentile(atac_depth, 95)),
        "atac_nonzero_pct": 100.0 * atac.nnz / np.prod(atac.shape),
        "atac_max_count": float(atac.data.max()),
        "median_cells_per_peak": float(np.median(cells_per_peak)),
        "empty_peaks": int((cells_per_peak == 0).sum()),
    }
    if "batch" in sim.rna.obs:
        batch = sim.rna.obs["batch"].to_numpy()
        sizes = pd.Series(batch).value_counts()
        medians = pd.Series(rna_depth).groupby(batch).median()
        stats.update(
            batches=len(sizes),
            batch_cells_min=int(sizes.min()),
            batch_cells_max=int(sizes.max()),
            batch_rna_median_min=float(medians.min()),
            batch_rna_median_max=float(medians.max()),
        )
    return stats
