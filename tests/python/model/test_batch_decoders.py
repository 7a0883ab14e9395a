"""Decoders conditioned on a batch covariate (Eq. 7 with batch offsets): the fused likelihood
against the reference maths, batch-free embeddings, and the parameters a query may train."""

import dataclasses

import numpy as np
import pytest
import torch

from factvae.model.fused import SparseCounts, factorised_nll
from factvae.model.network import Architecture, Batch, FactorDecoder, FactVAENetwork
from factvae.model.reference import decoder_parameters, dense_log_likelihood
from factvae.model.terms import LossWeights, batch_mmd, regulatory_loss

PAIRS = (np.array([0, 1, 2]), np.array([0, 3, 5]))
WEIGHTS = LossWeights(0.1, 0.002, 0.1, 0.03, 1.0, 0.0)


def _arch(n_batches=0, encode_batch=False, likelihood="zinb", hidden=(16,)):
    return Architecture(
        rna_input=6, atac_input=5, n_genes=12, n_peaks=20, n_latent=4, rna_hidden=hidden,
        atac_hidden=hidden, dropout=0.0, rna_likelihood=likelihood, atac_likelihood=likelihood,
        n_batches=n_batches, encode_batch=encode_batch,
    )  # fmt: skip


def _counts(n, features, seed):
    g = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full((n, features), 0.8, dtype=torch.float64), generator=g)
    counts[torch.rand(n, features, generator=g) < 0.6] = 0
    rows, cols = torch.nonzero(counts, as_tuple=True)
    return counts, SparseCounts(rows, cols, counts[rows, cols], (n, features))


def _one_hot(codes, n_batches, dtype=torch.float64):
    return torch.nn.functional.one_hot(torch.as_tensor(codes), n_batches).to(dtype)


@pytest.mark.parametrize("zero_inflated", [True, False])
def test_fused_likelihood_with_batch_equals_the_reference_maths(zero_inflated):
    """[z, s] @ [F; B] through the fused kernel = z F + s B in the plain Eq. 7, with gradients
    for z, F and B alike."""
    g = torch.Generator().manual_seed(0)
    n, d, features, n_batches = 7, 3, 25, 3
    z = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    factors = [(torch.randn(d, features, generator=g, dtype=torch.float64) * 0.7)
               .requires_grad_(True) for _ in range(3 if zero_inflated else 2)]  # fmt: skip
    offsets = [torch.randn(n_batches, features, generator=g, dtype=torch.float64)
               .requires_grad_(True) for _ in range(3 if zero_inflated else 2)]  # fmt: skip
    sf = torch.log(torch.rand(n, generator=g, dtype=torch.float64) * 50 + 20)
    counts, sparse = _counts(n, features, seed=1)
    s = _one_hot([0, 1, 2, 2, 1, 0, 2], n_batches)
    dropout, dropout_b = (factors[2], offsets[2]) if zero_inflated else (None, None)

    fused = factorised_nll(
        torch.cat([z, s], dim=1), torch.cat([factors[0], offsets[0]]),
        torch.cat([factors[1], offsets[1]]),
        None if dropout is None else torch.cat([dropout, dropout_b]), sf, sparse,
    )  # fmt: skip
    mu, theta, pi = decoder_parameters(
        z, sf, factors[0], factors[1], dropout, batch=s,
        batch_offsets=(offsets[0], offsets[1], dropout_b),
    )  # fmt: skip
    reference = -dense_log_likelihood(counts, mu, theta, pi, eps=0.0)
    torch.testing.assert_close(fused, reference, rtol=1e-7, atol=1e-7)
    weights = torch.arange(1.0, n + 1, dtype=torch.float64)
    leaves = [z, *factors, *offsets]
    for got, want in zip(torch.autograd.grad((fused * weights).sum(), leaves),
                         torch.autograd.grad((reference * weights).sum(), leaves)):  # fmt: skip
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_the_same_z_gets_different_means_in_different_batches():
    torch.manual_seed(0)
    decoder = FactorDecoder(4, 20, zero_inflated=True, n_batches=2).double()
    with torch.no_grad():
        for offsets in decoder.batch_offsets():
            offsets.normal_()
    z = torch.randn(1, 4, dtype=torch.float64).repeat(2, 1)  # one cell, decoded in 2 batches
    sf = torch.full((2,), 5.0, dtype=torch.float64)
    s = _one_hot([0, 1], 2)
    mu, theta, pi = decoder_parameters(
        z, sf, decoder.feature, decoder.dispersion, decoder.dropout, s, decoder.batch_offsets()
    )
    for values in (mu, theta, pi):
        assert not torch.allclose(values[0], values[1])
    torch.testing.assert_close(mu.sum(dim=1), torch.exp(sf))  # still a share of the library
    # the network's likelihood sees the same difference: the batch changes the cell's NLL
    _, sparse = _counts(2, 20, seed=2)
    sparse = SparseCounts(sparse.rows, sparse.cols, sparse.values, (2, 20))
    nll = decoder.nll(z, sf, sparse, batch=s)
    same = decoder.nll(z, sf, sparse, batch=_one_hot([0, 0], 2))
    torch.testing.assert_close(nll[0], same[0])
    assert not torch.isclose(nll[1], same[1])


