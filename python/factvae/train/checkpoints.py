"""Periodic training checkpoints so an interrupted fit resumes to the same model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from factvae.io.persistence import load_torch, save_torch

if TYPE_CHECKING:
    from factvae.train.trainer import Trainer

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class CheckpointPolicy:
    """Save every ``every`` epochs (and at the end) to ``directory``; resume from it if present."""

    directory: Path
    every: int = 10
    resume: bool = True

    @property
    def path(self) -> Path:
        return Path(self.directory) / CHECKPOINT_FILE

    def due(self, epoch: int, max_epochs: int) -> bool:
        return epoch % self.every == 0 or epoch == max_epochs

    def save(self, trainer: Trainer, rng: np.random.Generator) -> None:
        save_torch(self.path, trainer.state(rng))

    def restore(self, trainer: Trainer, rng: np.random.Generator) -> np.random.Generator:
        if self.resume and self.path.exists():
            return trainer.load_state(load_torch(self.path))
        return rng
