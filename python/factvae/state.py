"""What a FactVAE model holds, declared apart from the facade: the modules that build, fit, map,
save and load a model type it with this class, so none of them imports ``factvae.api``, which
imports them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from factvae.data.preprocessing import LSIProjection, PCAProjection
from factvae.data.prior import GeneToPeak
from factvae.model.network import Architecture, FactVAENetwork
from factvae.outputs.gene_loadings import GeneEvidence
from factvae.outputs.latent import JointRule
from factvae.settings import ModelSettings
from factvae.train.batches import TrainingData


class ModelState:
    """The attributes of a :class:`factvae.api.FactVAE`, set by its constructor, by ``load``
    and by ``map_query``; the behaviour is the facade's and its delegates'."""

    settings: ModelSettings
    obs_names: pd.Index  # the cells, in the order of every per-cell array below
    batch_levels: pd.Index
    _batch_codes: np.ndarray | None  # each cell's level in batch_levels; None: no covariate
    input_genes: pd.Index  # the features the model was built from (new cells are matched to)
    input_peaks: pd.Index
    genes: pd.Index  # the modelled features
    peaks: pd.Index
    peak_coords: pd.DataFrame
    peak_detection: np.ndarray | None  # share of cells with each peak; None in old saves
    gene_coords_all: pd.DataFrame | None
    gene_coords: pd.DataFrame | None
    gene_evidence: GeneEvidence | None  # the modelled genes' ridge and detection, for links
    g2p: GeneToPeak
    projections: dict[str, PCAProjection | LSIProjection | None]  # None: a user's reduction
    _data: TrainingData | None  # None: the model cannot be fit() again, for _no_data's reason
    _no_data: str
    _rna_rep: np.ndarray  # the cells' encoder inputs and log library sizes
    _atac_rep: np.ndarray
    _rna_log_library: np.ndarray
    _atac_log_library: np.ndarray
    architecture: Architecture
    network: FactVAENetwork
    joint_rule: JointRule  # how the joint embedding combines the halves, fixed when fitted
    history: list[dict[str, float]]
    training_summary: dict[str, Any]
    validation_cells: pd.Index
    is_trained: bool
    device: torch.device

    @property
    def joint_atac_scale(self) -> float:
        """The ATAC half's factor in the joint embedding (1: as it is)."""
        return self.joint_rule.atac_scale
