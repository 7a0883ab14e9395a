"""A model built from the user's data, the work of the ``FactVAE`` constructor kept out of the
facade: cells matched and batches coded, the modelled genes chosen (detected, annotated, most
variable), the gene-to-peak prior among them, the encoder inputs and the network."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from factvae.data.builds import warn_if_other_build
from factvae.data.counts import InMemoryRows
from factvae.data.genomics import (
    AnnotationLike,
    harmonise_chromosomes,
    peak_ranges,
    read_gene_annotation,
)
from factvae.data.preprocessing import (
    SCALE_CLIP,
    atac_lsi,
    highly_variable_genes,
    log_library_size,
    rna_pca,
    standardise_rows,
)
from factvae.data.prior import GeneToPeak, coerce_g2p, gene_to_peak
from factvae.data.validation import (
    ModalityCounts,
    batch_labels,
    batch_levels,
    check_not_empty,
    check_unique,
    match_cells,
    raw_counts,
    reduction,
)
from factvae.errors import FactVAEInputError
from factvae.io.mudata import is_mudata
from factvae.io.mudata import modalities as mudata_modalities
from factvae.model.network import Architecture, FactVAENetwork
from factvae.outputs.latent import JointRule
from factvae.settings import ModelSettings
from factvae.state import ModelState
from factvae.train.batches import TrainingData


def build(
    model: ModelState,
    rna: Any,
    atac: Any,
    *,
    gene_annotation: AnnotationLike | None,
    g2p: Any,
    rna_rep: Any,
    atac_rep: Any,
    preset: str,
    check_build: bool,
    modalities: tuple[str, str],
    settings: dict[str, Any],
) -> None:
    """Set every attribute of a new, untrained ``model`` (see ``FactVAE``)."""
    if is_mudata(rna):
        if atac is not None:
            raise FactVAEInputError(
                "With a MuData, give no atac argument (its modalities are named by "
                "modalities=); pass the annotation as gene_annotation=."
            )
        rna, atac = mudata_modalities(rna, modalities)
    elif atac is None:
        raise FactVAEInputError(
            "FactVAE needs the ATAC counts: FactVAE(rna, atac, ...) with two AnnData, or "
            "FactVAE(mdata, ...) with a MuData holding both."
        )
    model.settings = ModelSettings.from_kwargs(settings, preset)
    model.obs_names, atac_rows = match_cells(rna, atac)
    keys = model.settings.batch_keys
    model._batch_codes = None
    model.batch_levels = pd.Index([], dtype=object)
    if keys:
        labels = batch_labels(rna, keys, "rna", atac, atac_rows)
        model.batch_levels = pd.Index(batch_levels(rna, keys, labels), dtype=object)
        model._batch_codes = model.batch_levels.get_indexer(labels).astype(np.int64)
    rna_counts = raw_counts(rna, "rna")
    atac_counts = raw_counts(atac, "atac")
    if not np.array_equal(atac_rows, np.arange(len(atac_rows))):
        # in memory the only copy, and only when out of order; backed, a row index
        atac_counts = atac_counts.permute_rows(atac_rows)
    all_genes = pd.Index(rna.var_names.astype(str))
    all_peaks = pd.Index(atac.var_names.astype(str))
    check_unique(all_genes, "rna feature (gene)")
    check_unique(all_peaks, "atac feature (peak)")
    # what the model was built from: new cells' features outside these are reported
    model.input_genes, model.input_peaks = all_genes, all_peaks
    peak_coords_all = peak_ranges(atac.var)
    rna_counts, genes_kept = check_not_empty(rna_counts, model.obs_names, all_genes, "rna")
    atac_counts, model.peaks = check_not_empty(atac_counts, model.obs_names, all_peaks, "atac")
    model.peak_coords = peak_coords_all.loc[model.peaks]
    model.peak_detection = atac_counts.detected / len(model.obs_names)
    model.gene_evidence = None  # measured when training ends
    n_cells = len(model.obs_names)
    model.settings.check_against_data(n_cells)

    model.gene_coords_all = gene_coordinates(gene_annotation, model.peak_coords)
    if check_build and model.gene_coords_all is not None:
        annotated = model.gene_coords_all[model.gene_coords_all.index.isin(all_genes)]
        warn_if_other_build(annotated, peak_coords_all, stacklevel=3)  # the caller of FactVAE()
    s = model.settings
    gene_index = select_genes(rna_counts, genes_kept, model.gene_coords_all, s.min_cells, s.n_hvg)
    model.genes = genes_kept[gene_index]
    model.gene_coords = (
        model.gene_coords_all.reindex(model.genes) if model.gene_coords_all is not None else None
    )
    model.g2p = model_prior(
        g2p, model.genes, model.peaks, model.gene_coords, model.peak_coords, s.upstream,
        all_genes, all_peaks,
    )  # fmt: skip
    hvg_counts = rna_counts.counts.select_columns(gene_index).to_memory()  # cells x HVGs
    if rna_rep is None:
        clip = SCALE_CLIP if s.bounded_inputs else math.inf
        rna_input, pca = rna_pca(
            hvg_counts, rna_counts.cell_totals, s.n_components, s.preprocess_seed, clip,
            projected=s.projected_inputs,
        )  # fmt: skip
    else:
        rna_input, pca = reduction(rna_rep, rna, n_cells, np.arange(n_cells), "rna_rep"), None
    if atac_rep is None:
        atac_input, lsi = atac_lsi(
            atac_counts.counts, s.n_components, s.preprocess_seed, s.projected_inputs
        )
    else:
        atac_input = reduction(atac_rep, atac, n_cells, atac_rows, "atac_rep")
        lsi = None
    if s.bounded_inputs:  # LSI is standardised per cell already; a user's may not be
        rna_input = standardise_rows(rna_input)
        atac_input = standardise_rows(atac_input) if atac_rep is not None else atac_input
    model.projections = {
        "rna": pca,
        "atac": lsi,
    }
    model._data = TrainingData(
        rna_input,
        atac_input,
        InMemoryRows(hvg_counts),
        atac_counts.counts,
        log_library_size(rna_counts.cell_totals),
        log_library_size(atac_counts.cell_totals),
        model._batch_codes,
        len(model.batch_levels),
    )
    model._no_data = ""
    model._rna_rep, model._atac_rep = rna_input, atac_input
    model._rna_log_library = model._data.rna_log_library
    model._atac_log_library = model._data.atac_log_library
    model.architecture = Architecture(
        rna_input=rna_input.shape[1],
        atac_input=atac_input.shape[1],
        n_genes=len(model.genes),
        n_peaks=len(model.peaks),
        n_latent=s.n_latent,
        rna_hidden=tuple(s.rna_hidden),
        atac_hidden=tuple(s.atac_hidden),
        dropout=s.dropout,
        rna_likelihood=s.likelihood,
        atac_likelihood=s.likelihood,
        n_batches=len(model.batch_levels),
        encode_batch=s.encode_batch,
    )
    model.network = FactVAENetwork(model.architecture, model.g2p.indices())
    model.history = []
    model.training_summary = {}
    model.joint_rule = JointRule(s.joint_embedding, 1.0)
    model.validation_cells = pd.Index([])
    model.is_trained = False
    model.device = torch.device("cpu")


def gene_coordinates(
    gene_annotation: AnnotationLike | None, peaks: pd.DataFrame
) -> pd.DataFrame | None:
    """Gene coordinates from a frame or BED/GTF path, chromosomes named as the ``peaks``'."""
    if gene_annotation is None:
        return None
    genes = read_gene_annotation(gene_annotation)
    return harmonise_chromosomes(genes, peaks)


