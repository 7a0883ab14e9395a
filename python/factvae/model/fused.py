"""The fused, sparse likelihood of Eq. 5-7 that training uses: one interface,
:func:`factorised_nll`, over kernels that never build the dense per-entry terms.

For ``mu = exp(sf) softmax(z F)``, ``theta = exp(softmax(z Disp))`` and ``pi = z Drop`` (a
logit), the per-cell log-likelihood is split into

* the zero case, ``log p(0)``, summed over every entry: a closed form without ``lgamma``;
* a correction ``log p(x) - log p(0)`` at the non-zero entries only, where ``lgamma`` and
  ``digamma`` are paid.

One autograd function computes both, with analytic gradients taken in the same pass as the
values. The dense part is one fused kernel (compiled by ``torch.compile`` where a compiler is
available, so its ~30 elementwise operations become a few loops over the batch x features
block); the sparse part never materialises a dense index or gradient. The sum equals the dense
per-entry formula of :mod:`factvae.model.reference` (tests check it), with exact logs where the
authors guard with ``log(x + 1e-8)``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SparseCounts:
    """A minibatch of counts as its non-zero entries (row, column, value) and its shape."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, int]

    def to(self, device: torch.device, non_blocking: bool = False) -> SparseCounts:
        return SparseCounts(
            self.rows.to(device, non_blocking=non_blocking),
            self.cols.to(device, non_blocking=non_blocking),
            self.values.to(device, non_blocking=non_blocking),
            self.shape,
        )


