"""Training that survives real data: bounded variances, finite likelihoods at the extremes,
skipped bad steps, roll-backs, early stopping, and the paper's schedule kept exactly."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

import factvae
from conftest import SMALL_SETTINGS
from factvae.model.fused import SparseCounts, factorised_nll
from factvae.model.network import LOGVAR_BOUNDS, Encoder, FactVAENetwork, bounded_logvar
from factvae.model.terms import gaussian_kl
from factvae.outputs.scores import clustering_scores
from factvae.train import trainer as training

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _model(sim, **settings) -> factvae.FactVAE:
    return factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes,
                           **{**SMALL_SETTINGS, **settings})  # fmt: skip


def _ari(model: factvae.FactVAE, sim) -> float:
    return clustering_scores(model.get_latent(), sim.rna.obs["cell_type"])["ari"]


# ---- the variance and the likelihood at the extremes -------------------------------------------


def test_bounded_logvar_is_exact_inside_and_clamped_outside_with_gradient() -> None:
    raw = torch.tensor([-1e30, -40.0, -3.5, 0.0, 2.25, 14.0, 105.0, 1e30], requires_grad=True)
    bounded = bounded_logvar(raw)
    low, high = LOGVAR_BOUNDS
    assert torch.equal(bounded[2:6], raw[2:6])  # exactly the unbounded value inside
    assert bounded[0] == low and bounded[1] == low
    assert bounded[6] == high and bounded[7] == high
    bounded.sum().backward()
    assert torch.equal(raw.grad, torch.ones_like(raw))  # a KL gradient still reaches the head


def test_kl_is_finite_with_finite_gradients_for_a_huge_encoder_output() -> None:
    torch.manual_seed(0)
    encoder = Encoder([100, 512, 256], 50, dropout=0.2)
    # inputs far beyond any real reduction: the heads' raw outputs reach the thousands
    x = torch.randn(64, 100) * 1e4
    encoder.train()
    mean, logvar, z = encoder(x)
    assert logvar.max() <= LOGVAR_BOUNDS[1] and logvar.min() >= LOGVAR_BOUNDS[0]
    assert encoder.logvar(encoder.hidden(x)).abs().max() > 100  # the unbounded head overflows
    kl = gaussian_kl(mean, logvar).mean()
    assert torch.isfinite(kl) and torch.isfinite(z).all()
    kl.backward()
    for parameter in encoder.parameters():
        assert torch.isfinite(parameter.grad).all()


def _extreme_counts(n_cells: int, n_features: int) -> tuple[SparseCounts, torch.Tensor]:
    """A cell with one count, cells with counts up to 1e4, and libraries from 1 to 1e6."""
    rng = np.random.default_rng(0)
    rows, cols, values = [0], [3], [1.0]  # cell 0: a single count
    for cell in range(1, n_cells):
        picked = rng.choice(n_features, 20, replace=False)
        rows += [cell] * 20
        cols += picked.tolist()
        values += (10 ** rng.uniform(0, 4, 20)).round().tolist()
    values[-1] = 1e4
    order = np.lexsort((rows, cols))  # feature order, as minibatches are built
    counts = SparseCounts(
        torch.tensor(np.array(rows)[order]),
        torch.tensor(np.array(cols)[order]),
        torch.tensor(np.array(values, dtype=np.float32)[order]),
        (n_cells, n_features),
    )
    libraries = torch.log(torch.tensor(np.geomspace(1, 1e6, n_cells), dtype=torch.float32))
    return counts, libraries


@pytest.mark.parametrize("zero_inflated", [True, False])
@pytest.mark.parametrize("product_dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("z_scale", [1e-3, 1.0, 1e3])
def test_likelihood_is_finite_with_finite_gradients_at_the_extremes(
    zero_inflated: bool, product_dtype, z_scale: float
) -> None:
    """Tiny and huge means and dispersions (z from 1e-3 to 1e3 drives the softmaxes from
    uniform to one-hot), counts up to 1e4, a one-count cell, libraries 1 to 1e6."""
    torch.manual_seed(1)
    n_cells, n_features, d = 16, 300, 10
    counts, libraries = _extreme_counts(n_cells, n_features)
    z = (torch.randn(n_cells, d) * z_scale).requires_grad_()
    factors = [torch.randn(d, n_features, requires_grad=True) for _ in range(3)]
    dropout = factors[2] if zero_inflated else None
    nll = factorised_nll(z, factors[0], factors[1], dropout, libraries, counts, product_dtype)
    assert torch.isfinite(nll).all()
    nll.sum().backward()
    assert torch.isfinite(z.grad).all()
    for factor in factors[: 3 if zero_inflated else 2]:
        assert torch.isfinite(factor.grad).all()


# ---- the trainer: skip, roll back, give up with a usable model --------------------------------


def _poison_gradients(monkeypatch, bad_calls) -> list[int]:
    """Make the joint step's gradient NaN (its loss stays finite) on the listed training steps
    (validation passes are not counted)."""
    calls = [0]
    original = FactVAENetwork.loss

    def loss(self, batch, weights, product_dtype=None):
        terms = original(self, batch, weights, product_dtype)
        if not self.training:
            return terms
        calls[0] += 1
        if bad_calls(calls[0]):
            terms["rna_nll"].register_hook(lambda grad: torch.full_like(grad, float("nan")))
        return terms

    monkeypatch.setattr(FactVAENetwork, "loss", loss)
    return calls


def test_one_non_finite_gradient_is_skipped_and_the_run_matches_a_clean_one(
    sim, monkeypatch
) -> None:
    clean = _model(sim).fit(max_epochs=15, batch_size=64, progress=False, seed=0)
    _poison_gradients(monkeypatch, lambda call: call == 10)
    hit = _model(sim).fit(max_epochs=15, batch_size=64, progress=False, seed=0)
    assert hit.training_summary["skipped_steps"] == 1
    assert hit.training_summary["rollbacks"] == 0
    assert sum(r.get("skipped_steps", 0) for r in hit.history) == 1
    for model in (clean, hit):
        assert all(np.isfinite(r["joint"]) for r in model.history)
    assert _ari(hit, sim) >= _ari(clean, sim) - 0.05


def test_repeated_failures_roll_back_with_a_lower_learning_rate(sim, monkeypatch) -> None:
    # three failed steps in a row in epoch 3: the epoch is rolled back and trained again
    _poison_gradients(monkeypatch, lambda call: 16 < call <= 19)
    model = _model(sim, early_stopping=False).fit(
        max_epochs=6, batch_size=64, progress=False, seed=0
    )
    assert model.training_summary["rollbacks"] == 1
    assert model.training_summary["skipped_steps"] == 3
    assert len(model.history) == 6


def test_persistent_failure_raises_and_leaves_the_last_good_epoch_usable(sim, monkeypatch) -> None:
    # a fixed decay: the default one depends on max_epochs, which differs between the two runs
    settings = {"early_stopping": False, "validation_fraction": 0.0, "lr_decay": 0.995}
    reference = _model(sim, **settings).fit(max_epochs=2, batch_size=64, progress=False, seed=0)
    steps_per_epoch = 300 // 64
    _poison_gradients(monkeypatch, lambda call: call > 2 * steps_per_epoch)
    model = _model(sim, **settings)
    with pytest.raises(factvae.TrainingDivergedError, match="weights of epoch 2") as caught:
        model.fit(max_epochs=10, batch_size=64, progress=False, seed=0)
    assert caught.value.last_good_epoch == 2
    assert model.is_trained and len(model.history) == 2
    assert model.training_summary["rollbacks"] == training.MAX_ROLLBACKS
    np.testing.assert_array_equal(model.get_latent(), reference.get_latent())


# ---- the schedule: validation cells, early stopping, the paper preset -------------------------


def test_validation_cells_are_held_out_seeded_and_reported(sim) -> None:
    a = _model(sim).fit(max_epochs=3, batch_size=64, progress=False, seed=4)
    b = _model(sim).fit(max_epochs=3, batch_size=64, progress=False, seed=4)
    c = _model(sim).fit(max_epochs=3, batch_size=64, progress=False, seed=5)
    assert len(a.validation_cells) == a.training_summary["validation_cells"] == 30
    assert a.validation_cells.equals(b.validation_cells)
    assert not a.validation_cells.equals(c.validation_cells)
    assert all("validation" in record for record in a.history)


def _last_epoch_with_a_new_low(history: list[dict]) -> int:
    """The last epoch at which either modality's validation loss reached a new low."""
    last, best = 0, {"validation_rna": np.inf, "validation_atac": np.inf}
    for epoch, record in enumerate(history, start=1):
        improved = [name for name in best if record[name] < best[name]]
        for name in improved:
            best[name] = record[name]
        last = epoch if improved else last
    return last


