"""Fit orchestration beside the trainer, kept out of the facade: ``FactVAE.fit`` resolved into a
device, a schedule, a checkpoint fingerprint and one ``Trainer`` run, and what the run did kept
on the model. ``map_query`` reuses the same pieces."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from factvae.errors import FactVAEInputError, TrainingDivergedError, TrainingInterrupted
from factvae.model.network import FactVAENetwork
from factvae.outputs.gene_loadings import gene_evidence
from factvae.outputs.latent import JointRule, fit_joint_rule, latent_means
from factvae.settings import ModelSettings, auto_max_epochs, auto_patience
from factvae.state import ModelState
from factvae.train.checkpoints import CheckpointPolicy
from factvae.train.devices import seed_everything, select_device
from factvae.train.distributed import ProcessGroup, init_from_environment
from factvae.train.trainer import Schedule, Trainer


def fit_model(
    model: ModelState,
    *,
    max_epochs: int | None,
    batch_size: int,
    device: str,
    seed: int,
    progress: bool,
    checkpoint_dir: str | Path | None,
    checkpoint_every: int,
    resume: bool,
    precision: str,
    early_stopping: bool | None,
    validation_fraction: float | None,
    patience: int | None,
) -> None:
    """The work of ``FactVAE.fit`` (see there): train ``model`` in place."""
    if model._data is None:
        raise FactVAEInputError(
            model._no_data
            or "This model was loaded from disk without its training counts; build a new "
            "FactVAE from the data to train again."
        )
    overrides = {
        name: value
        for name, value in (
            ("max_epochs", max_epochs),
            ("early_stopping", early_stopping),
            ("validation_fraction", validation_fraction),
            ("patience", patience),
        )
        if value is not None
    }
    settings = ModelSettings.from_kwargs({**model.settings.to_dict(), **overrides})
    check_positive_int(batch_size, "batch_size")
    check_positive_int(checkpoint_every, "checkpoint_every")
    settings.check_against_data(len(model.obs_names))
    check_batch_sizes(model, model._batch_codes, range(len(model.batch_levels)), batch_size)
    model.device = select_device(device)
    group = init_from_environment(model.device)
    if group.active and model.device.type == "cuda":
        model.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", group.rank)))
    schedule = training_schedule(model, settings, seed)
    seed_everything(seed)
    model.network = FactVAENetwork(model.architecture, model.g2p.indices())
    trainer = model_trainer(model, settings, schedule, precision, group=group)
    policy = (
        CheckpointPolicy(
            Path(checkpoint_dir),
            checkpoint_every,
            resume,
            fingerprint(model, settings, schedule, batch_size, seed),
        )
        if checkpoint_dir
        else None
    )
    if progress and group.rank == 0:
        ranks = f", {group.world_size} processes" if group.active else ""
        held_out = len(schedule.validation_cells)
        patience = schedule.patience
        stop = f", early stopping (patience {patience})" if schedule.early_stopping else ""
        print(
            f"FactVAE: training on {model.device} ({len(schedule.train_cells)} cells"
            + (f", {held_out} held out for validation" if held_out else "")
            + f"{ranks}, {trainer.precision} products), at most {schedule.max_epochs} "
            f"epochs{stop}"
        )
    try:
        trainer.fit(model._data, schedule, batch_size, seed, progress, policy)
    except (TrainingDivergedError, TrainingInterrupted):
        # the trainer restored the last good epoch: keep it usable (and resumable)
        finish_training(model, trainer, schedule)
        model.is_trained = trainer.epoch > 0
        raise
    finish_training(model, trainer, schedule)
    model.is_trained = True


def model_trainer(
    model: ModelState,
    settings: ModelSettings,
    schedule: Schedule,
    precision: str,
    group: ProcessGroup | None = None,
    trainable: list[torch.nn.Parameter] | None = None,
    ssa: bool = True,
) -> Trainer:
    """A trainer of ``model``'s network on its device, with the loss weights and optimisers of
    ``settings`` (for ``fit``, and for ``map_query`` with only the new batches ``trainable``)."""
    return Trainer(
        model.network,
        settings.loss_weights(len(model.peaks)),
        settings.optimiser(schedule.max_epochs),
        model.device,
        precision=precision,
        group=group,
        trainable=trainable,
        ssa=settings.ssa_objective if ssa else None,
    )


def check_batch_sizes(
    model: ModelState, codes: np.ndarray | None, levels: Any, batch_size: int, what: str = "fit"
) -> None:
    """Every batch level (of ``levels``, codes) needs at least one minibatch of cells."""
    if codes is None:
        return
    sizes = np.bincount(codes, minlength=len(model.batch_levels))
    small = [f"{model.batch_levels[c]!r} ({sizes[c]} cells)" for c in levels
             if sizes[c] < batch_size]  # fmt: skip
    if small:
        raise FactVAEInputError(
            f"batch level(s) {', '.join(small)} of batch_key={model.settings.batch_key!r} "
            f"have fewer cells than one minibatch (batch_size={batch_size}), too few to "
            "learn their offsets. Merge small levels into others or drop their cells, or "
            f"call {what}() with a smaller batch_size=."
        )


def training_schedule(model: ModelState, settings: ModelSettings, seed: int) -> Schedule:
    """Training and validation cells (a seeded split), epochs and patience."""
    n_cells = len(model.obs_names)
    n_validation = settings.validation_cells(n_cells)
    order = np.random.default_rng([seed, 2]).permutation(n_cells)
    validation = np.sort(order[:n_validation])
    train = np.sort(order[n_validation:]) if n_validation else np.arange(n_cells)
    max_epochs = settings.max_epochs or auto_max_epochs(len(train))
    return Schedule(
        max_epochs=max_epochs,
        train_cells=train,
        validation_cells=validation,
        early_stopping=settings.early_stopping,
        patience=settings.patience or auto_patience(max_epochs),
    )


def fingerprint(
    model: ModelState, settings: ModelSettings, schedule: Schedule, batch_size: int, seed: int
) -> dict[str, Any]:
    """What a checkpoint of this fit depends on: the cells, features, prior and counts (by
    digest), every setting, the schedule, batch size and seed."""
    data = model._data
    assert data is not None  # fit() refuses a loaded model before this
    digest = hashlib.sha256()
    for array in (data.rna_log_library, data.atac_log_library, *model.g2p.indices()):
        digest.update(np.ascontiguousarray(array).tobytes())
    batches = {}
    if model._batch_codes is not None:
        digest.update(model._batch_codes.tobytes())
        batches = {"batch levels": [str(level) for level in model.batch_levels]}
    return {
        "cells": _names_digest(model.obs_names),
        "genes": _names_digest(model.genes),
        "peaks": _names_digest(model.peaks),
        "counts and prior": digest.hexdigest(),
        **settings.to_dict(),
        "max_epochs": schedule.max_epochs,
        "validation cells": _names_digest(model.obs_names[schedule.validation_cells]),
        "batch_size": int(batch_size),
        "seed": int(seed),
        **batches,
    }


def finish_training(
    model: ModelState, trainer: Trainer, schedule: Schedule, joint_rule: JointRule | None = None
) -> None:
    """What the run did, kept on the model (and saved with it). ``joint_rule``: the joint
    embedding's rule to keep (a mapped query keeps its reference's); None fits it on the model's
    cells."""
    model.history = trainer.history
    stopper = trainer.stopper
    model.training_summary = {
        "epochs": trainer.epoch,
        "max_epochs": schedule.max_epochs,
        "atac_recon_weight": trainer.weights.atac_recon,
        "atac_kl_weight": trainer.weights.atac_kl,
        "stopped_early": bool(stopper is not None and stopper.stopped),
        "best_epoch": stopper.best_epoch if stopper and schedule.early_stopping else None,
        "validation_cells": len(schedule.validation_cells),
        "skipped_steps": trainer.skipped_steps,
        "rollbacks": trainer.rollbacks,
    }
    model.validation_cells = model.obs_names[schedule.validation_cells]
    if joint_rule is None:
        joint_rule = fit_joint_rule(
            model.network, model._rna_rep, model._atac_rep, model.settings.joint_embedding,
            model.settings.joint_atac_share, model.device, model._batch_codes,
        )  # fmt: skip
    model.joint_rule = joint_rule
    model.training_summary["joint_atac_scale"] = model.joint_atac_scale
    # a mapped query keeps its reference's (same latent space); a run without one good epoch
    # has no latent worth measuring against
    if model._data is not None and trainer.epoch > 0:
        latent = latent_means(
            model.network, model._rna_rep, None, "rna", model.device, batch=model._batch_codes
        )
        model.gene_evidence = gene_evidence(
            model._data.rna_counts, model._rna_log_library, latent.astype(np.float64)
        )


def check_positive_int(value: Any, name: str) -> None:
    """The check of a count argument (batch size, epochs, chunk size), with a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FactVAEInputError(f"{name} must be a positive integer, got {value!r}.")


def _names_digest(names: pd.Index) -> str:
    return hashlib.sha256("\n".join(map(str, names)).encode()).hexdigest()
