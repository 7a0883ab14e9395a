"""The training loop: per minibatch a joint update (Eq. 13) and an SSA update (Eq. 11 or the
per-cell alignment, ``ssa_objective``), with skipped non-finite steps, roll-backs, validation,
early stopping and checkpoints. The network owns the objective; this module only steps
optimisers and loops."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from factvae.errors import TrainingDivergedError, TrainingInterrupted
from factvae.model.network import Batch, FactVAENetwork
from factvae.model.terms import LossWeights
from factvae.train import interrupts
from factvae.train.allocator import reuse_freed_memory
from factvae.train.batches import TrainingData, make_batch, minibatches
from factvae.train.checkpoints import CheckpointPolicy
from factvae.train.devices import resolve_precision
from factvae.train.distributed import ProcessGroup
from factvae.train.progress import EpochReporter


@dataclass(frozen=True)
class OptimiserSettings:
    """Adam for the joint loss, Adam for SSA on the ATAC encoder, exponential decay per epoch.
    Built from :class:`factvae.settings.ModelSettings`, which owns the defaults."""

    lr: float
    ssa_lr: float
    lr_decay: float
    grad_clip: float | None


BAD_STEPS_IN_A_ROW = 3  # failed updates in a row that abandon an epoch (it is rolled back)
MAX_ROLLBACKS = 3  # roll-backs in a row before training gives up


@dataclass(frozen=True)
class Schedule:
    """How long to train, on which cells, and when to stop (resolved by
    :func:`factvae.train.fitting.training_schedule`)."""

    max_epochs: int
    train_cells: np.ndarray
    validation_cells: np.ndarray
    early_stopping: bool
    patience: int


class EarlyStopping:
    """Stops once no modality's monitored loss has reached a new low for ``patience`` epochs;
    keeps the weights of the last epoch at which one did.

    Each modality is watched on its own, not their sum: with 100,000 peaks the ATAC term
    starts to overfit by epoch 16 while the RNA term still improves, and their sum stopped
    training at epoch 21 with the RNA half under-trained (real_scale at 100k peaks, seed 0:
    joint ARI 0.207 stopped there, 0.321 after all 54 epochs; benchmarks/README.md)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best: dict[str, float] = {}
        self.best_epoch = 0
        self.wait = 0
        self.best_network: dict | None = None

    @property
    def stopped(self) -> bool:
        return self.wait >= self.patience

    def update(self, losses: dict[str, float], trainer: Trainer) -> None:
        improved = [name for name, loss in losses.items() if loss < self.best.get(name, math.inf)]
        for name in improved:
            self.best[name] = losses[name]
        if improved:
            self.best_epoch, self.wait = trainer.epoch, 0
            self.best_network = copy.deepcopy(trainer.network.state_dict())
        else:
            self.wait += 1

    def state(self) -> dict:
        return {"patience": self.patience, "best": dict(self.best), "best_epoch": self.best_epoch,
                "wait": self.wait, "best_network": self.best_network}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> EarlyStopping:
        stopper = cls(int(state["patience"]))
        stopper.best = {name: float(loss) for name, loss in state["best"].items()}
        stopper.best_epoch, stopper.wait = int(state["best_epoch"]), int(state["wait"])
        stopper.best_network = state["best_network"]
        return stopper


