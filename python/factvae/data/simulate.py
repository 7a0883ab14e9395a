"""Simulated multiome data with planted cell types and gene-peak links.

Tests and benchmarks need data whose answer is known: cells of a few types, genes and peaks that
follow a type-specific "program", and regulatory peaks placed around the genes they regulate so a
model's gene-peak links can be scored against ``SimulatedMultiome.links``.

Counts are sampled sparse (never as a dense cells x features array) so the same function serves
benchmarks at 100,000 cells x 200,000 peaks.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from factvae.data.simulated_counts import atac_counts, rna_counts
from factvae.data.simulated_genome import gene_layout, peak_programs, place_peaks
from factvae.errors import FactVAEInputError

__all__ = ["PRESETS", "SimulatedMultiome", "simulate", "simulate_preset"]

_HOUSEKEEPING = 0.3
_LOG_FOLD = (1.5, 2.5)
_MAX_PEAKS_PER_GENE = 10  # half of them must fit inside the shortest gene body + promoter
_RNA_LOG_BASE_SD = 1.5
_RNA_DEPTH_SD = 0.35
_ATAC_DEPTH_SD = 0.4
_ATAC_ACCESS_SD = 0.6
_ACTIVITY_SD = 0.2
_BATCH_SHIFTED = 0.2  # share of genes and of peaks whose log rate each batch shifts


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
    layout = gene_layout(rng, n_genes, n_peaks)
    peaks, link_gene = place_peaks(rng, layout, gene_program, n_peaks, peaks_per_gene)
    peak_program = peak_programs(rng, link_gene, gene_program, n_cell_types)

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

    rna_x = rna_counts(
        rng, cell_type, activity, gene_program, rna_depth * rna_depth_factor, log_fold,
        rna_rate_sd, depth_sd[0], batch, rna_shift,
    )  # fmt: skip
    genes = layout.genes
    rna_var = pd.DataFrame(
        {"program": pd.Categorical(program_labels[gene_program], [*type_names, "none"])},
        index=pd.Index(genes["gene_name"].to_numpy(), name=None),
    )
    atac_x = atac_counts(
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


# --- truth: cell types, batches, programs ----------------------------------------------------


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
