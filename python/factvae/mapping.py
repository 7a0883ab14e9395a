"""New cells through a trained model, kept out of the facade: embedded with no training through
the preprocessing saved at fit time (``FactVAE.get_latent(rna=, atac=)``), or with their new
batches learnt and everything else frozen, as scArches does (``FactVAE.map_query``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from factvae.data.counts import InMemoryRows, RowSource
from factvae.data.preprocessing import (
    LSIProjection,
    PCAProjection,
    log_library_size,
    standardise_rows,
)
from factvae.data.validation import (
    align_columns,
    align_features,
    batch_labels,
    batch_levels,
    cell_names,
    match_cells,
    raw_counts,
)
from factvae.errors import FactVAEInputError
from factvae.outputs.latent import JointRule, latent_means
from factvae.settings import ModelSettings
from factvae.state import ModelState
from factvae.train.batches import TrainingData
from factvae.train.devices import seed_everything, select_device
from factvae.train.fitting import (
    check_batch_sizes,
    check_positive_int,
    finish_training,
    model_trainer,
    training_schedule,
)

Model = TypeVar("Model", bound=ModelState)
Projection = TypeVar("Projection", PCAProjection, LSIProjection)


@dataclass
class _NewCells:
    """New cells as the model sees them (see :func:`new_cells`)."""

    obs_names: pd.Index
    labels: np.ndarray | None = None
    rna_rep: np.ndarray | None = None
    atac_rep: np.ndarray | None = None
    rna_counts: RowSource | None = None
    atac_counts: RowSource | None = None
    rna_log_library: np.ndarray | None = None
    atac_log_library: np.ndarray | None = None


def embed(model: ModelState, kind: str, rna: Any, atac: Any, joint: JointRule | None) -> np.ndarray:
    """The latent of new cells (see ``FactVAE.get_latent``), from the trained encoders;
    ``joint``: the model's rule, or None for a half's posterior means."""
    if kind not in ("joint", "rna", "atac"):
        raise FactVAEInputError(f"kind must be 'joint', 'rna' or 'atac', not {kind!r}.")
    cells = _new_cells(
        model, rna, atac, kind in ("joint", "rna"), kind in ("joint", "atac"),
        counts=False, labels=model.settings.encode_batch, what=f"get_latent({kind!r})",
    )  # fmt: skip
    codes = None
    if model.settings.encode_batch:
        codes = _known_codes(model, cells.labels, "get_latent")
    return latent_means(
        model.network, cells.rna_rep, cells.atac_rep, kind, model.device, batch=codes,
        joint=joint,
    )  # fmt: skip


def map_query(
    model: Model,
    rna: Any,
    atac: Any,
    *,
    max_epochs: int | None,
    batch_size: int,
    seed: int,
    progress: bool,
    device: str,
    precision: str,
) -> Model:
    """The work of ``FactVAE.map_query`` (see there): a new model of the query cells."""
    if not model.settings.batch_keys:
        raise FactVAEInputError(
            "map_query learns the new batches of query cells, so it needs a model built "
            "with batch_key=; this one has none. To embed new cells with this model as it "
            "is, use get_latent(rna=..., atac=...)."
        )
    check_positive_int(batch_size, "batch_size")
    if max_epochs is not None:
        check_positive_int(max_epochs, "max_epochs")
    cells = _new_cells(model, rna, atac, True, True, counts=True, labels=True, what="map_query")
    assert cells.labels is not None
    query_levels = batch_levels(rna, model.settings.batch_keys, cells.labels)
    new_levels = [level for level in query_levels if level not in model.batch_levels]
    mapped = _mapped_copy(model, cells, new_levels)
    n_reference = len(model.batch_levels)
    check_batch_sizes(
        mapped, mapped._batch_codes, range(n_reference, len(mapped.batch_levels)), batch_size,
        "map_query",
    )  # fmt: skip
    overrides: dict[str, Any] = {} if max_epochs is None else {"max_epochs": max_epochs}
    if 0 < model.settings.validation_cells(len(cells.obs_names)) < 2:
        overrides["validation_fraction"] = 0.0  # too few query cells to hold any out
    settings = ModelSettings.from_kwargs({**model.settings.to_dict(), **overrides})
    schedule = training_schedule(mapped, settings, seed)
    data, mapped._data = mapped._data, None  # a mapped model cannot be fit() again
    assert data is not None
    mapped.device = select_device(device)
    mapped.network.to(mapped.device)
    if not new_levels:
        mapped.training_summary = {**mapped.training_summary, "epochs": 0}
        return mapped
    seed_everything(seed)
    handles = mapped.network.train_only_batches_from(n_reference)
    try:
        trainer = model_trainer(
            mapped, settings, schedule, precision,
            trainable=mapped.network.trainable_parameters(), ssa=False,
        )  # fmt: skip
        if progress:
            print(
                f"FactVAE: mapping {len(cells.obs_names)} query cells on {mapped.device}: "
                f"training {len(new_levels)} new batch level(s) {new_levels[:5]}, the rest "
                f"frozen, at most {schedule.max_epochs} epochs"
            )
        trainer.fit(data, schedule, batch_size, seed, progress)
    finally:
        mapped.network.unfreeze(handles)
    summary = mapped.training_summary
    # the query's joint embedding is in the reference's: its centres and ATAC factor, not ones
    # fitted anew on the query cells
    finish_training(mapped, trainer, schedule, joint_rule=model.joint_rule)
    mapped.training_summary.update(summary)
    return mapped


def _mapped_copy(model: Model, cells: _NewCells, new_levels: list[str]) -> Model:
    """A model of the query ``cells`` that shares ``model``'s features, prior and
    preprocessing, with a copy of its network grown by ``new_levels`` (nothing of ``model``
    is changed, and nothing mutable is shared)."""
    mapped = type(model).__new__(type(model))
    shared = ("settings", "genes", "peaks", "peak_coords", "peak_detection", "gene_coords",
              "gene_coords_all", "g2p", "input_genes", "input_peaks",
              "joint_rule", "gene_evidence")  # fmt: skip
    for name in shared:  # never changed in place, by either model
        setattr(mapped, name, getattr(model, name))
    mapped.projections = dict(model.projections)
    mapped.batch_levels = pd.Index([*model.batch_levels, *new_levels], dtype=object)
    assert cells.labels is not None
    mapped._batch_codes = mapped.batch_levels.get_indexer(cells.labels).astype(np.int64)
    mapped.obs_names = cells.obs_names
    assert cells.rna_rep is not None and cells.atac_rep is not None
    mapped._rna_rep, mapped._atac_rep = cells.rna_rep, cells.atac_rep
    assert cells.rna_log_library is not None and cells.atac_log_library is not None
    mapped._rna_log_library, mapped._atac_log_library = (
        cells.rna_log_library, cells.atac_log_library,
    )  # fmt: skip
    if new_levels:
        mapped.network = model.network.with_new_batches(len(new_levels))
    else:
        mapped.network = copy.deepcopy(model.network)
    mapped.architecture = mapped.network.arch
    assert cells.rna_counts is not None and cells.atac_counts is not None
    mapped._data = TrainingData(
        cells.rna_rep, cells.atac_rep, cells.rna_counts, cells.atac_counts,
        cells.rna_log_library, cells.atac_log_library, mapped._batch_codes,
        len(mapped.batch_levels),
    )  # fmt: skip
    mapped._no_data = (
        "This model was made by map_query: only its new batch levels were trained, on "
        "query cells. To train every parameter, build a FactVAE on the reference and query "
        "cells together (with batch_key=) and fit it."
    )
    mapped.history = []
    mapped.training_summary = {
        "mapped_query": True,
        "reference_batch_levels": [str(level) for level in model.batch_levels],
        "new_batch_levels": list(new_levels),
    }
    mapped.validation_cells = pd.Index([])
    mapped.is_trained = True
    mapped.device = model.device
    return mapped


def _new_cells(
    model: ModelState,
    rna: Any,
    atac: Any,
    need_rna: bool,
    need_atac: bool,
    counts: bool,
    labels: bool,
    what: str,
) -> _NewCells:
    """New cells' encoder inputs through the preprocessing saved at fit time, their
    features matched to the model's by name; with ``counts``, also their aligned counts
    and size factors; with ``labels``, their batch labels."""
    for given, needed, name in ((rna, need_rna, "rna"), (atac, need_atac, "atac")):
        if needed and given is None:
            raise FactVAEInputError(
                f"{what} needs the new cells' {name} counts: pass {name}= (an AnnData of "
                "raw counts)."
            )
    atac_rows = None
    if rna is not None and atac is not None:
        obs_names, atac_rows = match_cells(rna, atac)
    else:
        obs_names = cell_names(rna if rna is not None else atac,
                               "rna" if rna is not None else "atac")  # fmt: skip
    cells = _NewCells(obs_names)
    if labels:
        keys = model.settings.batch_keys
        primary, name = (rna, "rna") if rna is not None else (atac, "atac")
        other = atac if rna is not None else None
        cells.labels = batch_labels(primary, keys, name, other, atac_rows)
    if need_rna or (counts and rna is not None):
        pca = _saved_projection(model, "rna", PCAProjection)
        modality = raw_counts(rna, "rna")
        positions = align_features(
            pd.Index(rna.var_names.astype(str)), model.genes, model.input_genes, "rna", "gene"
        )
        aligned = modality.counts.map(partial(align_columns, positions=positions))
        rep = pca.project(aligned, modality.cell_totals)
        cells.rna_rep = standardise_rows(rep) if model.settings.bounded_inputs else rep
        if counts:
            cells.rna_counts = InMemoryRows(aligned.to_memory())
            cells.rna_log_library = _log_library(modality.cell_totals, obs_names, "rna")
    if need_atac or (counts and atac is not None):
        lsi = _saved_projection(model, "atac", LSIProjection)
        modality = raw_counts(atac, "atac")
        if atac_rows is not None and not np.array_equal(atac_rows, np.arange(len(atac_rows))):
            modality = modality.permute_rows(atac_rows)
        positions = align_features(
            pd.Index(atac.var_names.astype(str)), model.peaks, model.input_peaks, "atac",
            "peak",
        )  # fmt: skip
        aligned = modality.counts.map(partial(align_columns, positions=positions))
        cells.atac_rep = lsi.project(aligned)
        if counts:
            cells.atac_counts = aligned
            cells.atac_log_library = _log_library(modality.cell_totals, obs_names, "atac")
    return cells


def _saved_projection(model: ModelState, name: str, kind: type[Projection]) -> Projection:
    """The ``name`` modality's preprocessing saved at fit time; none after a user's reduction."""
    projection = model.projections.get(name)
    if projection is None:
        raise FactVAEInputError(
            f"This model was built on a precomputed {name}_rep, so it cannot compute the "
            f"{name.upper()} input of new cells from their counts; build it from the counts "
            f"(without {name}_rep=) to map new cells."
        )
    assert isinstance(projection, kind)
    return projection


def _known_codes(model: ModelState, labels: np.ndarray | None, what: str) -> np.ndarray:
    """Codes of batch labels that must all be levels of ``model``."""
    assert labels is not None
    codes = model.batch_levels.get_indexer(labels)
    if (codes < 0).any():
        unknown = sorted(set(labels[codes < 0]))
        raise FactVAEInputError(
            f"{what}: batch level(s) {unknown[:5]} of the new cells are not levels of this "
            f"model ({list(model.batch_levels)[:10]}), and its encoders read the batch "
            "(encode_batch=True). Learn them first with map_query(), which returns a model "
            "that knows them."
        )
    return codes.astype(np.int64)


def _log_library(totals: np.ndarray, cells: pd.Index, what: str) -> np.ndarray:
    """Size factors of new cells; a cell without counts has none."""
    if (totals == 0).any():
        raise FactVAEInputError(
            f"{int((totals == 0).sum())} new cells have no {what} counts (for example "
            f"{cells[totals == 0][:3].tolist()}); remove them first (their library size is zero)."
        )
    return log_library_size(totals)
