"""The loss terms of Eq. 8-13 besides the likelihood, the SSA step's per-cell alignment, the
batch-mixing term, and the weights that combine them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """Weights of Eq. 1 and 13: each modality's reconstruction and KL, alpha (the
    regulatory term), and with a batch covariate the batch-mixing term (:func:`batch_mmd`).
    Built from :class:`factvae.settings.ModelSettings`, which owns the defaults."""

    rna_recon: float
    atac_recon: float
    rna_kl: float
    atac_kl: float
    regulatory: float
    batch_mmd: float  # 0 without a batch covariate

    def per_modality(self, terms: dict[str, float]) -> dict[str, float]:
        """Each modality's weighted reconstruction and KL (its share of Eq. 13): what early
        stopping watches, as one modality can overfit while the other still improves."""
        return {
            "rna": self.rna_recon * terms["rna_nll"] + self.rna_kl * terms["rna_kl"],
            "atac": self.atac_recon * terms["atac_nll"] + self.atac_kl * terms["atac_kl"],
        }


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per cell."""
    return 0.5 * torch.sum(torch.exp(logvar) + mean.pow(2) - logvar - 1, dim=1)


def regulatory_loss(
    genes: torch.Tensor, peaks: torch.Tensor, pair_genes: torch.Tensor, pair_peaks: torch.Tensor
) -> torch.Tensor:
    """Eq. 8-9 on the G2P pairs only: mean of (cos(gene_i, peak_j) - 1)^2.

    ``genes``/``peaks`` are the d x D factor matrices; each column is a feature embedding.
    Equal to the dense similarity matrix restricted to the pairs, in O(pairs * d).
    """
    # only the pairs' columns; index_select's backward is 3.7x faster than indexing's here
    gene_cols, peak_cols = genes.index_select(1, pair_genes), peaks.index_select(1, pair_peaks)
    cosine = (gene_cols * peak_cols).sum(dim=0) / (gene_cols.norm(dim=0) * peak_cols.norm(dim=0))
    return torch.mean((cosine - 1.0) ** 2)


def ssa_loss(z_teacher: torch.Tensor, z_student: torch.Tensor) -> torch.Tensor:
    """Eq. 10-11: 1 - mean row-wise cosine between the cells' cosine-similarity matrices."""
    teacher = F.normalize(z_teacher, dim=1)
    student = F.normalize(z_student, dim=1)
    return torch.mean(1.0 - F.cosine_similarity(teacher @ teacher.T, student @ student.T, dim=1))


def cell_alignment_loss(teacher_mean: torch.Tensor, student_mean: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine between each cell's two latent means: the SSA step's ``"cosine"``
    objective. Eq. 11 asks only that the ATAC half's cell-cell similarities copy the RNA
    half's, which sparse peaks can meet with little of the RNA's structure; this asks each
    cell's ATAC latent to point where its RNA latent points, the same axes that the
    regulatory term (Eq. 8-9) already ties the two decoders' factors to."""
    return torch.mean(1.0 - F.cosine_similarity(teacher_mean, student_mean, dim=1))


SSA_OBJECTIVES = ("similarity", "cosine")  # Eq. 10-11 (the paper's); cell_alignment_loss


MMD_BANDWIDTHS = (0.125, 0.5, 2.0)  # RBF widths, as fractions of the mean squared distance


def batch_mmd(z: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """How far each batch's cells lie from the minibatch's as a whole: the squared maximum
    mean discrepancy (multi-width RBF kernel) between each batch present with >= 2 cells and
    all cells, averaged over those batches.

    The decoders' batch offsets (Eq. 7 with ``B``) let the latent drop sample effects but
    nothing asks it to: fitted with them alone, the halves' neighbours stay in their own
    sample (iLISI ~1.05 of 4 in ``benchmarks/batches.py``). This penalty, as in trVAE and
    scArches, asks for it. ``batch`` is the cells' one-hot (cells x batches); the widths
    follow the minibatch's own scale, so the penalty does not change with the latent's.
    """
    squared = torch.cdist(z, z).pow(2)
    scale = squared.detach().mean().clamp_min(1e-6)
    kernel = sum(torch.exp(-squared / (scale * width)) for width in MMD_BANDWIDTHS)
    sizes = batch.sum(dim=0)
    present = (sizes >= 2).to(z.dtype)
    # (a batch's mean embedding - all cells' mean embedding) as weights on the cells
    weights = (batch.to(z.dtype) / sizes.clamp_min(1) - 1.0 / z.shape[0]) * present
    discrepancy = torch.einsum("ib,ij,jb->b", weights, kernel, weights)
    return discrepancy.sum() / present.sum().clamp_min(1)