class _FusedKernel:
    """A dense kernel run through ``torch.compile``, or eagerly where compiling is off
    (``FACTVAE_COMPILE=0``) or fails (no C compiler, unsupported device); same results."""

    def __init__(self, function: Callable) -> None:
        self.eager = function
        self.compiled: Callable | None = None
        self.failed = os.environ.get("FACTVAE_COMPILE", "1") == "0"

    def __call__(self, *args):
        if self.failed:
            return self.eager(*args)
        if self.compiled is None:
            self.compiled = _compile(self.eager)
        try:
            return self.compiled(*args)
        except Exception as err:  # compiler missing or unsupported: the eager path is exact
            self.failed = True
            warnings.warn(
                f"factvae: torch.compile is unavailable here ({type(err).__name__}); the "
                "likelihood runs eagerly, about 1.7x slower. Set FACTVAE_COMPILE=0 to skip "
                "this attempt.",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.eager(*args)


def _compile(function: Callable) -> Callable:
    """``torch.compile(function)``. It imports inductor, whose ``torch.utils.mkldnn`` still
    decorates with torch's own deprecated ``torch.jit.script_method`` (torch 2.13): that one
    notice, which is torch's to fix, is ignored there, so it is neither printed 14 times (pytest,
    R) nor turned into a failed fit under ``-W error::DeprecationWarning``."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`torch\.jit\.script_method` is deprecated",
            category=DeprecationWarning,
            module=r"torch\.jit\._script",
        )
        return torch.compile(function, dynamic=True)


def _zero_case(mean_logits, disp_logits, pi_logit, log_library, block_dtype):
    """Every entry's log p(0), summed per cell, and its gradients: wrt t = softmax(z Disp),
    wrt mu times mu, and wrt the dropout logit. Features x cells, like all blocks here.
    Logits made in bf16 are widened here, inside the fused loops, not in a pass of their own."""
    mean_logits, disp_logits = _at_least_float32(mean_logits), _at_least_float32(disp_logits)
    pi_logit = None if pi_logit is None else _at_least_float32(pi_logit)
    lse_mean = torch.logsumexp(mean_logits, dim=0, keepdim=True)
    lse_disp = torch.logsumexp(disp_logits, dim=0, keepdim=True)
    share = torch.exp(mean_logits - lse_mean)
    mu = share * torch.exp(log_library)[None, :]
    t = torch.exp(disp_logits - lse_disp)  # theta = exp(t), so log theta = t
    theta = torch.exp(t)
    theta_mu = theta + mu
    log_theta_mu = torch.log(theta_mu)
    nb_zero = theta * (t - log_theta_mu)  # log NB(0)
    if pi_logit is None:
        zero_ll, gate, grad_pi = nb_zero, 1.0, None
    else:
        # p(0) = q + (1 - q) NB(0) with q = sigmoid(pi) = 1 + (1 - q) expm1(log NB(0)): three
        # transcendentals (exp(-|pi|), expm1, log1p) and exact where NB(0) is near 1.
        e = torch.exp(-pi_logit.abs())
        inv = 1.0 / (1.0 + e)
        q = torch.where(pi_logit >= 0, 1.0, e) * inv
        q_bar = torch.where(pi_logit >= 0, e, 1.0) * inv  # 1 - q, without cancellation
        nb_zero_m1 = torch.expm1(nb_zero)
        ratio = q_bar / (1.0 + q_bar * nb_zero_m1)  # (1 - q) / p(0)
        zero_ll = torch.log1p(q_bar * nb_zero_m1)
        gate = ratio * (1.0 + nb_zero_m1)  # d log p(0) / d log NB(0)
        grad_pi = -q * ratio * nb_zero_m1  # q (1 - q) (1 - NB(0)) / p(0)
    # d log NB(0)/d theta = t - log(theta+mu) + mu/(theta+mu), times theta for theta = e^t
    mu_share = mu / theta_mu
    grad_t = gate * (t - log_theta_mu + mu_share) * theta
    grad_mu_mu = -gate * theta * mu_share  # d log NB(0)/d mu = -theta/(theta+mu)
    blocks = (grad_t, grad_mu_mu, grad_pi, t, share)
    return (
        zero_ll.sum(dim=0), *(None if b is None else b.to(block_dtype) for b in blocks),
        lse_mean.squeeze(0), lse_disp.squeeze(0),
    )  # fmt: skip


def _logit_gradients(grad_cells, grad_t, grad_mu_mu, grad_pi, t, share, product_dtype):
    """Scale the per-entry gradients by each cell's incoming gradient and chain them back
    through the two softmaxes to the logits, written in the dtype of the products they feed."""
    scale = grad_cells[None, :]
    grad_t, grad_mu_mu, t, share = map(_at_least_float32, (grad_t, grad_mu_mu, t, share))
    grad_disp = scale * t * (grad_t - (grad_t * t).sum(dim=0, keepdim=True))
    grad_mean = scale * (grad_mu_mu - share * grad_mu_mu.sum(dim=0, keepdim=True))
    grad_pi = None if grad_pi is None else (scale * _at_least_float32(grad_pi)).to(product_dtype)
    return grad_mean.to(product_dtype), grad_disp.to(product_dtype), grad_pi


_ZERO_CASE = _FusedKernel(_zero_case)
_LOGIT_GRADIENTS = _FusedKernel(_logit_gradients)


def _nonzero_terms(mean_logits, disp_logits, pi_logit, log_library, lse_mean, lse_disp,
                   cells, flat, x):  # fmt: skip
    """log p(x) - log p(0) at the non-zero entries, and its gradients there (wrt t, wrt mu
    times mu, wrt the dropout logit), to be added to the zero case's."""
    log_mu = _at_least_float32(mean_logits.reshape(-1)[flat]) - lse_mean[cells] + log_library[cells]
    mu = torch.exp(log_mu)
    t = torch.exp(_at_least_float32(disp_logits.reshape(-1)[flat]) - lse_disp[cells])
    theta = torch.exp(t)
    theta_mu = theta + mu
    log_theta_mu = torch.log(theta_mu)
    delta = (
        x * (log_mu - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    # gradients of x log mu - x log(theta+mu) + lgamma(x+theta) - lgamma(theta)
    nz_mu_mu = x - x * mu / theta_mu
    nz_theta = -x / theta_mu + torch.digamma(x + theta) - torch.digamma(theta)
    nz_pi = None
    if pi_logit is not None:
        # log(1 - pi) + log NB(0) - log p(0) = -softplus(pi - log NB(0))
        a = theta * (t - log_theta_mu) - _at_least_float32(pi_logit.reshape(-1)[flat])
        delta = delta - F.softplus(-a)
        gate = torch.sigmoid(-a)
        nz_mu_mu = nz_mu_mu - gate * theta * mu / theta_mu
        nz_theta = nz_theta + gate * (t - log_theta_mu + mu / theta_mu)
        nz_pi = -gate
    return delta, nz_theta * theta, nz_mu_mu, nz_pi


_NONZERO_TERMS = _FusedKernel(_nonzero_terms)


class _FactorisedLogLik(torch.autograd.Function):
    """Per-cell log-likelihood of the counts given z and the decoder's factor matrices.

    The logit blocks are features x cells (``F.T @ z.T``), and backward chooses each product's
    layout itself (``z.T @ G.T`` writes the factors' gradients straight in their d x D
    layout, ``F @ G`` gives z's), which autograd's own choice for these shapes does not; that
    saves matmul time and a strided transpose-copy per factor. Forward computes the gradients
    with the values (one pass, not a recomputation), keeping four or five such blocks until
    backward scales them.

    With ``product_dtype=torch.bfloat16`` the nine factor products run in bf16 (accumulated in
    float32 by the CPU's or GPU's bf16 units), and the blocks kept for backward, which only
    feed those products, are stored in bf16 (same exponent range as float32, so small shares
    survive); the softmaxes, logs and per-cell sums are computed in float32.
    """

    @staticmethod
    def forward(ctx, z, mean_factor, disp_factor, dropout_factor, log_library, cells, features, x,  # type: ignore[override]
                product_dtype):  # fmt: skip
        low = z.dtype if product_dtype is None else product_dtype
        cells_low = z.to(low)
        factors_low = [None if f is None else f.to(low) for f in (mean_factor, disp_factor,
                                                                   dropout_factor)]  # fmt: skip
        mean_logits, disp_logits, pi_logit = (
            None if f is None else f.T @ cells_low.T for f in factors_low
        )
        zero_sum, grad_t, grad_mu_mu, grad_pi, t, share, lse_mean, lse_disp = _ZERO_CASE(
            mean_logits, disp_logits, pi_logit, log_library, low
        )
        flat = features * mean_logits.shape[1] + cells
        delta, nz_t, nz_mu_mu, nz_pi = _NONZERO_TERMS(
            mean_logits, disp_logits, pi_logit, log_library, lse_mean, lse_disp, cells, flat, x
        )
        for dense, at_nonzeros in zip((grad_t, grad_mu_mu, grad_pi), (nz_t, nz_mu_mu, nz_pi)):
            if dense is not None:
                dense.view(-1).index_add_(0, flat, at_nonzeros.to(dense.dtype))
        ctx.save_for_backward(cells_low, *factors_low, grad_t, grad_mu_mu, grad_pi, t, share)
        ctx.dtypes = z.dtype, mean_factor.dtype
        return zero_sum.index_add(0, cells, delta)

    @staticmethod
    def backward(ctx, grad_cells):  # type: ignore[override]
        cells_low, *factors_low, grad_t, grad_mu_mu, grad_pi, t, share = ctx.saved_tensors
        z_dtype, factor_dtype = ctx.dtypes
        logit_grads = _LOGIT_GRADIENTS(
            grad_cells, grad_t, grad_mu_mu, grad_pi, t, share, cells_low.dtype
        )
        grad_z = None
        grad_factors = []
        for factor, grad in zip(factors_low, logit_grads):
            if factor is None:
                grad_factors.append(None)
                continue
            grad_factors.append((cells_low.T @ grad.T).to(factor_dtype))
            grad_z_part = _at_least_float32(factor @ grad)
            grad_z = grad_z_part if grad_z is None else grad_z + grad_z_part
        return grad_z.T.to(z_dtype), *grad_factors, None, None, None, None, None


def _at_least_float32(values: torch.Tensor) -> torch.Tensor:
    """bf16 products are widened before any softmax, log or sum: a softmax over 100k
    features and the likelihood's logs need float32's precision."""
    return values.to(torch.promote_types(values.dtype, torch.float32))


def factorised_nll(
    z: torch.Tensor,
    mean_factor: torch.Tensor,
    disp_factor: torch.Tensor,
    dropout_factor: torch.Tensor | None,
    log_library: torch.Tensor,
    counts: SparseCounts,
    product_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Negative log-likelihood per cell (summed over features) of a ZINB, or an NB when
    ``dropout_factor`` is None, with the parameters of Eq. 7. ``product_dtype`` (bf16) runs
    the factor products, not the likelihood's arithmetic, in lower precision."""
    return -_FactorisedLogLik.apply(
        z, mean_factor, disp_factor, dropout_factor, log_library,
        counts.rows, counts.cols, counts.values, product_dtype,
    )  # fmt: skip
