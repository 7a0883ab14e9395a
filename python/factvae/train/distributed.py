"""Data-parallel training on ``torch.distributed`` (gloo on CPUs, NCCL on GPUs).

Every rank holds the same network (same seed), trains on its own shard of cells, and averages
gradients with an all-reduce after each backward pass, so the ranks stay identical. Launch with
``torchrun --nproc-per-node N`` (or ``factvae fit --nproc N``); ``FactVAE.fit`` notices the
initialised process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the training ranks."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, n_cells: int) -> np.ndarray:
        """This rank's cells: every ``world_size``-th cell, all shards of equal length."""
        per_rank = n_cells // self.world_size
        return np.arange(self.rank, per_rank * self.world_size, self.world_size)

    def average_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        if not self.active:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad /= self.world_size

    def average(self, value: float) -> float:
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return float(tensor) / self.world_size


def current_group() -> ProcessGroup:
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size())
    return ProcessGroup()


def init_from_environment(device: torch.device) -> ProcessGroup:
    """Join the group torchrun describes in the environment (no-op when not launched by it)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        return current_group()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return current_group()
