"""Model settings with the authors' defaults, validated once with messages that name the fix."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import FactVAEInputError
from .training import LossWeights, OptimiserSettings


@dataclass(frozen=True)
class ModelSettings:
    """Every knob of FactVAE; defaults are the authors' (DESIGN.md)."""

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
    atac_recon_weight: float = 0.002
    kl_weight: float = 0.001
    reg_weight: float = 1.0
    lr: float = 1e-3
    ssa_lr: float = 5e-4
    lr_decay: float = 0.995
    grad_clip: float | None = None
    preprocess_seed: int = 0

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> ModelSettings:
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
        if self.likelihood not in ("zinb", "nb"):
            raise FactVAEInputError(f"likelihood must be 'zinb' or 'nb', not {self.likelihood!r}.")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise FactVAEInputError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        for name in ("rna_recon_weight", "atac_recon_weight", "kl_weight", "reg_weight"):
            _finite(getattr(self, name), name, allow_zero=True)
        for name in ("lr", "ssa_lr"):
            _finite(getattr(self, name), name, allow_zero=False)
            if getattr(self, name) > 1:
                raise FactVAEInputError(
                    f"{name}={getattr(self, name)} is far too large for Adam; use ~1e-3."
                )
        if not (isinstance(self.lr_decay, (int, float)) and 0 < self.lr_decay <= 1):
            raise FactVAEInputError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}.")
        if self.grad_clip is not None:
            _finite(self.grad_clip, "grad_clip", allow_zero=False)

    def check_against_data(self, n_cells: int) -> None:
        """Settings that only make sense for enough cells."""
        if n_cells < 3:
            raise FactVAEInputError(f"FactVAE needs at least 3 cells; got {n_cells}.")
        if self.n_latent >= n_cells:
            raise FactVAEInputError(
                f"n_latent={self.n_latent} is not below the number of cells ({n_cells}); use a "
                "smaller n_latent (the default is 50) or more cells."
            )

    def loss_weights(self) -> LossWeights:
        return LossWeights(
            self.rna_recon_weight, self.atac_recon_weight, self.kl_weight, self.reg_weight
        )

    def optimiser(self) -> OptimiserSettings:
        return OptimiserSettings(self.lr, self.ssa_lr, self.lr_decay, self.grad_clip)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["rna_hidden"] = list(self.rna_hidden)
        values["atac_hidden"] = list(self.atac_hidden)
        return values


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FactVAEInputError(f"{name} must be a positive integer, got {value!r}.")


def _finite(value: Any, name: str, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise FactVAEInputError(f"{name} must be a finite number {bound}, got {value!r}.")
