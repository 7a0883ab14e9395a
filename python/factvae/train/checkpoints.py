"""Periodic training checkpoints so an interrupted fit resumes to the same model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from factvae.errors import FactVAEInputError
from factvae.io.persistence import load_torch, save_torch

CHECKPOINT_FILE = "checkpoint.pt"


class Resumable(Protocol):
    """What a checkpoint saves and restores: the trainer's side, named here so that this module
    need not import the trainer, which imports it."""

    def state(self, rng: np.random.Generator) -> dict: ...

    def load_state(self, state: dict) -> np.random.Generator: ...


@dataclass
class CheckpointPolicy:
    """Save every ``every`` epochs (and at the end) to ``directory``; resume from it if present.

    ``fingerprint`` names what the run depends on (data, settings, seed); a checkpoint made
    with another fingerprint is refused, so a resumed fit is the fit that was interrupted.
    """

    directory: Path
    every: int
    resume: bool
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.directory) / CHECKPOINT_FILE

    def due(self, epoch: int, max_epochs: int) -> bool:
        return epoch % self.every == 0 or epoch == max_epochs

    def save(self, trainer: Resumable, rng: np.random.Generator) -> None:
        save_torch(self.path, {**trainer.state(rng), "fingerprint": self.fingerprint})

    def restore(self, trainer: Resumable, rng: np.random.Generator) -> np.random.Generator:
        """The trainer's state from the checkpoint when resuming and one exists; else ``rng``."""
        if not (self.resume and self.path.exists()):
            return rng
        state = load_torch(self.path)
        saved = state.get("fingerprint", {})
        changed = sorted(k for k in {*saved, *self.fingerprint}
                         if saved.get(k) != self.fingerprint.get(k))  # fmt: skip
        if changed:
            raise FactVAEInputError(
                f"The checkpoint in {self.directory} was made with different {', '.join(changed)}; "
                "fit the same data with the same settings to resume it, or pass resume=False "
                "(CLI: drop --resume) or another checkpoint_dir to start afresh."
            )
        return trainer.load_state(state)
