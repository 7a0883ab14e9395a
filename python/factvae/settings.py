"""Every setting of a fit and its default, in one place, validated once with messages that name
the fix; ``PRESETS`` names alternative defaults (``"paper"``: the authors' exact schedule).
The API, the CLI and the R package read their defaults from here (R is tested against it)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from factvae.errors import FactVAEInputError
from factvae.model.terms import SSA_OBJECTIVES, LossWeights
from factvae.outputs.latent import JOINT_EMBEDDINGS
from factvae.train.trainer import OptimiserSettings

# The default training length: about this many cells passed through the model, so the number
# of minibatches is about 3,900 of 128 once there are more than 2,500 training cells (scvi-tools
# likewise lowers its epochs as cells grow), between 10 and 200 epochs (the paper trains 300).
CELL_PASSES = 500_000
MIN_EPOCHS, MAX_EPOCHS, PAPER_EPOCHS = 10, 200, 300
PAPER_LR_DECAY = 0.995
FINAL_LR_FRACTION = PAPER_LR_DECAY**PAPER_EPOCHS  # where the paper's learning rates end


def auto_max_epochs(n_train_cells: int) -> int:
    """Epochs of the default schedule for this many training cells."""
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(CELL_PASSES / max(n_train_cells, 1)))))


# The ATAC reconstruction weight: the authors' 0.002, tuned on their 27,399 peaks, up to that
# many peaks, and in proportion to the peaks above it. At 100,000 simulated peaks 0.002 leaves
# the peak factors under-fitted (planted distal links at AUROC 0.80, against 0.89 for a
# correlation of the raw counts) and 0.0073 fits them (0.89); fewer peaks were not helped by
# more weight (benchmarks/links_quality.py, README "Links").
ATAC_WEIGHT, ATAC_WEIGHT_PEAKS = 0.002, 27_399


def auto_atac_recon_weight(n_peaks: int) -> float:
    """The default ATAC reconstruction weight for a model of ``n_peaks`` peaks."""
    return ATAC_WEIGHT * max(1.0, n_peaks / ATAC_WEIGHT_PEAKS)


# The SSA step's learning rate. The authors' 5e-4 leaves the ATAC encoder to the joint step's
# Adam at 1e-3: Adam sizes each step by its own learning rate, not by the loss weights, so the
# SSA term lost that tug and the ATAC half learnt little from the RNA (snare_hcellline seed 0:
# ATAC-half ARI 0.755 at 5e-4 with the former ATAC KL 0.03; 0.907 at 2e-3 with beta = 1).
PAPER_SSA_LR = 5e-4
# What the SSA step asks of the ATAC encoder: "cosine" points each cell's ATAC latent mean where
# its RNA latent mean points (factvae.model.terms.cell_alignment_loss); the paper's
# "similarity" (Eq. 10-11) asks only that the cell-cell similarities agree, which sparse peaks
# met with little of the RNA's structure (real_scale preset, seed 0: ATAC half ARI / 15-NN
# 0.023 / 0.217 under ATAC LSI's 0.035 / 0.240 with "similarity", 0.085 / 0.342 with "cosine";
# snare_hcellline, 5 seeds: 0.910 / 0.951 and 0.918 / 0.968; benchmarks/README.md).
SSA_OBJECTIVE = "cosine"

# The joint embedding: "average" averages each cell's two latent means, each taken from its
# half's centre (the training cells' mean) and scaled to unit length (the SSA step's "cosine"
# puts both halves on the same axes), the ATAC direction weighted by sqrt(JOINT_ATAC_SHARE) =
# 0.35; "concatenate" is Eq. 14, the ATAC half shrunk, never enlarged, to at most that share of
# the RNA half's total variance. Chosen on the two halves of default fits (k-means ARI / 15-NN,
# mean over seeds; benchmarks/README.md "The joint embedding"): real_scale preset (3 seeds)
# 0.406 / 0.667 concatenated at the former share 0.5; averaged from the origin at weight 0.4,
# 0.431 / 0.674; from the centres 0.462 at 0.2, 0.473 / 0.703 at 0.3, 0.477 / 0.704 at 0.35,
# 0.439 at 0.6. snare_hcellline (5 seeds): 0.975 / 0.990 at 0.2 and 0.3, 0.972 / 0.989 at 0.35
# against its RNA half's 0.971 / 0.985. At 100,000 peaks the ATAC half carries more and a
# higher weight helps (seed 0: 0.481 at 0.3, 0.494 at 0.35, 0.503 at 0.4). 0.3 was kept while a
# mapped query's ATAC half did not mix with the reference's (map_query's reference-query iLISI
# 1.31 / 1.23 at 0.3, 1.29 / 1.21 at 0.35; target 1.3); since new cells are scaled to the
# training cells' reach it is 1.45 at 0.3 and 1.44 at 0.35 (5 seeds), so 0.35 is the default
# (2026-12-04; benchmarks/README.md "Weight 0.35 since new cells mix"; on the same fits, 3
# seeds: 100,000 peaks 0.496 / 0.695 against 0.494 / 0.688 at 0.3, every seed >= PCA + LSI +
# 0.029; real_scale 0.477 / 0.705 against 0.475 / 0.703; snare 0.972 / 0.989 against 0.975 /
# 0.990, 5 seeds). Plain concatenation let an ATAC
# half with more spread but less type signal drown the RNA half (snare seed 0 before the SSA
# change: ATAC variance 204 vs RNA 22; joint ARI 0.933).
JOINT_EMBEDDING = "average"
JOINT_ATAC_SHARE = 0.1225
# With batch_key: weight of the batch-mixing term (each half's squared MMD between each batch
# and the minibatch, summed over halves), beside Eq. 13's terms weighted as in the paper.
# benchmarks/batches.py seed 0 (4 batches, shifts sd 1.5): joint iLISI 1.04 without it,
# 3.30 at 10 with cell-type ARI 1.000 (see benchmarks/README.md).
BATCH_MMD_WEIGHT = 10.0


def auto_patience(max_epochs: int) -> int:
    """Epochs in which no modality's validation loss reaches a new low before early stopping:
    a tenth of the budget."""
    return max(5, max_epochs // 10)


@dataclass(frozen=True)
class ModelSettings:
    """Every knob of FactVAE. Model and loss defaults are the authors' (DESIGN.md) but for the
    KL weights, the SSA step's learning rate and objective and the joint embedding's ATAC
    share (below); the training schedule (``max_epochs=None``: :func:`auto_max_epochs`; a
    validation fraction and early stopping) and ``bounded_inputs`` are this package's, made
    for data of real size.
    ``PRESETS["paper"]`` restores the authors' schedule and encoder inputs exactly.

    Several samples in one analysis: ``batch_key`` names a column of ``rna.obs`` (the sample,
    library or donor of each cell) whose levels the decoders condition on: each factor matrix
    gains one row of per-feature offsets per level
    (:class:`factvae.model.network.FactorDecoder`), so the latent need not spend itself on
    differences between samples. A list of columns is combined into one covariate whose levels
    are the combinations that occur, written ``"a|b"`` (the values joined by ``|`` in the
    order of the list). ``encode_batch=True`` also gives both encoders the cell's batch.
    ``batch_mmd_weight`` weighs the term that asks each half's latent to mix the batches
    (:func:`factvae.model.terms.batch_mmd`, as trVAE and scArches do; 0 turns it off): the
    offsets alone let the latent drop sample effects but do not make it.

    ``atac_recon_weight=None`` (the default) is :func:`auto_atac_recon_weight` of the model's
    peaks: the authors' 0.002 up to their 27,399 peaks, proportionally more above.
    ``atac_kl_weight=None`` (the default) equals it, so both halves are plain VAEs (beta = 1:
    the RNA's KL and reconstruction weights are both 0.1). ``ssa_lr`` is 4x the authors'
    (:data:`PAPER_SSA_LR`) so the SSA step can teach the ATAC encoder the RNA's structure
    against the joint step's pull, and ``ssa_objective`` (:data:`SSA_OBJECTIVE`) is what it
    teaches: ``"cosine"`` asks each cell's ATAC latent to point where its RNA latent points,
    ``"similarity"`` (the paper's Eq. 10-11) only that their cell-cell similarities agree.
    ``joint_embedding`` (:data:`JOINT_EMBEDDING`) is how the joint embedding combines the
    halves: ``"average"`` of each cell's RNA and ATAC means, each from its half's centre over
    the training cells and at unit length (it needs the halves on shared axes, so
    ``ssa_objective="cosine"``), or ``"concatenate"`` (Eq. 14).
    ``joint_atac_share`` (:data:`JOINT_ATAC_SHARE`) is the ATAC half's share of it against
    the RNA half's: its direction's squared weight when averaged, a cap on its total variance
    when concatenated (:func:`factvae.outputs.latent.fit_joint_rule`; None: the halves as
    they are, the paper's plain concatenation).

    ``projected_inputs=True``: the training cells' encoder inputs are their counts projected
    onto the PCA/LSI components, the same map that embeds new cells
    (:meth:`factvae.api.FactVAE.get_latent` with ``rna=``/``atac=``, ``map_query``), so a
    training cell mapped again gets exactly its own latent. The default, ``False``, keeps the
    truncated SVD's own scores (the authors' form, and every result measured so far) and
    scales new cells' projections per component to the training cells' reach
    (:func:`factvae.data.preprocessing.out_of_sample_scale`), since cells outside the fit
    project less far onto the components fitted to the training cells' noise.
    """

    n_latent: int = 50
    n_hvg: int = 2000
    n_components: int = 100
    min_cells: int = 3
    upstream: int = 2000
    likelihood: str = "zinb"
    rna_hidden: tuple[int, ...] = (512, 256)
    atac_hidden: tuple[int, ...] = (256,)
    dropout: float = 0.2
    rna_recon_weight: float = 0.1
    atac_recon_weight: float | None = None
    rna_kl_weight: float = 0.1
    atac_kl_weight: float | None = None
    reg_weight: float = 1.0
    lr: float = 1e-3
    ssa_lr: float = 2e-3
    ssa_objective: str = SSA_OBJECTIVE
    lr_decay: float | None = None
    grad_clip: float | None = None
    preprocess_seed: int = 0
    bounded_inputs: bool = True
    max_epochs: int | None = None
    early_stopping: bool = True
    validation_fraction: float = 0.1
    patience: int | None = None
    batch_key: str | list[str] | None = None
    encode_batch: bool = False
    batch_mmd_weight: float = BATCH_MMD_WEIGHT
    projected_inputs: bool = False
    joint_embedding: str = JOINT_EMBEDDING
    joint_atac_share: float | None = JOINT_ATAC_SHARE

    @property
    def batch_keys(self) -> list[str]:
        """The batch columns as a list (empty without ``batch_key``)."""
        if self.batch_key is None:
            return []
        return [self.batch_key] if isinstance(self.batch_key, str) else list(self.batch_key)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], preset: str = "default") -> ModelSettings:
        """Settings from a preset's defaults overridden by ``kwargs``."""
        if preset not in PRESETS:
            raise FactVAEInputError(
                f"preset={preset!r} is not one of {sorted(PRESETS)}; 'default' suits data of any "
                "size, 'paper' reproduces the authors' 300-epoch schedule."
            )
        # a setting given as None takes the preset's value where the preset has one
        given = {k: v for k, v in kwargs.items() if v is not None or k not in PRESETS[preset]}
        kwargs = {**PRESETS[preset], **given}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise FactVAEInputError(
                f"Unknown setting(s) {unknown}; valid settings are {sorted(known)}."
            )
        values = dict(kwargs)
        for name in ("rna_hidden", "atac_hidden"):
            if name in values:
                hidden = values[name]
                hidden = [hidden] if isinstance(hidden, (int, float)) else list(hidden)
                values[name] = tuple(int(h) if float(h).is_integer() else h for h in hidden)
        key = values.get("batch_key")
        if isinstance(key, (list, tuple)) and all(isinstance(k, str) for k in key):
            values["batch_key"] = key[0] if len(key) == 1 else list(key)  # one name: a str
        settings = cls(**values)
        settings._validate()
        return settings

    def _validate(self) -> None:
        for name in ("n_latent", "n_hvg", "n_components", "min_cells"):
            _positive_int(getattr(self, name), name)
        _positive_int(self.upstream + 1, "upstream (>= 0)")
        for name in ("rna_hidden", "atac_hidden"):
            for size in getattr(self, name):
                _positive_int(size, name)
        if self.ssa_objective not in SSA_OBJECTIVES:
            raise FactVAEInputError(
                f"ssa_objective must be one of {list(SSA_OBJECTIVES)}, not "
                f"{self.ssa_objective!r}; 'similarity' is the paper's Eq. 10-11."
            )
        if self.joint_embedding not in JOINT_EMBEDDINGS:
            raise FactVAEInputError(
                f"joint_embedding must be one of {list(JOINT_EMBEDDINGS)}, not "
                f"{self.joint_embedding!r}; 'concatenate' is the paper's Eq. 14."
            )
        if self.joint_embedding == "average" and self.ssa_objective != "cosine":
            raise FactVAEInputError(
                f"joint_embedding='average' averages the halves' directions, which share axes "
                f"only when the SSA step aligns them cell by cell (ssa_objective='cosine'); "
                f"with ssa_objective={self.ssa_objective!r} use joint_embedding='concatenate'."
            )
        if self.likelihood not in ("zinb", "nb"):
            raise FactVAEInputError(f"likelihood must be 'zinb' or 'nb', not {self.likelihood!r}.")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise FactVAEInputError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        weights = ["rna_recon_weight", "rna_kl_weight", "reg_weight", "batch_mmd_weight"]
        for name in ("atac_recon_weight", "atac_kl_weight"):  # None: resolved when training
            if getattr(self, name) is not None:
                weights.append(name)
        for name in weights:
            _finite(getattr(self, name), name, allow_zero=True)
        for name in ("lr", "ssa_lr"):
            _finite(getattr(self, name), name, allow_zero=False)
            if getattr(self, name) > 1:
                raise FactVAEInputError(
                    f"{name}={getattr(self, name)} is far too large for Adam; use ~1e-3."
                )
        decay = self.lr_decay
        if decay is not None and not (isinstance(decay, (int, float)) and 0 < decay <= 1):
            raise FactVAEInputError(
                f"lr_decay must be in (0, 1] (or None to decay to {FINAL_LR_FRACTION:.3f} of "
                f"lr by the last epoch), got {decay!r}."
            )
        if self.grad_clip is not None:
            _finite(self.grad_clip, "grad_clip", allow_zero=False)
        if self.joint_atac_share is not None:
            _finite(self.joint_atac_share, "joint_atac_share (or None to concatenate as is)",
                    allow_zero=False)  # fmt: skip
        for name in ("bounded_inputs", "early_stopping", "encode_batch", "projected_inputs"):
            if not isinstance(getattr(self, name), bool):
                value = getattr(self, name)
                raise FactVAEInputError(f"{name} must be True or False, got {value!r}.")
        for name in ("max_epochs", "patience"):
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), f"{name} (or None for the default)")
        key = self.batch_key
        keys = [key] if isinstance(key, str) else key
        if key is not None and not (
            isinstance(keys, list) and keys and all(isinstance(k, str) and k for k in keys)
        ):
            raise FactVAEInputError(
                f"batch_key must be the name of a column of rna.obs, or a list of names, got "
                f"{key!r}."
            )
        if keys and len(set(keys)) != len(keys):
            raise FactVAEInputError(f"batch_key names a column twice: {key!r}.")
        if self.encode_batch and key is None:
            raise FactVAEInputError(
                "encode_batch=True gives the encoders each cell's batch, so it needs batch_key= "
                "(a column of rna.obs)."
            )
        fraction = self.validation_fraction
        if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
                and 0 <= fraction < 0.5):  # fmt: skip
            raise FactVAEInputError(
                f"validation_fraction must be in [0, 0.5), got {fraction!r}; 0 trains on every "
                "cell (then early stopping watches the training loss)."
            )

    def check_against_data(self, n_cells: int) -> None:
        """Settings that only make sense for enough cells."""
        if n_cells < 3:
            raise FactVAEInputError(f"FactVAE needs at least 3 cells; got {n_cells}.")
        n_validation = self.validation_cells(n_cells)
        if self.validation_fraction > 0 and n_validation < 2:
            raise FactVAEInputError(
                f"validation_fraction={self.validation_fraction} holds out {n_validation} of "
                f"{n_cells} cells; use validation_fraction=0 for so few cells."
            )
        if self.n_latent >= n_cells:
            raise FactVAEInputError(
                f"n_latent={self.n_latent} is not below the number of cells ({n_cells}); use a "
                "smaller n_latent (the default is 50) or more cells."
            )

    def validation_cells(self, n_cells: int) -> int:
        """How many cells are held out for validation."""
        return round(self.validation_fraction * n_cells)

    def resolved_atac_recon_weight(self, n_peaks: int) -> float:
        """The ATAC reconstruction weight as set, or :func:`auto_atac_recon_weight`."""
        weight = self.atac_recon_weight
        return auto_atac_recon_weight(n_peaks) if weight is None else weight

    def resolved_atac_kl_weight(self, n_peaks: int) -> float:
        """The ATAC KL weight as set, or (None) the ATAC reconstruction weight: beta = 1."""
        weight = self.atac_kl_weight
        return self.resolved_atac_recon_weight(n_peaks) if weight is None else weight

    def loss_weights(self, n_peaks: int) -> LossWeights:
        return LossWeights(
            self.rna_recon_weight,
            self.resolved_atac_recon_weight(n_peaks),
            self.rna_kl_weight,
            self.resolved_atac_kl_weight(n_peaks),
            self.reg_weight,
            self.batch_mmd_weight if self.batch_key is not None else 0.0,
        )

    def optimiser(self, max_epochs: int = PAPER_EPOCHS) -> OptimiserSettings:
        return OptimiserSettings(
            self.lr, self.ssa_lr, self.resolved_lr_decay(max_epochs), self.grad_clip
        )

    def resolved_lr_decay(self, max_epochs: int) -> float:
        """The per-epoch decay: as set, or the one that brings the learning rates to the
        fraction the paper's schedule ends at (0.995^300 = 0.222) by ``max_epochs``."""
        return self.lr_decay or FINAL_LR_FRACTION ** (1.0 / max_epochs)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["rna_hidden"] = list(self.rna_hidden)
        values["atac_hidden"] = list(self.atac_hidden)
        if isinstance(self.batch_key, list):
            values["batch_key"] = list(self.batch_key)
        return values