def test_without_a_batch_key_the_network_has_no_extra_parameters_and_the_same_init():
    plain_names = {name for name, _ in FactVAENetwork(_arch(), PAIRS).named_parameters()}
    assert not any("batch" in name for name in plain_names)
    torch.manual_seed(3)
    plain = FactVAENetwork(_arch(), PAIRS).state_dict()
    torch.manual_seed(3)
    batched = FactVAENetwork(_arch(n_batches=4), PAIRS).state_dict()
    assert set(batched) - set(plain) == {
        f"{side}_decoder.{name}_batch"
        for side in ("rna", "atac")
        for name in ("feature", "dispersion", "dropout")
    }
    for name, value in plain.items():  # zero offsets draw nothing: the rest is as before
        assert torch.equal(batched[name], value), name
    assert all(not batched[k].any() for k in batched if "_batch" in k)


def test_embeddings_and_the_regulatory_term_read_only_the_batch_free_factors():
    torch.manual_seed(0)
    net = FactVAENetwork(_arch(n_batches=3), PAIRS)
    assert net.rna_decoder.feature.shape == (4, 12)  # n_latent x genes, no batch rows
    assert net.atac_decoder.feature.shape == (4, 20)
    assert net.rna_decoder.feature_batch.shape == (3, 12)
    before = regulatory_loss(net.rna_decoder.feature, net.atac_decoder.feature,
                             net.pair_genes, net.pair_peaks)  # fmt: skip
    with torch.no_grad():
        net.rna_decoder.feature_batch.normal_()
        net.atac_decoder.feature_batch.normal_()
    batch = _batch(net, n=6)
    terms = net.loss(batch, WEIGHTS)
    torch.testing.assert_close(terms["regulatory"], before)
    grads = torch.autograd.grad(terms["regulatory"], [net.rna_decoder.feature_batch,
                                                      net.atac_decoder.feature_batch],
                                allow_unused=True)  # fmt: skip
    assert all(g is None for g in grads)


