"""Errors that factvae raises on purpose, so callers (and the R wrapper) can tell them apart."""


class FactVAEInputError(ValueError):
    """The user's input cannot be used as given; the message names the problem and the fix."""


class TrainingDivergedError(RuntimeError):
    """Training kept producing non-finite losses or gradients after roll-backs; the message
    names the epoch and a hint. The model keeps the weights of ``last_good_epoch``."""

    def __init__(self, message: str, last_good_epoch: int = 0) -> None:
        super().__init__(message)
        self.last_good_epoch = last_good_epoch


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C (SIGINT) between two steps; the message names the epoch. The
    model keeps the weights of ``last_good_epoch``, the last finished one, as after a divergence.
    A KeyboardInterrupt, so code that handles Ctrl-C handles this too."""

    def __init__(self, message: str, last_good_epoch: int = 0) -> None:
        super().__init__(message)
        self.last_good_epoch = last_good_epoch