class Trainer:
    """Runs the per-minibatch joint step (all parameters) and SSA step (ATAC encoder only).

    ``trainable`` limits the joint step to those parameters (the rest is left untouched).
    ``ssa`` names the SSA step's objective (``SSA_OBJECTIVES``); ``None`` skips the step: how
    a trained model is adapted to new batches (``FactVAE.map_query``), where the encoders
    are frozen.
    """

    def __init__(
        self,
        network: FactVAENetwork,
        weights: LossWeights,
        optim: OptimiserSettings,
        device: torch.device,
        precision: str = "float32",
        group: ProcessGroup | None = None,
        trainable: list[torch.nn.Parameter] | None = None,
        *,
        ssa: str | None,
    ) -> None:
        self.network = network.to(device)
        self.group = group or ProcessGroup()
        self.device = device
        self.weights = weights
        self.optim = optim
        self.precision = resolve_precision(precision, device)
        bf16 = self.precision == "bf16"
        # bf16 on CUDA: autocast over the whole network; on a CPU only the decoders' large
        # factor products, as the encoders' small ones gain nothing
        self.autocast_bf16 = bf16 and device.type == "cuda"
        self.product_dtype = torch.bfloat16 if bf16 else None
        # fused Adam: one pass per parameter tensor instead of ~6 (CPU and CUDA)
        fused = device.type in ("cpu", "cuda")
        self.ssa = ssa
        self.joint_optimiser = torch.optim.Adam(
            network.parameters() if trainable is None else trainable, lr=optim.lr, fused=fused
        )
        self.ssa_optimiser = torch.optim.Adam(
            network.atac_encoder.parameters(), lr=optim.ssa_lr, fused=fused
        )
        self.schedulers = [
            torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=optim.lr_decay)
            for optimiser in (self.optimisers if ssa is not None else [self.joint_optimiser])
        ]
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.skipped_steps = 0
        self.rollbacks = 0
        self.stopper: EarlyStopping | None = None
        self._good: dict = {}  # the last finished epoch's state (_snapshot), while fitting

    def step(self, batch: Batch) -> dict[str, float] | None:
        """One joint update and one SSA update; ``None`` when the joint update was skipped.

        An update whose loss or gradient is not finite is skipped: the parameters and the
        optimiser's state stay as they were, and the step is counted (``skipped_steps``). The
        decision is taken after gradients are averaged, so every process skips together.
        """
        self.network.train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast_bf16):
            terms = self.network.loss(batch, self.weights, self.product_dtype)
        parameters = list(self.network.parameters())
        if not self._update(self.joint_optimiser, terms["joint"], parameters):
            return None
        values = {name: float(value.detach()) for name, value in terms.items()}
        if self.ssa is None:
            return values

        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast_bf16):
            ssa = self.network.ssa_loss(batch, self.ssa)
        if self._update(self.ssa_optimiser, ssa, list(self.network.atac_encoder.parameters())):
            values["ssa"] = float(ssa.detach())
        return values

    def _update(
        self, optimiser: torch.optim.Optimizer, loss: torch.Tensor, parameters: list
    ) -> bool:
        """Backward and step, unless the loss or the gradient norm is not finite; clips to
        ``grad_clip`` when it is set. Returns whether the update was made."""
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.group.average_gradients(parameters)
        norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
        finite = math.isfinite(self.group.average(float(loss.detach()))) and math.isfinite(
            float(norm)
        )
        if not finite:
            optimiser.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            return False
        if self.optim.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(parameters, self.optim.grad_clip, norm)
        optimiser.step()
        return True

    def run_epoch(
        self,
        data: TrainingData,
        train_cells: np.ndarray,
        batch_size: int,
        rng: np.random.Generator,
    ) -> dict[str, float] | None:
        """One pass over this process's share of ``train_cells``; ``None`` when the epoch was
        abandoned because its steps kept failing (``BAD_STEPS_IN_A_ROW`` in a row, or more
        than a tenth of them and more than one), so the caller can roll back."""
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        cells = train_cells[self.group.shard(len(train_cells))]
        batches = [cells[b] for b in minibatches(len(cells), batch_size, rng)]
        in_a_row = skipped = 0
        for index in batches:
            interrupts.check()
            values = self.step(make_batch(data, index, self.device))
            if values is None:
                skipped += 1
                in_a_row += 1
                if in_a_row >= BAD_STEPS_IN_A_ROW or skipped > max(1, len(batches) // 10):
                    return None
                continue
            in_a_row = 0
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
        for scheduler in self.schedulers:
            scheduler.step()
        self.epoch += 1
        record = {name: self.group.average(total / counts[name]) for name, total in sums.items()}
        if skipped:
            record["skipped_steps"] = float(skipped)
        self.history.append(record)
        return record

    @torch.no_grad()
    def validation_losses(
        self, data: TrainingData, cells: np.ndarray, batch_size: int
    ) -> dict[str, float]:
        """Held-out cells' losses at the posterior means (no dropout, no sampling), averaged
        over cells: ``validation`` is the joint loss (Eq. 13), ``validation_rna`` and
        ``validation_atac`` each modality's share of it, which early stopping watches."""
        self.network.eval()
        totals: dict[str, float] = {}
        for start in range(0, len(cells), batch_size):
            interrupts.check()
            index = cells[start : start + batch_size]
            batch = make_batch(data, index, self.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast_bf16):
                terms = self.network.loss(batch, self.weights, self.product_dtype)
            values = {"validation": float(terms["joint"])}
            parts = self.weights.per_modality({name: float(v) for name, v in terms.items()})
            values.update({f"validation_{name}": value for name, value in parts.items()})
            for name, value in values.items():
                totals[name] = totals.get(name, 0.0) + value * len(index)
        self.network.train()
        return {name: total / len(cells) for name, total in totals.items()}

    def fit(
        self,
        data: TrainingData,
        schedule: Schedule,
        batch_size: int,
        seed: int,
        progress: bool,
        checkpoint: CheckpointPolicy | None = None,
    ) -> None:
        """Train until ``schedule.max_epochs`` or until early stopping; resumes from the
        checkpoint's epoch when one is loaded.

        Every finished epoch is kept as the last good state. An epoch whose steps keep failing
        is rolled back to it with the learning rates halved (halved again at each further
        failure); after ``MAX_ROLLBACKS`` failures in a row the last good state is restored
        and :class:`TrainingDivergedError` raised, so the network is usable beside the error.
        With early stopping the weights of the last epoch at which a modality's monitored loss
        reached a new low (:class:`EarlyStopping`) are restored at the end.

        Ctrl-C is acted on between steps (:mod:`factvae.train.interrupts`): the last good state
        is restored as after a divergence, saved as the checkpoint when there is one (so
        ``resume`` continues from it exactly), and :class:`TrainingInterrupted` raised.
        """
        rng = np.random.default_rng([seed, self.group.rank] if self.group.active else seed)
        if checkpoint is not None:
            rng = checkpoint.restore(self, rng)
        stopper = self.stopper = self.stopper or EarlyStopping(schedule.patience)
        reporter = EpochReporter(
            self.epoch, schedule.max_epochs, f"FactVAE on {self.device}",
            progress and self.group.rank == 0,
        )  # fmt: skip
        self._good = self._snapshot(rng)
        with reuse_freed_memory(), interrupts.deferred(not self.group.active):
            try:
                self._epochs(data, schedule, batch_size, rng, reporter, checkpoint)
            except KeyboardInterrupt:
                reporter.close()
                self._stop_on_interrupt(rng, checkpoint)
        reporter.close()
        if schedule.early_stopping and stopper.best_network is not None:
            self.network.load_state_dict(stopper.best_network)

    def _epochs(
        self,
        data: TrainingData,
        schedule: Schedule,
        batch_size: int,
        rng: np.random.Generator,
        reporter: EpochReporter,
        checkpoint: CheckpointPolicy | None,
    ) -> None:
        """The epochs of :meth:`fit`, each finished one kept in ``self._good``."""
        stopper = self.stopper
        assert stopper is not None
        failures = 0
        while self.epoch < schedule.max_epochs and not stopper.stopped:
            record = self.run_epoch(data, schedule.train_cells, batch_size, rng)
            if record is None:
                failures += 1
                self._restore(self._good)
                if failures > MAX_ROLLBACKS:
                    raise TrainingDivergedError(
                        f"Training kept failing at epoch {self.epoch + 1}: non-finite losses "
                        f"or gradients after {MAX_ROLLBACKS} roll-backs with the learning "
                        f"rate halved each time ({self.skipped_steps} steps skipped). The "
                        f"model keeps the weights of epoch {self.epoch}, the last good one. "
                        "Check the counts for extreme values, or lower lr= or set "
                        "grad_clip=.",
                        last_good_epoch=self.epoch,
                    )
                self._scale_learning_rates(0.5**failures)
                self.rollbacks += 1
                continue
            failures = 0
            monitored = self.weights.per_modality(record)
            if len(schedule.validation_cells):
                record.update(self.validation_losses(data, schedule.validation_cells, batch_size))
                monitored = {name: record[f"validation_{name}"] for name in monitored}
            if schedule.early_stopping:
                stopper.update(monitored, self)
            self._good = self._snapshot(rng)
            reporter.update(self.epoch, record)
            if (
                checkpoint is not None
                and self.group.rank == 0
                and (checkpoint.due(self.epoch, schedule.max_epochs) or stopper.stopped)
            ):
                checkpoint.save(self, rng)

    def _stop_on_interrupt(
        self, rng: np.random.Generator, checkpoint: CheckpointPolicy | None
    ) -> None:
        """Back to the last finished epoch, random states included, so that the checkpoint
        saved here resumes to the model an uninterrupted run gives; then raise."""
        good = self._good
        self._restore(good)
        del self.history[self.epoch :]  # a record of the epoch being validated when it came
        torch.set_rng_state(good["torch_rng"])
        rng.bit_generator.state = good["numpy_rng"]
        saved = ""
        if checkpoint is not None and self.group.rank == 0 and self.epoch > 0:
            checkpoint.save(self, rng)
            saved = f"; it is saved in {checkpoint.directory}, where resume=True continues it"
        kept = (
            f"The model keeps the weights of epoch {self.epoch}, the last finished one{saved}."
            if self.epoch
            else "No epoch had finished."
        )
        message = f"Training interrupted during epoch {self.epoch + 1}. {kept}"
        interrupts.report(message)
        raise TrainingInterrupted(message, last_good_epoch=self.epoch)

    def _snapshot(self, rng: np.random.Generator) -> dict:
        """The state to roll back to: network, optimisers, schedulers, epoch, and the random
        states for a stop on Ctrl-C (roll-backs leave them where they are) (copies)."""
        return copy.deepcopy(
            {
                "network": self.network.state_dict(),
                "optimisers": [o.state_dict() for o in self.optimisers],
                "schedulers": [s.state_dict() for s in self.schedulers],
                "epoch": self.epoch,
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": rng.bit_generator.state,
            }
        )

    def _restore(self, snapshot: dict) -> None:
        self.network.load_state_dict(snapshot["network"])
        for optimiser, saved in zip(self.optimisers, snapshot["optimisers"]):
            optimiser.load_state_dict(copy.deepcopy(saved))
        for scheduler, saved in zip(self.schedulers, snapshot["schedulers"]):
            scheduler.load_state_dict(saved)
        self.epoch = snapshot["epoch"]

    def _scale_learning_rates(self, factor: float) -> None:
        for optimiser in self.optimisers:
            for group in optimiser.param_groups:
                group["lr"] *= factor

    @property
    def optimisers(self) -> list[torch.optim.Optimizer]:
        return [self.joint_optimiser, self.ssa_optimiser]

    def state(self, rng: np.random.Generator) -> dict:
        """Everything needed to continue training exactly where it stopped."""
        return {
            "network": self.network.state_dict(),
            "joint_optimiser": self.joint_optimiser.state_dict(),
            "ssa_optimiser": self.ssa_optimiser.state_dict(),
            "schedulers": [s.state_dict() for s in self.schedulers],
            "epoch": self.epoch,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": rng.bit_generator.state,
            "history": self.history,
            "early_stopping": None if self.stopper is None else self.stopper.state(),
            "skipped_steps": self.skipped_steps,
            "rollbacks": self.rollbacks,
        }

    def load_state(self, state: dict) -> np.random.Generator:
        self.network.load_state_dict(state["network"])
        self.joint_optimiser.load_state_dict(state["joint_optimiser"])
        self.ssa_optimiser.load_state_dict(state["ssa_optimiser"])
        for scheduler, saved in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        if state.get("early_stopping") is not None:
            self.stopper = EarlyStopping.from_state(state["early_stopping"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        torch.set_rng_state(state["torch_rng"])
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy_rng"]
        return rng