def test_early_stopping_stops_and_restores_the_best_weights(sim) -> None:
    model = _model(sim, patience=3).fit(max_epochs=400, batch_size=64, progress=False, seed=0)
    summary = model.training_summary
    assert summary["stopped_early"] and summary["epochs"] < 400
    best = _last_epoch_with_a_new_low(model.history)
    assert summary["best_epoch"] == best == summary["epochs"] - 3
    # the network holds the best epoch's weights: its validation losses are that epoch's again
    trainer = training.Trainer(model.network, model.settings.loss_weights(len(model.peaks)),
                               model.settings.optimiser(), torch.device("cpu"), "auto",
                               ssa=model.settings.ssa_objective)  # fmt: skip
    cells = model.obs_names.get_indexer(model.validation_cells)
    again = trainer.validation_losses(model._data, cells, 64)
    for name in ("validation", "validation_rna", "validation_atac"):
        assert again[name] == pytest.approx(model.history[best - 1][name], rel=1e-5)


def test_early_stopping_waits_for_the_modality_still_improving() -> None:
    """A sum that rises because one modality overfits must not stop the other's training."""
    stopper = training.EarlyStopping(patience=2)
    trainer = types.SimpleNamespace(epoch=0, network=torch.nn.Linear(1, 1))
    rna = [10.0, 9.0, 8.0, 7.5, 7.4, 7.4, 7.4]
    atac = [50.0, 49.0, 52.0, 55.0, 58.0, 60.0, 61.0]  # the sum rises from epoch 3
    for epoch, (r, a) in enumerate(zip(rna, atac), start=1):
        trainer.epoch = epoch
        stopper.update({"rna": r, "atac": a}, trainer)
        if stopper.stopped:
            break
    assert (stopper.best_epoch, trainer.epoch) == (5, 7)
    assert stopper.best == {"rna": 7.4, "atac": 49.0}


