"""Training: repeatability, small data, divergence, checkpoints, history."""

import numpy as np
import pytest
import torch

import factvae
from conftest import SMALL_SETTINGS
from factvae import FactVAEInputError, TrainingDivergedError
from factvae.train.batches import minibatches
from factvae.train.checkpoints import CHECKPOINT_FILE
from factvae.train.devices import select_device
from factvae.train.trainer import Trainer


def _model(sim, **extra):
    return factvae.FactVAE(
        sim.rna, sim.atac, gene_annotation=sim.genes, **{**SMALL_SETTINGS, **extra}
    )


def test_same_seed_same_model_bit_for_bit(sim):
    a = _model(sim).fit(max_epochs=3, batch_size=64, seed=7, progress=False)
    b = _model(sim).fit(max_epochs=3, batch_size=64, seed=7, progress=False)
    c = _model(sim).fit(max_epochs=3, batch_size=64, seed=8, progress=False)
    assert np.array_equal(a.get_latent(), b.get_latent())
    assert a.history == b.history
    assert not np.array_equal(a.get_latent(), c.get_latent())


def test_history_has_every_term_per_epoch(trained):
    assert len(trained.history) == 15
    assert set(trained.history[0]) == {
        "rna_nll", "rna_kl", "atac_nll", "atac_kl", "regulatory", "joint", "ssa", "validation",
        "validation_rna", "validation_atac",
    }  # fmt: skip
    first, last = trained.history[0], trained.history[-1]
    assert last["joint"] < first["joint"]
    assert last["regulatory"] < first["regulatory"]


def test_fewer_cells_than_a_batch_still_trains(sim):
    small = factvae.simulate(n_cells=40, n_genes=120, n_peaks=600, seed=3)
    model = factvae.FactVAE(
        small.rna, small.atac, gene_annotation=small.genes, n_hvg=100, n_components=10, n_latent=5
    ).fit(max_epochs=2, batch_size=128, progress=False)
    assert model.get_latent().shape == (40, 5)
    assert len(model.history) == 2


def test_minibatches_drop_the_partial_batch_only_when_there_is_a_full_one():
    rng = np.random.default_rng(0)
    batches = minibatches(300, 128, rng)
    assert [len(b) for b in batches] == [128, 128]
    assert len(set(np.concatenate(batches))) == 256
    assert [len(b) for b in minibatches(50, 128, rng)] == [50]


def test_an_input_that_always_overflows_raises_after_roll_backs(sim):
    """Unbounded inputs (the paper preset) of 1e30 overflow every step: each epoch is rolled
    back until training gives up with an error that names the epoch; bounded inputs (the
    default) standardise the same input and train."""
    rng = np.random.default_rng(0)
    huge = (rng.standard_normal((sim.rna.n_obs, 20)) * 1e30).astype(np.float32)
    settings = {**SMALL_SETTINGS, "rna_rep": huge}
    model = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, preset="paper",
                            **settings)  # fmt: skip
    with pytest.raises(TrainingDivergedError, match=r"kept failing at epoch 1: non-finite"):
        model.fit(max_epochs=2, batch_size=64, progress=False)
    assert not model.is_trained  # no epoch was good: nothing usable to keep
    bounded = factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, **settings)
    bounded.fit(max_epochs=2, batch_size=64, progress=False)
    assert bounded.training_summary["skipped_steps"] == 0


def test_progress_bar_reports_device(sim, capsys):
    _model(sim).fit(max_epochs=1, batch_size=128, progress=True)
    captured = capsys.readouterr()
    assert "training on cpu" in captured.out
    assert "epoch" in captured.err


def test_device_selection():
    assert select_device("auto").type in ("cuda", "mps", "cpu")
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(FactVAEInputError, match="no CUDA GPU"):
            select_device("cuda")
    with pytest.raises(FactVAEInputError, match="not a PyTorch device"):
        select_device("tpu9")


def test_interrupted_and_resumed_equals_uninterrupted(sim, tmp_path, monkeypatch):
    straight = _model(sim).fit(max_epochs=6, batch_size=64, seed=3, progress=False)
    checkpoints = tmp_path / "ckpt"
    run_epoch = Trainer.run_epoch

    def killed_after_epoch_4(self, *args):
        if self.epoch == 4:
            raise KeyboardInterrupt
        return run_epoch(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "run_epoch", killed_after_epoch_4)
        with pytest.raises(KeyboardInterrupt):
            _model(sim).fit(max_epochs=6, batch_size=64, seed=3, progress=False,
                            checkpoint_dir=checkpoints, checkpoint_every=2)  # fmt: skip
    assert torch.load(checkpoints / CHECKPOINT_FILE, weights_only=True)["epoch"] == 4
    resumed = _model(sim).fit(
        max_epochs=6, batch_size=64, seed=3, progress=False,
        checkpoint_dir=checkpoints, checkpoint_every=2,
    )  # fmt: skip
    assert np.array_equal(resumed.get_latent(), straight.get_latent())
    assert resumed.history == straight.history


