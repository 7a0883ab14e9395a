"""Ctrl-C during training: acted on between steps, the last finished epoch kept and saved, so a
resumed fit is the fit that was interrupted."""

import builtins
import ctypes
import importlib
import signal
import sys

import numpy as np
import pytest
import torch

import factvae
from conftest import SMALL_SETTINGS
from factvae import TrainingInterrupted, r_bridge
from factvae.r_bridge import install_interrupt_handler
from factvae.train import interrupts
from factvae.train.checkpoints import CHECKPOINT_FILE
from factvae.train.trainer import Trainer

RUN = {"max_epochs": 6, "batch_size": 64, "seed": 3, "progress": False}


@pytest.fixture(autouse=True)
def _interactive_ctrl_c():
    """Python's own Ctrl-C handler, as an interactive session has it: a process that a shell
    starts in the background (``cmd &``, nohup, some CI runners) inherits SIGINT ignored, and
    these tests are about the handler, not about how pytest was launched."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _model(sim):
    return factvae.FactVAE(sim.rna, sim.atac, gene_annotation=sim.genes, **SMALL_SETTINGS)


def _interrupt_at(patch, epoch: int, step: int, ask) -> None:
    """Makes ``ask()`` (a request or a real SIGINT) in ``step`` of ``epoch`` (1-based)."""
    original = Trainer.step
    seen = {"steps": 0, "epoch": 0}

    def step_then_ask(self, batch):
        if seen["epoch"] != self.epoch:
            seen["epoch"], seen["steps"] = self.epoch, 0
        seen["steps"] += 1
        values = original(self, batch)
        if self.epoch + 1 == epoch and seen["steps"] == step:
            ask()
        return values

    patch.setattr(Trainer, "step", step_then_ask)


def test_a_request_mid_epoch_keeps_and_saves_the_last_finished_one(sim, tmp_path, monkeypatch):
    """Stopped in the middle of epoch 5, the model holds epoch 4 and so does the checkpoint,
    random states included: resuming gives the uninterrupted model bit for bit."""
    straight = _model(sim).fit(**RUN)
    checkpoints = tmp_path / "ckpt"
    stopped = _model(sim)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, epoch=5, step=2, ask=interrupts.request)
        expected = r"during epoch 5.*weights of epoch 4"
        with pytest.raises(TrainingInterrupted, match=expected) as info:
            stopped.fit(checkpoint_dir=checkpoints, checkpoint_every=100, **RUN)
    assert info.value.last_good_epoch == 4
    assert isinstance(info.value, KeyboardInterrupt)  # what code that handles Ctrl-C expects
    saved = torch.load(checkpoints / CHECKPOINT_FILE, weights_only=True)
    assert saved["epoch"] == 4 and len(saved["history"]) == 4
    for name, value in stopped.network.state_dict().items():
        assert torch.equal(value, saved["network"][name]), name
    assert interrupts.take_report() == str(info.value)  # once, for R
    assert interrupts.take_report() is None
    resumed = _model(sim).fit(checkpoint_dir=checkpoints, checkpoint_every=100, **RUN)
    assert np.array_equal(resumed.get_latent(), straight.get_latent())
    assert resumed.history == straight.history


def test_sigint_is_deferred_to_the_next_step_and_the_handler_restored(sim, monkeypatch):
    model = _model(sim)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, epoch=2, step=1, ask=lambda: signal.raise_signal(signal.SIGINT))
        with pytest.raises(TrainingInterrupted, match="during epoch 2"):
            model.fit(**RUN)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert model.network is not None
    interrupts.take_report()


def test_a_second_request_raises_at_once_and_none_is_left_behind():
    with interrupts.deferred():
        interrupts.request()  # noted
        with pytest.raises(KeyboardInterrupt):
            interrupts.request()
    with interrupts.deferred():
        interrupts.request()
    interrupts.check()  # a request left by a finished fit does not stop the next one
    with pytest.raises(KeyboardInterrupt):
        interrupts.request()  # outside training: Ctrl-C as usual


def test_the_r_handler_is_not_installed_outside_r():
    assert install_interrupt_handler() is False
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_r_handler_takes_a_pending_interrupt_once_and_never_inside_an_import(
    tmp_path, monkeypatch
):
    """R's flag says whether R has taken the SIGINT; inside an import the interrupt is left
    pending and looked at again, since a half-imported module stays broken."""
    pending = ctypes.c_int(0)
    handler = r_bridge._r_interrupt_handler(pending)
    handler(signal.SIGINT, sys._getframe())  # R took it: nothing to do
    pending.value = 1
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, sys._getframe())
    assert pending.value == 0

    rechecks = []

    class Timer:
        def __init__(self, *args) -> None:
            rechecks.append(args)

        def start(self) -> None:
            pass

    monkeypatch.setattr(r_bridge.threading, "Timer", Timer)
    monkeypatch.setattr(builtins, "_sigint_in_import", handler, raising=False)
    (tmp_path / "module_being_imported.py").write_text(
        "import builtins, sys\nbuiltins._sigint_in_import(2, sys._getframe())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pending.value = 1
    importlib.import_module("module_being_imported")  # no KeyboardInterrupt in the middle
    assert pending.value == 1 and len(rechecks) == 1