def test_default_epochs_shrink_as_cells_grow() -> None:
    from factvae.settings import auto_max_epochs, auto_patience

    assert auto_max_epochs(942) == 200  # snare_hcellline's training cells: at most 200
    assert auto_max_epochs(9_278) == 54  # the real-scale preset's
    assert auto_max_epochs(45_000) == 11
    assert auto_max_epochs(10_000_000) == 10
    epochs = [auto_max_epochs(n) for n in (1_000, 2_000, 5_000, 20_000, 50_000)]
    assert epochs == sorted(epochs, reverse=True)
    assert auto_patience(200) == 20 and auto_patience(54) == 5


def test_default_atac_weight_is_the_authors_up_to_their_peaks_and_in_proportion_above() -> None:
    from factvae.settings import ModelSettings, auto_atac_recon_weight

    assert auto_atac_recon_weight(5_000) == auto_atac_recon_weight(27_399) == 0.002
    assert auto_atac_recon_weight(100_000) == pytest.approx(0.0073, abs=1e-5)
    default = ModelSettings.from_kwargs({})
    assert default.atac_recon_weight is None
    assert default.loss_weights(200_000).atac_recon == pytest.approx(0.002 * 200_000 / 27_399)
    assert (
        ModelSettings.from_kwargs({"atac_recon_weight": 0.05}).loss_weights(200_000).atac_recon
        == 0.05
    )
    # the paper preset keeps the authors' 0.002 at any size, also when None is passed (R does)
    paper = ModelSettings.from_kwargs({"atac_recon_weight": None}, preset="paper")
    assert paper.loss_weights(200_000).atac_recon == 0.002


def test_the_batch_mixing_weight_applies_only_with_a_batch_key() -> None:
    from factvae.errors import FactVAEInputError
    from factvae.settings import BATCH_MMD_WEIGHT, ModelSettings

    assert ModelSettings.from_kwargs({}).loss_weights(5_000).batch_mmd == 0
    batched = ModelSettings.from_kwargs({"batch_key": "sample"})
    assert batched.loss_weights(5_000).batch_mmd == BATCH_MMD_WEIGHT > 0
    off = ModelSettings.from_kwargs({"batch_key": "sample", "batch_mmd_weight": 0})
    assert off.loss_weights(5_000).batch_mmd == 0
    assert ModelSettings.from_kwargs({"batch_key": "s"}, preset="paper").batch_mmd_weight > 0
    with pytest.raises(FactVAEInputError, match="batch_mmd_weight must be a finite number >= 0"):
        ModelSettings.from_kwargs({"batch_key": "sample", "batch_mmd_weight": -1})


