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


@torch.no_grad()
def latent_means(
    network: FactVAENetwork,
    rna_rep: np.ndarray,
    atac_rep: np.ndarray,
    kind: str,
    device: torch.device,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Posterior means in eval mode; ``joint`` = concat(z_atac, z_rna) as in Eq. 14."""
    if kind not in ("joint", "rna", "atac"):
        raise FactVAEInputError(f"kind must be 'joint', 'rna' or 'atac', not {kind!r}.")
    network.eval()
    parts = []
    for part in chunks(rna_rep.shape[0], chunk_size):
        pieces = []
        if kind in ("joint", "atac"):
            pieces.append(network.atac_encoder(torch.from_numpy(atac_rep[part]).to(device))[0])
        if kind in ("joint", "rna"):
            pieces.append(network.rna_encoder(torch.from_numpy(rna_rep[part]).to(device))[0])
        parts.append(torch.cat(pieces, dim=1).float().cpu().numpy())
    return np.concatenate(parts, axis=0)
