"""A trained model's folder: what ``FactVAE.save`` writes (weights, settings, feature names,
projections, versions) and ``FactVAE.load`` reads back, kept out of the facade so that the
format is written and read in one place, every file through ``io/persistence.py``."""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from factvae.data.preprocessing import LSIProjection, PCAProjection
from factvae.data.prior import GeneToPeak
from factvae.errors import FactVAEInputError
from factvae.io.persistence import (
    load_arrays,
    load_json,
    load_torch,
    save_arrays,
    save_json,
    save_torch,
)
from factvae.model.network import Architecture, FactVAENetwork
from factvae.outputs.gene_loadings import GeneEvidence
from factvae.outputs.latent import JointRule
from factvae.settings import ModelSettings
from factvae.state import ModelState
from factvae.train.devices import select_device

SETTINGS_FILE, WEIGHTS_FILE, ARRAYS_FILE = "settings.json", "weights.pt", "arrays.npz"

Model = TypeVar("Model", bound=ModelState)


def save_model(model: ModelState, folder: Path) -> Path:
    """Write ``model``'s weights, settings, feature names, projections and versions."""
    from factvae import __version__  # here: the package's __init__ imports this module

    folder.mkdir(parents=True, exist_ok=True)
    save_torch(folder / WEIGHTS_FILE, model.network.state_dict())
    arrays: dict[str, np.ndarray] = {
        "obs_names": model.obs_names.to_numpy(dtype=str),
        "genes": model.genes.to_numpy(dtype=str),
        "peaks": model.peaks.to_numpy(dtype=str),
        "peak_chrom": model.peak_coords["chrom"].to_numpy(dtype=str),
        "peak_start": model.peak_coords["start"].to_numpy(),
        "peak_end": model.peak_coords["end"].to_numpy(),
        "rna_rep": model._rna_rep,
        "atac_rep": model._atac_rep,
        "rna_log_library": model._rna_log_library,
        "atac_log_library": model._atac_log_library,
        "g2p_rows": model.g2p.indices()[0],
        "g2p_cols": model.g2p.indices()[1],
        "input_genes": model.input_genes.to_numpy(dtype=str),
        "input_peaks": model.input_peaks.to_numpy(dtype=str),
    }
    if model._batch_codes is not None:
        arrays["batch_levels"] = model.batch_levels.to_numpy(dtype=str)
        arrays["batch_codes"] = model._batch_codes
    if model.peak_detection is not None:
        arrays["peak_detection"] = model.peak_detection
    if model.gene_evidence is not None:
        arrays["gene_ridge"] = model.gene_evidence.ridge
        arrays["gene_detection"] = model.gene_evidence.detection
    if model.joint_rule.centres is not None:
        arrays["joint_rna_centre"], arrays["joint_atac_centre"] = model.joint_rule.centres
    if model.gene_coords is not None:
        arrays.update(coordinate_arrays(model.gene_coords, "gene"))
    if model.gene_coords_all is not None:  # the whole annotation: links for any gene, and
        annotation = model.gene_coords_all  # the TSSs competing for each peak (peak_share)
        arrays.update(coordinate_arrays(annotation, "annotation"))
        arrays["annotation_name"] = annotation.index.to_numpy(dtype=str)
    for name, projection in model.projections.items():
        if projection is not None:
            for key, value in asdict(projection).items():
                if value is not None:  # an optional part the fit did not measure
                    arrays[f"{name}_projection_{key}"] = np.asarray(value)
    save_arrays(folder / ARRAYS_FILE, arrays)
    save_json(
        folder / SETTINGS_FILE,
        {
            "settings": model.settings.to_dict(),
            "architecture": asdict(model.architecture),
            "history": model.history,
            "training_summary": model.training_summary,
            "joint_atac_scale": model.joint_atac_scale,
            "versions": {
                "factvae": __version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
        },
    )
    return folder


def load_model(cls: type[Model], folder: Path, device: str) -> Model:
    """A trained ``cls`` from a folder ``save_model`` wrote; never unpickles objects."""
    for name in (SETTINGS_FILE, WEIGHTS_FILE, ARRAYS_FILE):
        if not (folder / name).exists():
            raise FactVAEInputError(f"{folder} is not a saved FactVAE model ({name} is missing).")
    meta = load_json(folder / SETTINGS_FILE)
    arrays = load_arrays(folder / ARRAYS_FILE)
    model = cls.__new__(cls)
    # saved before the joint embedding could average the halves: they were concatenated
    saved = {"joint_embedding": "concatenate", **meta["settings"]}
    model.settings = ModelSettings.from_kwargs(saved)
    arch = dict(meta["architecture"])
    arch["rna_hidden"], arch["atac_hidden"] = (
        tuple(arch["rna_hidden"]),
        tuple(arch["atac_hidden"]),
    )
    arch.setdefault("n_batches", 0)  # saved before batch covariates existed
    arch.setdefault("encode_batch", False)
    model.architecture = Architecture(**arch)
    model.history = meta["history"]
    model.training_summary = meta.get("training_summary", {})
    # older saves: the halves concatenated as they are, or averaged without centres
    centres = None
    if "joint_rna_centre" in arrays:
        centres = (arrays["joint_rna_centre"], arrays["joint_atac_centre"])
    model.joint_rule = JointRule(
        model.settings.joint_embedding, float(meta.get("joint_atac_scale", 1.0)), centres
    )
    model.validation_cells = pd.Index([])
    model.obs_names = pd.Index(arrays["obs_names"])
    model.genes = pd.Index(arrays["genes"])
    model.peaks = pd.Index(arrays["peaks"])
    # older saves lack them: every unused feature of new cells is then reported
    model.input_genes = pd.Index(arrays.get("input_genes", model.genes))
    model.input_peaks = pd.Index(arrays.get("input_peaks", model.peaks))
    levels = [str(level) for level in arrays.get("batch_levels", [])]
    model.batch_levels = pd.Index(levels, dtype=object)
    model._batch_codes = arrays.get("batch_codes")
    model.peak_coords = pd.DataFrame(
        {
            "chrom": arrays["peak_chrom"],
            "start": arrays["peak_start"],
            "end": arrays["peak_end"],
        },
        index=model.peaks,
    )
    if "gene_chrom" in arrays:
        coords = coordinates_from_arrays(arrays, "gene", model.genes)
        model.gene_coords = coords[coords["start"] >= 0].reindex(model.genes)
    else:
        model.gene_coords = None
    if "annotation_name" in arrays:
        annotation = coordinates_from_arrays(
            arrays, "annotation", pd.Index(arrays["annotation_name"])
        )
        model.gene_coords_all = annotation[annotation["start"] >= 0]
    else:  # saved before the annotation was kept: the modelled genes' coordinates only
        model.gene_coords_all = model.gene_coords
    # older saves lack it: their links are then matched on distance alone
    model.peak_detection = arrays.get("peak_detection")
    model.gene_evidence = (  # older saves lack it: their genes link by their factors alone
        GeneEvidence(arrays["gene_ridge"], arrays["gene_detection"])
        if "gene_ridge" in arrays
        else None
    )
    model.g2p = GeneToPeak(
        sp.csr_matrix(
            (
                np.ones(len(arrays["g2p_rows"]), dtype=np.float32),
                (arrays["g2p_rows"], arrays["g2p_cols"]),
            ),
            shape=(len(model.genes), len(model.peaks)),
        ),
        model.genes,
        model.peaks,
    )
    model.network = FactVAENetwork(model.architecture, model.g2p.indices())
    model.network.load_state_dict(load_torch(folder / WEIGHTS_FILE))
    model.device = select_device(device)
    model.network.to(model.device)
    model._rna_rep, model._atac_rep = arrays["rna_rep"], arrays["atac_rep"]
    model._rna_log_library = arrays["rna_log_library"]
    model._atac_log_library = arrays["atac_log_library"]
    model.projections = {
        "rna": _projection(arrays, "rna", PCAProjection),
        "atac": _projection(arrays, "atac", LSIProjection),
    }
    model._data = None
    model._no_data = ""
    model.is_trained = True
    return model


def coordinate_arrays(genes: pd.DataFrame, prefix: str) -> dict[str, np.ndarray]:
    """Gene coordinates as plain arrays (no pickles in a model file); a missing position is
    stored as -1 and dropped on loading."""
    return {
        f"{prefix}_chrom": genes["chrom"].fillna("").to_numpy(dtype=str),
        f"{prefix}_start": genes["start"].fillna(-1).to_numpy(dtype=np.int64),
        f"{prefix}_end": genes["end"].fillna(-1).to_numpy(dtype=np.int64),
        f"{prefix}_strand": genes["strand"].fillna("+").to_numpy(dtype=str),
    }


def coordinates_from_arrays(
    arrays: dict[str, np.ndarray], prefix: str, index: pd.Index
) -> pd.DataFrame:
    """The frame :func:`coordinate_arrays` stored."""
    columns = ("chrom", "start", "end", "strand")
    return pd.DataFrame({name: arrays[f"{prefix}_{name}"] for name in columns}, index=index)


def _projection(arrays: dict[str, np.ndarray], name: str, kind: type) -> Any:
    prefix = f"{name}_projection_"
    values: dict[str, Any] = {
        k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)
    }
    if not values:
        return None
    for key in ("target_sum", "clip"):
        if key in values:
            values[key] = float(values[key])
    return kind(**values)
