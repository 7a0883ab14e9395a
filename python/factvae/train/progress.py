"""Training progress a person can read: a live bar on a terminal or in a notebook; elsewhere
(log files, knitr, R through reticulate) one plain line per tenth of the epochs."""

from __future__ import annotations

import sys
from typing import Any, TextIO

REPORTS = 10  # plain-text lines over a whole run


def interactive(stream: TextIO) -> bool:
    """Whether a redrawn bar will be seen as one: a terminal, or a Jupyter kernel."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def summary(record: dict[str, float]) -> dict[str, str]:
    """The losses worth watching: each modality's likelihood, the prior term, validation."""
    shown = {"rna": f"{record['rna_nll']:.1f}", "atac": f"{record['atac_nll']:.1f}",
             "reg": f"{record['regulatory']:.3f}"}  # fmt: skip
    if "validation" in record:
        shown["val"] = f"{record['validation']:.3f}"
    return shown


class EpochReporter:
    """Reports finished epochs ``first+1 .. last`` under ``label``; silent when not enabled."""

    def __init__(
        self, first: int, last: int, label: str, enabled: bool, stream: TextIO | None = None
    ) -> None:
        self.last, self.label = last, label
        self.stream = stream or sys.stderr
        self.enabled = enabled and last > first
        self.every = max(1, round((last - first) / REPORTS))
        self.first = first
        self.bar: Any = None
        self.unreported: tuple[int, dict[str, float]] | None = None
        if self.enabled and interactive(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=last - first, desc=label, unit="epoch", file=self.stream)

    def update(self, epoch: int, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        shown = summary(record)
        if self.bar is not None:
            self.bar.set_postfix(shown)
            self.bar.update(1)
        elif (epoch - self.first) % self.every == 0 or epoch == self.last:
            self._line(epoch, shown)
            self.unreported = None
        else:
            self.unreported = epoch, record

    def close(self) -> None:
        """Ends the bar, or reports the last epoch when training stopped between lines."""
        if self.bar is not None:
            self.bar.close()
        elif self.unreported is not None:
            self._line(self.unreported[0], summary(self.unreported[1]))

    def _line(self, epoch: int, shown: dict[str, str]) -> None:
        losses = ", ".join(f"{name} {value}" for name, value in shown.items())
        print(f"{self.label}: epoch {epoch}/{self.last}: {losses}", file=self.stream, flush=True)