def select_genes(
    rna: ModalityCounts,
    genes: pd.Index,
    annotation: pd.DataFrame | None,
    min_cells: int,
    n_hvg: int,
) -> np.ndarray:
    """Positions in ``genes`` of those seen in >= ``min_cells`` cells (and annotated, with an
    ``annotation``), cut to the ``n_hvg`` highly variable ones."""
    eligible = rna.detected >= min_cells
    if annotation is not None:
        annotated = genes.isin(annotation.index)
        if not annotated.any():
            raise FactVAEInputError(
                "No rna gene name appears in the gene annotation (for example "
                f"{genes[:3].tolist()} vs {annotation.index[:3].tolist()}); use an "
                "annotation keyed by the same gene symbols."
            )
        eligible &= annotated
    candidates = np.nonzero(eligible)[0]
    if len(candidates) < 2:
        raise FactVAEInputError(
            f"Only {len(candidates)} genes are detected in >= {min_cells} cells"
            + (" and annotated" if annotation is not None else "")
            + "; lower min_cells= or check the rna counts."
        )
    chosen = highly_variable_genes(rna.counts.select_columns(candidates), n_hvg)
    return candidates[chosen]


def model_prior(
    g2p: Any,
    genes: pd.Index,
    peaks: pd.Index,
    gene_coords: pd.DataFrame | None,
    peak_coords: pd.DataFrame,
    upstream: int,
    all_genes: pd.Index,
    all_peaks: pd.Index,
) -> GeneToPeak:
    """The prior between the modelled ``genes`` and ``peaks``: from their coordinates when
    ``g2p`` is None, else the user's ``g2p`` (a matrix over ``all_genes`` x ``all_peaks``, the
    input features, or any form :func:`~factvae.data.prior.coerce_g2p` takes)."""
    if g2p is None:
        if gene_coords is None:
            raise FactVAEInputError(
                "FactVAE needs a gene-to-peak prior: pass gene_annotation= (a BED/GTF path or "
                "a frame with chrom, start, end, gene_name, strand) or g2p=."
            )
        frame = gene_coords.reset_index(names="gene_name")
        prior = gene_to_peak(frame, peak_coords, upstream=upstream)
        prior = prior.subset(genes, peaks)
    else:
        if (sp.issparse(g2p) or isinstance(g2p, np.ndarray)) and g2p.shape == (
            len(all_genes),
            len(all_peaks),
        ):
            g2p = GeneToPeak(sp.csr_matrix(g2p, dtype=np.float32), all_genes, all_peaks)
        prior = coerce_g2p(g2p, genes, peaks)
    if prior.nnz == 0:
        raise FactVAEInputError(
            "No modelled gene's locus overlaps any peak, so the regulatory loss has no pairs. "
            "Check that the gene annotation and the peaks use the same genome build and "
            "chromosome names, or pass a g2p with pairs among the modelled genes."
        )
    return prior