def test_default_atac_kl_is_beta_one_and_the_paper_keeps_its_own() -> None:
    from factvae.settings import JOINT_ATAC_SHARE, PAPER_SSA_LR, ModelSettings

    default = ModelSettings.from_kwargs({})
    assert default.atac_kl_weight is None
    for peaks in (5_000, 200_000):  # beta = 1 at any size: the KL weight is the recon weight
        weights = default.loss_weights(peaks)
        assert weights.atac_kl == weights.atac_recon
    assert ModelSettings.from_kwargs({"atac_kl_weight": 0.03}).loss_weights(5_000).atac_kl == 0.03
    paper = ModelSettings.from_kwargs({"atac_kl_weight": None}, preset="paper")
    assert paper.loss_weights(200_000).atac_kl == 0.001
    assert (paper.ssa_lr, paper.joint_atac_share) == (PAPER_SSA_LR, None)
    assert default.ssa_lr == 4 * PAPER_SSA_LR
    with pytest.raises(factvae.FactVAEInputError, match="joint_atac_share"):
        ModelSettings.from_kwargs({"joint_atac_share": -1})
    assert paper.ssa_objective == "similarity"  # Eq. 10-11
    with pytest.raises(factvae.FactVAEInputError, match="ssa_objective must be one of"):
        ModelSettings.from_kwargs({"ssa_objective": "mse"})
    # the paper concatenates (Eq. 14); the default averages halves the SSA step put on one set
    # of axes, so the average is refused where they are not
    assert (paper.joint_embedding, default.joint_embedding) == ("concatenate", "average")
    with pytest.raises(factvae.FactVAEInputError, match="use joint_embedding='concatenate'"):
        ModelSettings.from_kwargs({"ssa_objective": "similarity"})
    former = {"ssa_objective": "similarity", "joint_embedding": "concatenate"}
    assert ModelSettings.from_kwargs(former).joint_atac_share == JOINT_ATAC_SHARE
    with pytest.raises(factvae.FactVAEInputError, match="joint_embedding must be one of"):
        ModelSettings.from_kwargs({"joint_embedding": "sum"})


def test_the_fit_trains_with_the_weight_for_its_own_peaks(sim, monkeypatch) -> None:
    from factvae import settings

    monkeypatch.setattr(settings, "ATAC_WEIGHT_PEAKS", 500)  # as if sim's peaks were 4x the anchor
    model = _model(sim)
    model.fit(max_epochs=1, batch_size=64, progress=False, seed=0)
    expected = 0.002 * len(model.peaks) / 500
    assert model.training_summary["atac_recon_weight"] == pytest.approx(expected)
    assert model.training_summary["atac_kl_weight"] == pytest.approx(expected)  # beta = 1
    assert model.settings.atac_recon_weight is None  # the setting stays "scaled", not the number


def test_default_learning_rate_decays_to_where_the_papers_ends() -> None:
    from factvae.settings import FINAL_LR_FRACTION, ModelSettings

    default = ModelSettings.from_kwargs({})
    assert default.resolved_lr_decay(54) ** 54 == pytest.approx(FINAL_LR_FRACTION)
    assert default.resolved_lr_decay(200) ** 200 == pytest.approx(0.995**300)
    paper = ModelSettings.from_kwargs({}, preset="paper")
    assert paper.resolved_lr_decay(54) == 0.995


def test_paper_preset_reproduces_the_seeded_result_of_before(sim) -> None:
    """The authors' schedule and inputs (``preset="paper"``) give the latent that the code
    before bounded inputs, validation and early stopping gave (saved then). Bit for bit on one
    CPU; across CPUs the BLAS kernels round differently (6e-6 measured between an AVX2 and an
    AVX-512 machine), so the tolerance is float32 rounding, far below what a change of schedule
    or inputs moves (order 0.1)."""
    model = _model(sim, preset="paper")
    model.fit(max_epochs=15, batch_size=64, progress=False, seed=0, precision="float32")
    assert model.training_summary["validation_cells"] == 0
    assert len(model.history) == 15
    expected = np.load(FIXTURES / "paper_preset_latent_float32.npy")
    np.testing.assert_allclose(model.get_latent(), expected, rtol=1e-4, atol=1e-4)


def test_bounded_inputs_are_within_their_documented_bound(sim) -> None:
    k = SMALL_SETTINGS["n_components"]
    bounded = _model(sim)
    paper = _model(sim, preset="paper")
    for rep in (bounded._rna_rep, bounded._atac_rep):
        assert np.abs(rep).max() <= np.sqrt(k - 1) + 1e-5
        np.testing.assert_allclose(rep.mean(axis=1), 0, atol=1e-5)
    assert np.abs(paper._rna_rep).max() > np.sqrt(k - 1)  # the authors' scores are unbounded


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"preset": "fast"}, "preset='fast' is not one of"),
        ({"validation_fraction": 0.7}, "validation_fraction must be in"),
        ({"patience": 0}, "patience"),
        ({"early_stopping": "yes"}, "early_stopping must be True or False"),
        ({"max_epochs": -3}, "max_epochs"),
    ],
)
def test_bad_schedule_settings_are_clear_errors(sim, settings, message) -> None:
    with pytest.raises(factvae.FactVAEInputError, match=message):
        _model(sim, **settings)
