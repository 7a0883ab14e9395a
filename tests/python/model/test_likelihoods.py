"""The sparse, fused likelihood equals the dense per-entry ZINB/NB formulas and scipy."""

import numpy as np
import pytest
import scipy.stats
import torch

from factvae.model.fused import SparseCounts, factorised_nll
from factvae.model.reference import decoder_parameters, dense_log_likelihood


def _problem(dtype, zero_inflated=True, n=6, d=4, features=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    factors = [
        (torch.randn(d, features, generator=g, dtype=dtype) * 0.7).requires_grad_(True)
        for _ in range(3 if zero_inflated else 2)
    ]
    sf = torch.log(torch.rand(n, generator=g, dtype=dtype) * 50 + 20)
    counts = torch.poisson(torch.full((n, features), 0.8, dtype=dtype), generator=g)
    counts[torch.rand(n, features, generator=g) < 0.6] = 0
    rows, cols = torch.nonzero(counts, as_tuple=True)
    sparse = SparseCounts(rows, cols, counts[rows, cols], (n, features))
    return z, factors, sf, counts, sparse


def _decoder_params(z, factors, sf):
    return decoder_parameters(
        z, sf, factors[0], factors[1], factors[2] if len(factors) == 3 else None
    )


@pytest.mark.parametrize("zero_inflated", [True, False])
def test_sparse_likelihood_equals_dense_formula_and_gradients(zero_inflated):
    z, factors, sf, counts, sparse = _problem(torch.float64, zero_inflated)
    dropout = factors[2] if zero_inflated else None
    lean = factorised_nll(z, factors[0], factors[1], dropout, sf, sparse)
    mu, theta, pi = _decoder_params(z, factors, sf)
    dense = -dense_log_likelihood(counts, mu, theta, pi)
    torch.testing.assert_close(lean, dense, rtol=1e-6, atol=1e-6)
    weights = torch.arange(1.0, z.shape[0] + 1, dtype=torch.float64)
    lean_grads = torch.autograd.grad((lean * weights).sum(), [z, *factors])
    dense_grads = torch.autograd.grad((dense * weights).sum(), [z, *factors])
    for got, want in zip(lean_grads, dense_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_fused_gradient_passes_gradcheck():
    z, factors, sf, _, sparse = _problem(torch.float64, True, n=3, d=2, features=7, seed=3)
    torch.autograd.gradcheck(
        lambda zz, a, b, c: factorised_nll(zz, a, b, c, sf, sparse), (z, *factors)
    )


def test_zinb_matches_scipy_nbinom():
    """log p(x) of the ZINB equals the mixture built from scipy's negative binomial."""
    z, factors, sf, counts, sparse = _problem(torch.float64, True, seed=5)
    nll = factorised_nll(z, *factors, sf, sparse).detach().numpy()
    mu, theta, pi_logit = (t.detach().numpy() for t in _decoder_params(z, factors, sf))
    pi = 1 / (1 + np.exp(-pi_logit))
    x = counts.numpy()
    nb = scipy.stats.nbinom.pmf(x, theta, theta / (theta + mu))
    likelihood = np.where(x == 0, pi + (1 - pi) * nb, (1 - pi) * nb)
    expected = -np.log(likelihood).sum(axis=1)
    np.testing.assert_allclose(nll, expected, rtol=1e-7)
    dense = dense_log_likelihood(counts, *_decoder_params(z, factors, sf), eps=0.0)
    np.testing.assert_allclose(-dense.detach().numpy(), expected, rtol=1e-7)


def test_float32_sparse_likelihood_matches_dense_at_realistic_size():
    """At 3,000 features some mu fall near the authors' 1e-8 guard, so compare with eps=0."""
    z, factors, sf, counts, sparse = _problem(torch.float64, True, n=64, d=10, features=3000)
    lean = factorised_nll(
        z.float(),
        *(f.float() for f in factors),
        sf.float(),
        SparseCounts(sparse.rows, sparse.cols, sparse.values.float(), sparse.shape),
    )
    mu, theta, pi = _decoder_params(z, factors, sf)
    reference = -dense_log_likelihood(counts, mu, theta, pi, eps=0.0).float()
    torch.testing.assert_close(lean, reference, rtol=1e-4, atol=0.05)


@pytest.mark.parametrize("route", ["product_dtype", "autocast"])
def test_bf16_products_keep_float32_arithmetic_and_gradients(monkeypatch, route):
    """bf16 reaches the factor products either as ``product_dtype`` (the CPU setting) or
    through autocast (the GPU one). The kernels must receive the bf16 logits and still take
    the softmaxes' normalisers and the log-likelihood in float32 (a sum over 100k features in
    bf16 loses its small terms), and values and gradients must stay close to float32's."""
    from factvae.model import fused as likelihoods

    z, factors, sf, _, sparse = _problem(torch.float32, True, n=16, d=6, features=300, seed=2)
    counts = SparseCounts(sparse.rows, sparse.cols, sparse.values.float(), sparse.shape)
    seen = []
    original = likelihoods._ZERO_CASE

    def spy(*logits_and_library):
        outputs = original(*logits_and_library)
        seen.append(([a.dtype for a in logits_and_library[:3]], outputs[0].dtype, outputs[6].dtype))
        return outputs

    monkeypatch.setattr(likelihoods, "_ZERO_CASE", spy)
    exact = factorised_nll(z, *factors, sf.float(), counts)
    exact_grads = torch.autograd.grad(exact.sum(), [z, *factors])
    if route == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = factorised_nll(z, *factors, sf.float(), counts)
    else:
        mixed = factorised_nll(z, *factors, sf.float(), counts, product_dtype=torch.bfloat16)
    mixed_grads = torch.autograd.grad(mixed.sum(), [z, *factors])
    assert seen[0] == ([torch.float32] * 3, torch.float32, torch.float32)
    assert seen[1] == ([torch.bfloat16] * 3, torch.float32, torch.float32)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, exact, rtol=2e-2, atol=1.0)
    for got, want in zip(mixed_grads, exact_grads):
        assert got.dtype == want.dtype == torch.float32
        assert float((got - want).norm() / want.norm()) < 0.03