def _batch(net, n, codes=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    arch = net.arch
    _, rna_sparse = _counts(n, arch.n_genes, seed)
    _, atac_sparse = _counts(n, arch.n_peaks, seed + 1)
    as_float = [SparseCounts(c.rows, c.cols, c.values.float(), c.shape)
                for c in (rna_sparse, atac_sparse)]  # fmt: skip
    codes = codes if codes is not None else [i % arch.n_batches for i in range(n)]
    return Batch(
        torch.randn(n, arch.rna_input, generator=g), torch.randn(n, arch.atac_input, generator=g),
        as_float[0], as_float[1], torch.full((n,), 4.0), torch.full((n,), 5.0),
        _one_hot(codes, arch.n_batches, torch.float32) if arch.n_batches else None,
    )  # fmt: skip


@pytest.mark.parametrize("hidden", [(16,), ()])
def test_encode_batch_reads_the_batch_and_new_levels_grow_only_their_parameters(hidden):
    torch.manual_seed(1)
    net = FactVAENetwork(_arch(n_batches=2, encode_batch=True, hidden=hidden), PAIRS).eval()
    first = net.rna_encoder.input_layers()[0]
    assert first.in_features == 6 + 2
    x = torch.randn(1, 6).repeat(2, 1)
    means = net.encode_rna(x, _one_hot([0, 1], 2, torch.float32))[0]
    assert not torch.allclose(means[0], means[1])

    grown = net.with_new_batches(2)
    assert grown.arch.n_batches == 4 and net.arch.n_batches == 2  # the original is kept
    assert net.rna_encoder.input_layers()[0].in_features == 8
    assert grown.rna_encoder.input_layers()[0].in_features == 10
    old = net.state_dict()
    for name, value in grown.state_dict().items():
        if value.shape == old[name].shape:
            assert torch.equal(value, old[name]), name
        elif name.endswith("_batch"):  # offsets: new rows appended, zero
            assert torch.equal(value[:2], old[name]) and not value[2:].any()
        else:  # an input layer: new batch columns appended, zero
            n_old = old[name].shape[1]
            assert torch.equal(value[:, :n_old], old[name]) and not value[:, n_old:].any()
    # the same cells in the old levels get the same latent from the grown network
    s_grown = _one_hot([0, 1], 4, torch.float32)
    torch.testing.assert_close(grown.eval().encode_rna(x, s_grown)[0], means)

    handles = grown.train_only_batches_from(2)
    grown.train()
    batch = _batch(grown, n=8, codes=[0, 1, 2, 3, 0, 1, 2, 3])
    grown.loss(batch, WEIGHTS)["joint"].backward()
    for name, parameter in grown.named_parameters():
        if not parameter.requires_grad:
            assert parameter.grad is None, name
            continue
        grad = parameter.grad
        if name.endswith("_batch"):
            assert not grad[:2].any() and grad[2:].any(), name
        else:  # the input columns of the two old levels are frozen, the new ones train
            n_old = grad.shape[1] - 2
            assert not grad[:, :n_old].any() and grad[:, n_old:].any(), name
    trainable = {name for name, p in grown.named_parameters() if p.requires_grad}
    assert len(trainable) == 6 + (2 if hidden else 4)
    grown.unfreeze(handles)
    assert all(p.requires_grad for p in grown.parameters())


# ---- the batch-mixing term ---------------------------------------------------------------------


def test_batch_mmd_is_zero_for_identical_batches_and_grows_with_their_shift():
    g = torch.Generator().manual_seed(0)
    points = torch.randn(20, 5, generator=g, dtype=torch.float64)
    z = torch.cat([points, points])  # batch 0 and batch 1 hold the same cells
    two = _one_hot([0] * 20 + [1] * 20, 2)
    assert batch_mmd(z, two).abs() < 1e-12
    shifts = [0.5, 1.0, 2.0]
    values = [float(batch_mmd(torch.cat([points, points + s]), two)) for s in shifts]
    assert 0 < values[0] < values[1] < values[2]
    # its kernel widths follow the minibatch's scale: a rescaled latent scores the same
    shifted = torch.cat([points, points + 1.0])
    torch.testing.assert_close(batch_mmd(10 * shifted, two), batch_mmd(shifted, two))


def test_batch_mmd_ignores_lone_cells_and_a_minibatch_of_one_batch():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(9, 3, generator=g, dtype=torch.float64)
    assert batch_mmd(z, _one_hot([0] * 9, 3)) == 0
    assert batch_mmd(z[:1], _one_hot([2], 3)) == 0  # one cell: no NaN
    # a batch seen in one cell is left out of the average, not compared as a distribution
    with_lone = batch_mmd(z, _one_hot([0] * 4 + [1] * 4 + [2], 3))
    manual = batch_mmd(z, _one_hot([0] * 4 + [1] * 4 + [2], 3)[:, :2].contiguous())
    torch.testing.assert_close(with_lone, manual)


def test_steps_on_batch_mmd_bring_shifted_batches_together():
    g = torch.Generator().manual_seed(2)
    points = torch.randn(30, 4, generator=g, dtype=torch.float64)
    z = torch.cat([points, points + 3.0]).requires_grad_(True)
    two = _one_hot([0] * 30 + [1] * 30, 2)
    gap = (z[30:].mean(0) - z[:30].mean(0)).norm().item()
    optimiser = torch.optim.Adam([z], lr=0.05)
    for _ in range(100):
        optimiser.zero_grad()
        batch_mmd(z, two).backward()
        optimiser.step()
    assert (z[30:].mean(0) - z[:30].mean(0)).norm().item() < gap / 2


def test_the_loss_adds_the_weighted_batch_mmd_only_with_a_batch_covariate():
    torch.manual_seed(4)
    net = FactVAENetwork(_arch(n_batches=2), PAIRS).eval()
    batch = _batch(net, n=8)
    plain = net.loss(batch, WEIGHTS)
    mixing = net.loss(batch, dataclasses.replace(WEIGHTS, batch_mmd=10.0))
    assert "batch_mmd" not in plain and mixing["batch_mmd"] > 0
    rna_mean, _, _ = net.encode_rna(batch.rna_rep, batch.batch)
    atac_mean, _, _ = net.encode_atac(batch.atac_rep, batch.batch)
    expected = batch_mmd(rna_mean, batch.batch) + batch_mmd(atac_mean, batch.batch)
    torch.testing.assert_close(mixing["batch_mmd"], expected)
    torch.testing.assert_close(mixing["joint"], plain["joint"] + 10.0 * expected)
    unbatched = FactVAENetwork(_arch(), PAIRS).eval()
    unbatched_cells = _batch(unbatched, n=8, codes=[0] * 8)
    terms = unbatched.loss(unbatched_cells, dataclasses.replace(WEIGHTS, batch_mmd=10.0))
    assert "batch_mmd" not in terms
