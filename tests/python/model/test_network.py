"""Each loss term of the paper against an independent computation."""

import numpy as np
import torch

import factvae
from conftest import SMALL_SETTINGS
from factvae.model.network import Architecture, Encoder, FactVAENetwork
from factvae.model.terms import cell_alignment_loss, gaussian_kl, regulatory_loss, ssa_loss
from factvae.settings import ModelSettings
from factvae.train.batches import make_batch

NO_PAIRS = (np.array([0]), np.array([0]))


def _architecture(rna_input, atac_input, n_genes, n_peaks, n_latent, **changes):
    """An architecture with the package's default hidden sizes, dropout and likelihoods."""
    settings = ModelSettings(**{k: v for k, v in changes.items() if k == "likelihood"})
    values = dict(rna_hidden=settings.rna_hidden, atac_hidden=settings.atac_hidden,
                  dropout=settings.dropout, rna_likelihood=settings.likelihood,
                  atac_likelihood=settings.likelihood, n_batches=0,
                  encode_batch=settings.encode_batch)  # fmt: skip
    values.update(changes)
    return Architecture(rna_input, atac_input, n_genes, n_peaks, n_latent, **values)


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    want = torch.distributions.kl_divergence(q, p).sum(dim=1)
    torch.testing.assert_close(gaussian_kl(mean, logvar), want)


def test_regulatory_loss_on_pairs_equals_dense_eq9():
    rng = np.random.default_rng(0)
    genes = torch.tensor(rng.normal(size=(6, 40)))
    peaks = torch.tensor(rng.normal(size=(6, 90)))
    g2p = (rng.random((40, 90)) < 0.05).astype(float)
    rows, cols = np.nonzero(g2p)
    sparse = regulatory_loss(genes, peaks, torch.tensor(rows), torch.tensor(cols))
    # Eq. 8 in full, as the authors compute it: every gene against every peak
    gene_unit = genes.T / genes.T.norm(dim=1, keepdim=True)
    peak_unit = peaks.T / peaks.T.norm(dim=1, keepdim=True)
    similarity = gene_unit @ peak_unit.T
    dense = ((similarity - 1) ** 2 * torch.tensor(g2p)).sum() / g2p.sum()
    torch.testing.assert_close(sparse, dense)


def test_ssa_loss_matches_numpy_eq10_11():
    rng = np.random.default_rng(1)
    z_r, z_a = rng.normal(size=(9, 4)), rng.normal(size=(9, 4))

    def cosine_matrix(z):
        unit = z / np.linalg.norm(z, axis=1, keepdims=True)
        return unit @ unit.T

    s_r, s_a = cosine_matrix(z_r), cosine_matrix(z_a)
    row_cos = (s_r * s_a).sum(1) / np.linalg.norm(s_r, axis=1) / np.linalg.norm(s_a, axis=1)
    want = np.mean(1 - row_cos)
    got = ssa_loss(torch.tensor(z_r), torch.tensor(z_a))
    assert abs(float(got) - want) < 1e-10
    assert float(ssa_loss(torch.tensor(z_r), torch.tensor(z_r * 3.0))) < 1e-12


def test_cell_alignment_loss_is_one_minus_each_cells_cosine():
    rng = np.random.default_rng(2)
    teacher, student = rng.normal(size=(9, 4)), rng.normal(size=(9, 4))
    cosine = (teacher * student).sum(1) / np.linalg.norm(teacher, axis=1)
    cosine /= np.linalg.norm(student, axis=1)
    got = cell_alignment_loss(torch.tensor(teacher), torch.tensor(student))
    assert abs(float(got) - np.mean(1 - cosine)) < 1e-10
    # scale-free per cell, and unlike Eq. 11 it sees a rotation: the similarity matrices of a
    # rotated copy are the teacher's, its cells' directions are not
    scaled = student * rng.uniform(0.5, 3, size=(9, 1))
    assert (
        abs(float(cell_alignment_loss(torch.tensor(teacher), torch.tensor(scaled))) - float(got))
        < 1e-10
    )
    rotation = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    rotated = teacher @ rotation
    assert float(ssa_loss(torch.tensor(teacher), torch.tensor(rotated))) < 1e-12
    assert float(cell_alignment_loss(torch.tensor(teacher), torch.tensor(rotated))) > 0.1


def test_the_ssa_objective_setting_picks_the_ssa_steps_loss(sim, monkeypatch):
    """``ssa_objective`` reaches the SSA step: the network's loss is each objective's own term
    of the two encoders' outputs, and the RNA encoder gets no gradient from either."""
    model = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes,
                            **{**SMALL_SETTINGS, "ssa_objective": "cosine"})  # fmt: skip
    assert model.settings.ssa_objective == "cosine"
    network = model.network.eval()  # eval: the latents are the means, so both terms are exact
    batch = make_batch(model._data, np.arange(32), torch.device("cpu"))
    rna_mean = network.encode_rna(batch.rna_rep)[0]
    atac_mean = network.encode_atac(batch.atac_rep)[0]
    for objective, term in (("cosine", cell_alignment_loss), ("similarity", ssa_loss)):
        network.zero_grad()
        loss = network.ssa_loss(batch, objective)
        torch.testing.assert_close(loss, term(rna_mean.detach(), atac_mean.detach()))
        loss.backward()
        assert all(p.grad is None for p in network.rna_encoder.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in network.atac_encoder.parameters())  # fmt: skip
    # and fit() hands the setting to every SSA step
    seen = []
    original = FactVAENetwork.ssa_loss
    monkeypatch.setattr(FactVAENetwork, "ssa_loss",
                        lambda self, batch, objective: seen.append(objective)
                        or original(self, batch, objective))  # fmt: skip
    model.fit(max_epochs=1, batch_size=64, progress=False, seed=0)
    assert seen and set(seen) == {"cosine"}


def test_encoder_samples_in_training_and_returns_mean_in_eval():
    torch.manual_seed(0)
    encoder = Encoder([8, 16], 3, dropout=0.0)
    x = torch.randn(5, 8)
    encoder.train()
    mean, _, z = encoder(x)
    assert not torch.allclose(mean, z)
    encoder.eval()
    mean, _, z = encoder(x)
    torch.testing.assert_close(mean, z)


def test_network_shapes_follow_design():
    arch = _architecture(rna_input=100, atac_input=100, n_genes=30, n_peaks=70, n_latent=50)
    net = FactVAENetwork(arch, NO_PAIRS)
    linear = [m for m in net.rna_encoder.hidden if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(100, 512), (512, 256)]
    linear = [m for m in net.atac_encoder.hidden if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(100, 256)]
    assert net.rna_decoder.feature.shape == (50, 30)
    assert net.atac_decoder.dropout.shape == (50, 70)
    assert any(isinstance(m, torch.nn.ELU) for m in net.rna_encoder.hidden)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.2 for m in net.atac_encoder.hidden)
    nb_arch = _architecture(10, 10, 5, 5, 4, rna_likelihood="nb", atac_likelihood="nb")
    nb = FactVAENetwork(nb_arch, NO_PAIRS)
    assert nb.rna_decoder.dropout is None
