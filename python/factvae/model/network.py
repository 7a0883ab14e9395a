"""The FactVAE network (paper Eq. 2-13): encoders, factorised decoders, and its objective."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from factvae.model.fused import SparseCounts, factorised_nll
from factvae.model.terms import (
    LossWeights,
    batch_mmd,
    cell_alignment_loss,
    gaussian_kl,
    regulatory_loss,
    ssa_loss,
)


class UniformDropout(nn.Dropout):
    """Inverted dropout whose mask is drawn as ``rand >= p``: the same distribution as
    ``nn.Dropout``, at half the cost on CPUs, where ``bernoulli_`` is the slow draw
    (0.48 vs 0.24 ms for a 128 x 512 batch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))


# Bounds of the encoders' log-variance: variances between 9e-14 and 3.3e6 (sd <= 1,808), so
# exp never overflows float32 and the KL stays below 1.7e6 per dimension whatever the input.
LOGVAR_BOUNDS = (-30.0, 15.0)


def bounded_logvar(raw: torch.Tensor) -> torch.Tensor:
    """``raw`` clamped to ``LOGVAR_BOUNDS`` in the forward pass, with the gradient passed
    straight through: the KL term, evaluated at the bound, still pulls a head that has left
    the range back (a plain clamp would give it no gradient at all). Inside the bounds the
    value and gradient are exactly the unbounded ones."""
    # (raw - raw.detach()) is exactly 0 with a gradient of 1, so the value is the clamp exactly
    return raw.detach().clamp(*LOGVAR_BOUNDS) + (raw - raw.detach())


