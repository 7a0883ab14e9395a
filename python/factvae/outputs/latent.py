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
    atac_scale: float = 1.0,
) -> np.ndarray:
    """Posterior means in eval mode; ``joint`` = concat(atac_scale * z_atac, z_rna), Eq. 14
    with the ATAC half shrunk by :func:`joint_atac_scale` (1: the paper's concatenation).

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
            atac = network.encode_atac(torch.from_numpy(atac_rep[part]).to(device), s)[0]
            pieces.append(atac * atac_scale if kind == "joint" else atac)
        if kind in ("joint", "rna"):
            assert rna_rep is not None
            pieces.append(network.encode_rna(torch.from_numpy(rna_rep[part]).to(device), s)[0])
        parts.append(torch.cat(pieces, dim=1).float().cpu().numpy())
    return np.concatenate(parts, axis=0)


def joint_atac_scale(
    network: FactVAENetwork,
    rna_rep: np.ndarray,
    atac_rep: np.ndarray,
    share: float | None,
    device: torch.device,
    batch: np.ndarray | None = None,
) -> float:
    """The factor the joint embedding multiplies the ATAC half by: the largest factor up to 1
    that leaves the ATAC half's total variance over these cells at most ``share`` times the
    RNA half's (``None``: 1, the paper's plain concatenation). Never above 1, so an ATAC half
    that learnt little (a small spread) is not enlarged into noise; below 1 when the ATAC half
    spreads more than the RNA half it learnt from, which would otherwise drown it."""
    if share is None:
        return 1.0
    spread = {
        kind: float(latent_means(network, rna_rep, atac_rep, kind, device, batch=batch)
                    .var(axis=0).sum())
        for kind in ("rna", "atac")
    }  # fmt: skip
    if spread["atac"] <= share * spread["rna"]:
        return 1.0
    return float(np.sqrt(share * spread["rna"] / spread["atac"]))