@dataclass(frozen=True)
class RunSettings:
    """Defaults of the calls around the model: ``fit`` and the outputs (the CLI and the R
    package take theirs from here, or are tested against it)."""

    batch_size: int = 128
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    checkpoint_every: int = 10
    chunk_size: int = 1024
    augment_latent: str = "joint"
    link_window: int = 150_000
    link_score: str = "combined"
    # links cover every annotated gene the counts detect at all (the model fits only genes in
    # min_cells); a gene seen in a cell or two carries little co-variation evidence, so its
    # links rank by proximity, as a biologist ranks them
    link_min_cells: int = 1
    n_background: int = 100_000


MODEL_DEFAULTS = ModelSettings()
RUN_DEFAULTS = RunSettings()


def defaults(preset: str = "default") -> dict[str, Any]:
    """Every default, model and run, of ``preset`` as one flat dict: what R and the docs read."""
    return {**ModelSettings.from_kwargs({}, preset).to_dict(), **asdict(RUN_DEFAULTS)}


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # The authors' schedule and inputs: 300 epochs on every cell, no validation, unbounded PCA
    # scores into the RNA encoder. Gives today's seeded results bit for bit (tested).
    "paper": {
        "atac_recon_weight": ATAC_WEIGHT,
        "rna_kl_weight": 0.001,
        "atac_kl_weight": 0.001,
        "ssa_lr": PAPER_SSA_LR,
        "ssa_objective": "similarity",
        "joint_embedding": "concatenate",
        "joint_atac_share": None,
        "lr_decay": PAPER_LR_DECAY,
        "bounded_inputs": False,
        "max_epochs": PAPER_EPOCHS,
        "early_stopping": False,
        "validation_fraction": 0.0,
        "projected_inputs": False,
    },
}


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FactVAEInputError(f"{name} must be a positive integer, got {value!r}.")


def _finite(value: Any, name: str, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise FactVAEInputError(f"{name} must be a finite number {bound}, got {value!r}.")
