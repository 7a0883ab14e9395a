"""The decoder's maths written plainly (paper Eq. 5-7): the parameters a cell embedding gives
each feature, and the dense per-entry likelihood of its counts.

This is the reference the fused likelihood (:mod:`factvae.model.fused`) is tested against, and
what the outputs use; it costs ``lgamma`` at every entry, so training does not call it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def log_normalised_mean(
    z: torch.Tensor,
    feature: torch.Tensor,
    columns: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """log softmax(z F + offset): each cell's log share of its library per feature (Eq. 7),
    over all features (the softmax defines the shares), then restricted to ``columns`` if
    given. ``offset`` (cells x features) is the cells' batch offsets ``s B_F``, if any."""
    logits = z @ feature
    if offset is not None:
        logits = logits + offset
    chosen = logits if columns is None else logits[:, columns]
    return chosen - torch.logsumexp(logits, dim=1, keepdim=True)


def decoder_parameters(
    z: torch.Tensor,
    log_library: torch.Tensor,
    feature: torch.Tensor,
    dispersion: torch.Tensor,
    dropout: torch.Tensor | None,
    batch: torch.Tensor | None = None,
    batch_offsets: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Eq. 7: mean ``mu = exp(sf) softmax(z F)``, dispersion ``theta = exp(softmax(z Disp))``
    and zero-inflation logit ``pi = z Drop`` (None for an NB decoder), cells x features.

    With a batch covariate, ``batch`` is the cells' one-hot ``s`` (cells x n_batches) and
    ``batch_offsets`` the decoder's ``(B_F, B_Disp, B_Drop)`` (n_batches x features each;
    ``B_Drop`` None for NB), and each logit gains ``s B``: ``mu = exp(sf) softmax(z F +
    s B_F)``, ``theta = exp(softmax(z Disp + s B_Disp))``, ``pi = z Drop + s B_Drop``.
    """
    offsets: tuple[torch.Tensor | None, ...] = (None, None, None)
    if batch_offsets is not None:
        if batch is None:
            raise ValueError("batch_offsets need the cells' batch one-hot")
        offsets = tuple(None if b is None else batch.to(z.dtype) @ b for b in batch_offsets)
    mu = torch.exp(log_library[:, None] + log_normalised_mean(z, feature, offset=offsets[0]))
    disp_logits = z @ dispersion
    if offsets[1] is not None:
        disp_logits = disp_logits + offsets[1]
    theta = torch.exp(F.softmax(disp_logits, dim=1))
    pi_logit = None
    if dropout is not None:
        pi_logit = z @ dropout
        if offsets[2] is not None:
            pi_logit = pi_logit + offsets[2]
    return mu, theta, pi_logit


def dense_log_likelihood(
    x: torch.Tensor,
    mu: torch.Tensor,
    theta: torch.Tensor,
    pi_logit: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """The per-entry ZINB (or NB) log-likelihood of Eq. 5-6 over a dense block, summed per
    cell, with the authors' ``log(x + eps)`` guards."""
    log_theta_mu = torch.log(theta + mu + eps)
    nb_zero = theta * (torch.log(theta + eps) - log_theta_mu)
    nb_rest = (
        x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    if pi_logit is None:
        return (nb_zero + nb_rest).sum(dim=1)
    log_one_minus_pi = -F.softplus(pi_logit)
    zero = F.softplus(nb_zero - pi_logit) - F.softplus(-pi_logit)
    nonzero = log_one_minus_pi + nb_zero + nb_rest
    return torch.where(x > 0, nonzero, zero).sum(dim=1)
