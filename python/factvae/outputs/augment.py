"""Augmented ATAC (Eq. 12): each cell's expected accessibility under the ATAC decoder, one
chunk of cells at a time, dense, thresholded to sparse, or streamed by the caller."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from factvae.errors import FactVAEInputError
from factvae.model.network import FactVAENetwork
from factvae.model.reference import log_normalised_mean
from factvae.outputs.latent import JointRule, chunks, joint_atac_latent, one_hot

# What a cell's augmented ATAC decodes: the ATAC latent its joint embedding points to, or the
# ATAC half's own posterior means (Eq. 12 as the paper states it)
AUGMENT_LATENTS = ("joint", "atac")


def available_memory_bytes() -> int | None:
    """Physical memory the OS reports as available (Linux), or None when it cannot tell."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@torch.no_grad()
def augmented_chunks(
    network: FactVAENetwork,
    atac_rep: np.ndarray,
    log_library: np.ndarray,
    peak_index: np.ndarray,
    device: torch.device,
    chunk_size: int,
    batch: np.ndarray | None = None,
    decoder_batch: np.ndarray | None = None,
    rna_rep: np.ndarray | None = None,
    joint: JointRule | None = None,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Eq. 12, exp(sf) * softmax(z_a F), one chunk of cells at a time, for the chosen peaks.

    With ``rna_rep`` and the model's ``joint`` rule, z_a is the ATAC latent the cell's joint
    embedding points to (:func:`joint_atac_latent`); without them, the ATAC half's means.

    The softmax is over all peaks (it defines the shares), then the chosen columns are kept.
    With a batch covariate, ``batch`` holds the cells' own batch codes (what an encoder built
    with ``encode_batch`` reads) and ``decoder_batch`` the batch each cell is decoded in
    (its own, or one reference level for every cell): the logits are ``z_a F + B_F[batch]``.
    """
    network.eval()
    feature = network.atac_decoder.feature
    offsets = network.atac_decoder.batch_offsets()
    columns = torch.as_tensor(peak_index, dtype=torch.long, device=device)
    n_batches = network.arch.n_batches
    for part in chunks(atac_rep.shape[0], chunk_size):
        own = None if batch is None else one_hot(batch[part], n_batches, device)
        z = network.encode_atac(torch.from_numpy(atac_rep[part]).to(device), own)[0]
        if joint is not None and rna_rep is not None:
            z_rna = network.encode_rna(torch.from_numpy(rna_rep[part]).to(device), own)[0]
            z = joint_atac_latent(z_rna, z, joint)
        offset = None
        if offsets is not None:
            assert decoder_batch is not None
            decoded_in = one_hot(decoder_batch[part], n_batches, device)
            assert decoded_in is not None
            offset = decoded_in @ offsets[0]
        log_share = log_normalised_mean(z, feature, columns, offset)
        library = torch.from_numpy(log_library[part]).to(device)[:, None]
        yield part, torch.exp(library + log_share).float().cpu().numpy()


def check_dense_fits(n_cells: int, n_peaks: int) -> None:
    """Refuse a dense matrix that would not fit in the memory the OS reports as available,
    naming the ways to keep it smaller, before any chunk is decoded."""
    needed = n_cells * n_peaks * 4
    available = available_memory_bytes()
    if available is not None and needed > 0.8 * available:
        raise FactVAEInputError(
            f"A dense augmented matrix of {n_cells} cells x {n_peaks} peaks needs "
            f"{needed / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB is available. "
            "Pass threshold= to keep it sparse, choose fewer cells= or peaks=, or stream "
            "it to disk with out=."
        )


def collect(
    parts: Iterator[tuple[slice, np.ndarray]], n_cells: int, n_peaks: int, threshold: float | None
) -> np.ndarray | sp.csr_matrix:
    """The chunks of :func:`augmented_chunks` as one matrix: dense float32 when ``threshold``
    is None (checked to fit first), else CSR keeping only values >= ``threshold``."""
    if threshold is None:
        check_dense_fits(n_cells, n_peaks)
        dense = np.empty((n_cells, n_peaks), dtype=np.float32)
        for part, values in parts:
            dense[part] = values
        return dense
    blocks = []
    for _, values in parts:
        values[values < threshold] = 0.0
        blocks.append(sp.csr_matrix(values))
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_peaks))