def test_resume_false_starts_again_from_scratch(sim, tmp_path):
    checkpoints = tmp_path / "ckpt"
    _model(sim).fit(max_epochs=3, batch_size=64, seed=3, progress=False,
                    checkpoint_dir=checkpoints, checkpoint_every=1)  # fmt: skip
    fresh = _model(sim).fit(max_epochs=2, batch_size=64, seed=3, progress=False,
                            checkpoint_dir=checkpoints, resume=False)  # fmt: skip
    assert len(fresh.history) == 2  # a resumed run would have found epoch 3 done already
    plain = _model(sim).fit(max_epochs=2, batch_size=64, seed=3, progress=False)
    assert np.array_equal(fresh.get_latent(), plain.get_latent())


def test_a_checkpoint_of_other_data_or_settings_is_refused_by_fit(sim, tmp_path):
    """The check lives in ``fit``, so every caller (Python, CLI, R) gets it."""
    checkpoints = tmp_path / "ckpt"
    run = dict(max_epochs=2, batch_size=64, progress=False, checkpoint_dir=checkpoints)
    _model(sim).fit(seed=3, **run)
    fewer_cells = factvae.FactVAE(
        sim.rna[:-10].copy(), sim.atac[:-10].copy(), gene_annotation=sim.genes, **SMALL_SETTINGS
    )
    with pytest.raises(FactVAEInputError, match=r"different .*cells.*resume=False"):
        fewer_cells.fit(seed=3, **run)
    with pytest.raises(FactVAEInputError, match="different n_latent, seed"):
        _model(sim, n_latent=7).fit(seed=4, **run)
    assert len(_model(sim).fit(seed=3, **run).history) == 2  # the same run resumes


def test_fit_argument_errors(sim):
    model = _model(sim)
    for kwargs in ({"max_epochs": 0}, {"batch_size": -1}, {"max_epochs": 2.5}):
        with pytest.raises(FactVAEInputError, match="positive integer"):
            model.fit(progress=False, **kwargs)
    with pytest.raises(FactVAEInputError, match="not trained"):
        model.get_latent()


def test_gradient_clipping_bounds_the_joint_gradient_and_bad_updates_are_skipped(sim):
    from factvae.model.network import FactVAENetwork
    from factvae.settings import ModelSettings
    from factvae.train.trainer import Trainer

    model = _model(sim, grad_clip=0.5)
    trainer = Trainer(
        FactVAENetwork(model.architecture, (np.array([0]), np.array([0]))),
        model.settings.loss_weights(len(model.peaks)),
        model.settings.optimiser(),
        torch.device("cpu"),
        ssa=model.settings.ssa_objective,
    )
    parameters = list(trainer.network.parameters())
    before = [p.detach().clone() for p in parameters]
    loss = sum((3.0 * p).sum() for p in parameters)  # every gradient entry is 3
    assert trainer._update(trainer.joint_optimiser, loss, parameters)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters]))
    assert abs(float(total) - 0.5) < 1e-4
    moved = [p.detach().clone() for p in parameters]
    assert not all(torch.equal(a, b) for a, b in zip(before, moved))
    state = {k: v.clone() for k, v in trainer.joint_optimiser.state[parameters[0]].items()}
    bad = sum((p * float("nan")).sum() for p in parameters)
    assert not trainer._update(trainer.joint_optimiser, bad, parameters)
    assert trainer.skipped_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(moved, parameters))  # untouched
    for key, value in trainer.joint_optimiser.state[parameters[0]].items():
        assert torch.equal(value, state[key])
    assert ModelSettings().optimiser().grad_clip is None


def test_precision_choice_and_its_errors(sim):
    from factvae.train.devices import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "float32")
    assert resolve_precision("auto", torch.device("cuda")) == "float32"  # bf16 not compared on GPUs
    assert resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(FactVAEInputError, match=r"precision='fp16' is not one of"):
        _model(sim).fit(max_epochs=1, progress=False, precision="fp16")


def test_bf16_products_train_as_well_as_float32(sim):
    """bf16 products change the numbers (the latents differ) but not what is learnt: the same
    clustering quality and the same final loss to within 1%."""
    from factvae.outputs.scores import clustering_scores

    labels = sim.rna.obs["cell_type"].to_numpy()
    fits = {
        precision: _model(sim).fit(
            max_epochs=15, batch_size=64, seed=0, progress=False, precision=precision
        )
        for precision in ("float32", "bf16")
    }
    ari = {
        precision: clustering_scores(m.get_latent(), labels)["ari"] for precision, m in fits.items()
    }
    assert not np.array_equal(fits["bf16"].get_latent(), fits["float32"].get_latent())
    assert ari["float32"] >= 0.85 and ari["bf16"] >= ari["float32"] - 0.05, ari
    final = {precision: m.history[-1]["joint"] for precision, m in fits.items()}
    assert abs(final["bf16"] - final["float32"]) <= 0.01 * abs(final["float32"]), final
