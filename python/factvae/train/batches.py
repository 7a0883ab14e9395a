"""Minibatches for training: the cells' encoder inputs and sparse counts, cut into shuffled
batches and moved to the device, never densified."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from factvae.data.counts import RowSource
from factvae.model.fused import SparseCounts
from factvae.model.network import Batch


@dataclass
class TrainingData:
    """Everything a minibatch is cut from; counts stay sparse (cells x features row sources:
    CSR in memory, or a backed file of which only each minibatch's rows are read). ``batch``
    holds each cell's batch code (0..n_batches-1) when the model has a batch covariate."""

    rna_rep: np.ndarray
    atac_rep: np.ndarray
    rna_counts: RowSource
    atac_counts: RowSource
    rna_log_library: np.ndarray
    atac_log_library: np.ndarray
    batch: np.ndarray | None = None
    n_batches: int = 0

    @property
    def n_cells(self) -> int:
        return self.rna_rep.shape[0]


def sparse_rows(matrix: RowSource, index: np.ndarray) -> SparseCounts:
    """The chosen rows of a count matrix as non-zero triplets (never densified), ordered by
    feature: the likelihood's blocks are features x cells, so its gathers and scatters at the
    non-zeros then walk memory forwards."""
    block = matrix.rows(index).tocsc()
    cols = np.repeat(np.arange(block.shape[1]), np.diff(block.indptr))
    return SparseCounts(
        torch.from_numpy(block.indices.astype(np.int64)),
        torch.from_numpy(cols.astype(np.int64)),
        torch.from_numpy(block.data.astype(np.float32)),
        (len(index), matrix.shape[1]),
    )


def make_batch(data: TrainingData, index: np.ndarray, device: torch.device) -> Batch:
    pin = device.type == "cuda"

    def dense(values: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        return (tensor.pin_memory() if pin else tensor).to(device, non_blocking=pin)

    one_hot = None
    if data.batch is not None:
        one_hot = dense(np.eye(data.n_batches, dtype=np.float32)[data.batch[index]])
    return Batch(
        dense(data.rna_rep[index]),
        dense(data.atac_rep[index]),
        sparse_rows(data.rna_counts, index).to(device, non_blocking=pin),
        sparse_rows(data.atac_counts, index).to(device, non_blocking=pin),
        dense(data.rna_log_library[index]),
        dense(data.atac_log_library[index]),
        one_hot,
    )


def minibatches(n_cells: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches; the last partial batch is dropped (as the authors do) unless it is all."""
    order = rng.permutation(n_cells)
    n_full = n_cells // batch_size
    if n_full == 0:
        return [order]
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(n_full)]