class Encoder(nn.Module):
    """MLP with ELU and dropout, then linear heads for the mean and log-variance (Eq. 2-4);
    the log-variance is bounded by :func:`bounded_logvar`. With a batch covariate given to
    the encoders (``encode_batch``), the input is ``[x, s]``: the cell's reduction followed by
    its batch one-hot, so ``sizes[0]`` counts both."""

    def __init__(self, sizes: list[int], n_latent: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ELU()]
            if dropout > 0:
                layers.append(UniformDropout(dropout))
        self.hidden = nn.Sequential(*layers)
        self.mean = nn.Linear(sizes[-1], n_latent)
        self.logvar = nn.Linear(sizes[-1], n_latent)

    def forward(
        self, x: torch.Tensor, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if batch is not None:
            x = torch.cat([x, batch.to(x.dtype)], dim=1)
        h = self.hidden(x)
        mean, logvar = self.mean(h), bounded_logvar(self.logvar(h))
        if self.training:
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        else:
            z = mean
        return mean, logvar, z

    def input_layers(self) -> list[nn.Linear]:
        """The layers that read the input (the first hidden one, or both heads without any)."""
        first = [m for m in self.hidden if isinstance(m, nn.Linear)][:1]
        return first or [self.mean, self.logvar]


class FactorDecoder(nn.Module):
    """Eq. 7: feature factor matrices (d x D) map a cell embedding to ZINB parameters.

    Without a batch covariate, exactly the paper's Eq. 7::

        mu = exp(sf) * softmax(z F),  theta = exp(softmax(z Disp)),  pi = z Drop

    With ``n_batches`` levels (``batch_key``), the cell's batch one-hot ``s`` (1 x n_batches)
    is appended to ``z`` and each factor matrix gains ``n_batches`` rows of per-feature batch
    offsets ``B`` (``feature_batch``, ``dispersion_batch``, ``dropout_batch``, each
    n_batches x D, initialised to zero), so every logit becomes
    ``[z, s] @ [F; B] = z F + B[batch]``::

        mu = exp(sf) * softmax(z F + B_F[b]),  theta = exp(softmax(z Disp + B_Disp[b])),
        pi = z Drop + B_Drop[b]

    The batch shifts each feature's mean, dispersion and zero-inflation in that batch; the
    factor columns ``F`` (the gene and peak embeddings, the regulatory term's input) stay
    batch-free. The fused likelihood is reused as it is, given ``[z, s]`` and ``[F; B]``.
    Zero offsets draw nothing from the random generator, so a model without batches is built
    exactly as before.
    """

    def __init__(self, n_latent: int, n_features: int, zero_inflated: bool, n_batches: int) -> None:
        super().__init__()
        self.feature = nn.Parameter(torch.empty(n_latent, n_features))
        self.dispersion = nn.Parameter(torch.empty(n_latent, n_features))
        self.dropout = nn.Parameter(torch.empty(n_latent, n_features)) if zero_inflated else None
        for parameter in self.parameters():
            nn.init.xavier_normal_(parameter)
        self.feature_batch: nn.Parameter | None = None
        self.dispersion_batch: nn.Parameter | None = None
        self.dropout_batch: nn.Parameter | None = None
        if n_batches:
            self.feature_batch = nn.Parameter(torch.zeros(n_batches, n_features))
            self.dispersion_batch = nn.Parameter(torch.zeros(n_batches, n_features))
            if zero_inflated:
                self.dropout_batch = nn.Parameter(torch.zeros(n_batches, n_features))

    def batch_offsets(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """``(B_F, B_Disp, B_Drop)``, or None without a batch covariate."""
        if self.feature_batch is None or self.dispersion_batch is None:
            return None
        return self.feature_batch, self.dispersion_batch, self.dropout_batch

    def nll(
        self,
        z: torch.Tensor,
        log_library: torch.Tensor,
        counts: SparseCounts,
        product_dtype: torch.dtype | None = None,
        batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-cell negative log-likelihood of the counts, summed over features; ``batch`` is
        the cells' batch one-hot (needed exactly when the decoder has batch offsets)."""
        offsets = self.batch_offsets()
        if offsets is None:
            return factorised_nll(
                z, self.feature, self.dispersion, self.dropout, log_library, counts,
                product_dtype,
            )  # fmt: skip
        if batch is None:
            raise ValueError("this decoder conditions on the batch: pass the batch one-hot")
        factors = [
            None if factor is None else torch.cat([factor, offset], dim=0)
            for factor, offset in zip((self.feature, self.dispersion, self.dropout), offsets)
        ]
        assert factors[0] is not None and factors[1] is not None
        return factorised_nll(
            torch.cat([z, batch.to(z.dtype)], dim=1), factors[0], factors[1], factors[2],
            log_library, counts, product_dtype,
        )  # fmt: skip


@dataclass(frozen=True)
class Architecture:
    """Sizes that define the network; saved with the model to rebuild it. Built from
    :class:`factvae.settings.ModelSettings`, which owns the defaults."""

    rna_input: int
    atac_input: int
    n_genes: int
    n_peaks: int
    n_latent: int
    rna_hidden: tuple[int, ...]
    atac_hidden: tuple[int, ...]
    dropout: float
    rna_likelihood: str
    atac_likelihood: str
    n_batches: int  # levels of the batch covariate (0: none)
    encode_batch: bool  # the encoders read the batch one-hot too


@dataclass
class Batch:
    """The tensors one training step reads: encoder inputs, sparse counts, log libraries,
    and the cells' batch one-hot (cells x n_batches) when the model has a batch covariate."""

    rna_rep: torch.Tensor
    atac_rep: torch.Tensor
    rna_counts: SparseCounts
    atac_counts: SparseCounts
    rna_log_library: torch.Tensor
    atac_log_library: torch.Tensor
    batch: torch.Tensor | None = None


class FactVAENetwork(nn.Module):
    """RNA-VAE and ATAC-VAE side by side, tied by the gene-to-peak prior; the decoders' factor
    columns are feature embeddings. Owns its objective: :meth:`loss` (Eq. 13) and
    :meth:`ssa_loss` (Eq. 11).

    ``prior_pairs`` are the (gene, peak) column indices of the prior's pairs; they are kept as
    non-persistent buffers (they move with the network, and are saved with the model's prior,
    not in its weights).

    With a batch covariate (``arch.n_batches`` levels) both decoders condition on the cell's
    batch through per-feature offsets (:class:`FactorDecoder`: Eq. 7 with ``z F`` replaced by
    ``[z, s] @ [F; B] = z F + B[batch]``), and with ``arch.encode_batch`` both encoders read
    ``[x, s]``. Without one the network, its parameters and their initialisation are the
    paper's, unchanged.
    """

    def __init__(self, arch: Architecture, prior_pairs: tuple[np.ndarray, np.ndarray]) -> None:
        super().__init__()
        self.arch = arch
        extra = arch.n_batches if arch.encode_batch else 0
        self.rna_encoder = Encoder(
            [arch.rna_input + extra, *arch.rna_hidden], arch.n_latent, arch.dropout
        )
        self.atac_encoder = Encoder(
            [arch.atac_input + extra, *arch.atac_hidden], arch.n_latent, arch.dropout
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
        self.rna_decoder = FactorDecoder(
            arch.n_latent, arch.n_genes, arch.rna_likelihood == "zinb", arch.n_batches
        )
        self.atac_decoder = FactorDecoder(
            arch.n_latent, arch.n_peaks, arch.atac_likelihood == "zinb", arch.n_batches
        )
        pair_genes, pair_peaks = (torch.as_tensor(np.asarray(a), dtype=torch.long)
                                  for a in prior_pairs)  # fmt: skip
        self.register_buffer("pair_genes", pair_genes, persistent=False)
        self.register_buffer("pair_peaks", pair_peaks, persistent=False)

    def _encoder_batch(self, batch: torch.Tensor | None) -> torch.Tensor | None:
        return batch if self.arch.encode_batch else None

    def encode_rna(
        self, rep: torch.Tensor, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The RNA encoder on a reduction (and the batch one-hot, read with ``encode_batch``):
        mean, log-variance and z (a sample while training, the mean in eval mode)."""
        return self.rna_encoder(rep, self._encoder_batch(batch))

    def encode_atac(
        self, rep: torch.Tensor, batch: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`encode_rna`, for the ATAC encoder."""
        return self.atac_encoder(rep, self._encoder_batch(batch))

    def loss(
        self, batch: Batch, weights: LossWeights, product_dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Eq. 13's terms, each averaged over the batch's cells: both modalities' negative
        log-likelihood and KL (Eq. 1), the regulatory term (Eq. 8-9), and ``joint``, their sum
        weighted by ``weights`` (alpha multiplies exp of the regulatory term, as the authors
        do). With a batch covariate, ``batch_mmd`` (:func:`batch_mmd` of each half's means)
        joins the sum, weighted too. ``product_dtype`` (bf16) runs the decoders' factor
        products in lower precision.
        The regulatory term reads the factor columns ``F`` only, never the batch offsets."""
        rna_mean, rna_logvar, z_rna = self.encode_rna(batch.rna_rep, batch.batch)
        atac_mean, atac_logvar, z_atac = self.encode_atac(batch.atac_rep, batch.batch)
        terms = {
            "rna_nll": self.rna_decoder.nll(
                z_rna, batch.rna_log_library, batch.rna_counts, product_dtype, batch.batch
            ).mean(),
            "rna_kl": gaussian_kl(rna_mean, rna_logvar).mean(),
            "atac_nll": self.atac_decoder.nll(
                z_atac, batch.atac_log_library, batch.atac_counts, product_dtype, batch.batch
            ).mean(),
            "atac_kl": gaussian_kl(atac_mean, atac_logvar).mean(),
            "regulatory": regulatory_loss(
                self.rna_decoder.feature, self.atac_decoder.feature,
                self.pair_genes, self.pair_peaks,
            ),
        }  # fmt: skip
        terms["joint"] = (
            weights.rna_recon * terms["rna_nll"]
            + weights.rna_kl * terms["rna_kl"]
            + weights.atac_recon * terms["atac_nll"]
            + weights.atac_kl * terms["atac_kl"]
            + weights.regulatory * torch.exp(terms["regulatory"])
        )
        if batch.batch is not None and weights.batch_mmd > 0:
            terms["batch_mmd"] = batch_mmd(rna_mean, batch.batch) + batch_mmd(
                atac_mean, batch.batch
            )
            terms["joint"] = terms["joint"] + weights.batch_mmd * terms["batch_mmd"]
        return terms

    def ssa_loss(self, batch: Batch, objective: str) -> torch.Tensor:
        """The ATAC encoder taught by the RNA encoder, a fixed teacher (no gradient reaches
        it): ``"similarity"``, Eq. 10-11, pulls the cell-cell similarities of the sampled
        latents together; ``"cosine"`` (:func:`cell_alignment_loss`) pulls each cell's ATAC
        latent mean towards the direction of its RNA latent mean."""
        with torch.no_grad():
            teacher_mean, _, z_teacher = self.encode_rna(batch.rna_rep, batch.batch)
        student_mean, _, z_student = self.encode_atac(batch.atac_rep, batch.batch)
        if objective == "cosine":
            return cell_alignment_loss(teacher_mean, student_mean)
        return ssa_loss(z_teacher, z_student)

    # ---- new batches (mapping query data onto a trained model) ------------------------------
    def with_new_batches(self, n_new: int) -> FactVAENetwork:
        """A copy with ``n_new`` more batch levels: zero offset rows appended to each
        decoder's ``B`` and, with ``encode_batch``, zero input columns appended to the
        encoders' first layers (so the new levels start out as no batch at all). This
        network is left as it is."""
        if not self.arch.n_batches:
            raise ValueError("the network has no batch covariate to extend")
        grown = copy.deepcopy(self)
        grown.arch = dataclasses.replace(self.arch, n_batches=self.arch.n_batches + n_new)
        for decoder in (grown.rna_decoder, grown.atac_decoder):
            for name in BATCH_OFFSETS:
                old = getattr(decoder, name)
                if old is not None:
                    rows = old.data.new_zeros(n_new, old.shape[1])
                    setattr(decoder, name, nn.Parameter(torch.cat([old.data, rows])))
        if self.arch.encode_batch:
            for encoder in (grown.rna_encoder, grown.atac_encoder):
                for layer in encoder.input_layers():
                    columns = layer.weight.data.new_zeros(layer.out_features, n_new)
                    layer.weight = nn.Parameter(torch.cat([layer.weight.data, columns], dim=1))
                    layer.in_features += n_new
        return grown

    def train_only_batches_from(self, first: int) -> list[RemovableHandle]:
        """Freeze every parameter but those of the batch levels ``first`` onwards: the rows
        ``B[first:]`` of each decoder's offsets and, with ``encode_batch``, the matching input
        columns of the encoders. Those tensors keep ``requires_grad`` with the other rows' or
        columns' gradients set to exactly zero, so Adam leaves those entries exactly as they
        are (its moments stay zero). Returns the hooks; :meth:`unfreeze` undoes it all."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        handles = []
        for decoder in (self.rna_decoder, self.atac_decoder):
            for name in BATCH_OFFSETS:
                offsets = getattr(decoder, name)
                if offsets is not None:
                    keep = torch.zeros_like(offsets, dtype=torch.bool)
                    keep[first:] = True
                    handles.append(_train_only(offsets, keep))
        if self.arch.encode_batch:
            for encoder, n_input in ((self.rna_encoder, self.arch.rna_input),
                                     (self.atac_encoder, self.arch.atac_input)):  # fmt: skip
                for layer in encoder.input_layers():
                    keep = torch.zeros_like(layer.weight, dtype=torch.bool)
                    keep[:, n_input + first :] = True
                    handles.append(_train_only(layer.weight, keep))
        return handles

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def unfreeze(self, handles: list[RemovableHandle]) -> None:
        for handle in handles:
            handle.remove()
        for parameter in self.parameters():
            parameter.requires_grad_(True)


BATCH_OFFSETS = ("feature_batch", "dispersion_batch", "dropout_batch")


def _train_only(parameter: nn.Parameter, keep: torch.Tensor) -> RemovableHandle:
    """Gradients of ``parameter`` kept where ``keep`` is True, exactly zero elsewhere."""
    parameter.requires_grad_(True)
    return parameter.register_hook(lambda grad: grad.masked_fill(~keep, 0.0))
