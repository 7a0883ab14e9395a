"""Errors that factvae raises on purpose, so callers (and the R wrapper) can tell them apart."""


class FactVAEInputError(ValueError):
    """The user's input cannot be used as given; the message names the problem and the fix."""


class TrainingDivergedError(RuntimeError):
    """A loss or gradient became non-finite; the message names the term, epoch and a hint."""
