"""Cell embeddings of a trained model (Eq. 14), computed in chunks of cells so memory is
bounded by the chunk, not the data."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from factvae.errors import FactVAEInputError
from factvae.model.network import FactVAENetwork


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` of ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def one_hot(codes: np.ndarray | None, n_levels: int, device: torch.device) -> torch.Tensor | None:
    """The cells' batch one-hot (cells x levels, float32), or None without batch codes."""
    if codes is None:
        return None
    index = torch.as_tensor(np.asarray(codes), dtype=torch.long, device=device)
    return torch.nn.functional.one_hot(index, n_levels).float()


@torch.no_grad()
def latent_means(
    network: FactVAENetwork,
    rna_rep: np.ndarray | None,
    atac_rep: np.ndarray | None,
    kind: str,
    device: torch.device,
    chunk_size: int = 4096,
    batch: np.ndarray | None = None,
) -> np.ndarray:
    """Posterior means in eval mode; ``joint`` = concat(z_atac, z_rna) as in Eq. 14.

    ``batch`` holds the cells' batch codes, read by encoders built with ``encode_batch``.
    """
    if kind not in ("joint", "rna", "atac"):
        raise FactVAEInputError(f"kind must be 'joint', 'rna' or 'atac', not {kind!r}.")
    if network.arch.encode_batch and batch is None:
        raise FactVAEInputError("This model's encoders read each cell's batch; give it.")
    network.eval()
    reps = [rep for rep in (rna_rep, atac_rep) if rep is not None]
    parts = []
    for part in chunks(reps[0].shape[0], chunk_size):
        codes = None if batch is None else batch[part]
        s = one_hot(codes, network.arch.n_batches, device)
        pieces = []
        if kind in ("joint", "atac"):
            assert atac_rep is not None
            pieces.append(network.encode_atac(torch.from_numpy(atac_rep[part]).to(device), s)[0])
        if kind in ("joint", "rna"):
            assert rna_rep is not None
            pieces.append(network.encode_rna(torch.from_numpy(rna_rep[part]).to(device), s)[0])
        parts.append(torch.cat(pieces, dim=1).float().cpu().numpy())
    return np.concatenate(parts, axis=0)
