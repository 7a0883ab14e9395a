"""Ctrl-C during training, acted on between two steps.

A KeyboardInterrupt raised wherever Python happens to be (inside an optimiser step, a
checkpoint write, a finaliser that swallows it) can leave the network half-updated or be lost.
While training, a SIGINT handler therefore only notes the request (:func:`request`) and the
loop stops at its next :func:`check`, a step or two later, with every tensor consistent; a second
Ctrl-C while one is pending raises at once, for a step that never ends. The handler is Python's
own in plain Python; under R, ``factvae.r_bridge.install_interrupt_handler`` installs one that
calls :func:`request` too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_state = {"deferring": 0, "requested": False}
_reports: list[str] = []


def request() -> None:
    """Ask training to stop at its next check; raise KeyboardInterrupt when nothing defers it,
    or when a request is already pending."""
    if _state["deferring"] and not _state["requested"]:
        _state["requested"] = True
        return
    _state["requested"] = False
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if a stop was requested since the last check."""
    if _state["requested"]:
        _state["requested"] = False
        raise KeyboardInterrupt


def _on_sigint(signum: int, frame: Any) -> None:
    request()


@contextmanager
def deferred(enabled: bool = True) -> Iterator[None]:
    """Defer Ctrl-C to :func:`check` inside the block. Python's default handler is swapped for
    one that defers only in the main thread; any other (R's, a notebook's) is left in place, as
    it calls :func:`request` itself or knows better. Not ``enabled``: a no-op (ranks of a
    distributed run must stop together, which a per-process request cannot promise)."""
    if not enabled:
        yield
        return
    swap = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if swap:
        signal.signal(signal.SIGINT, _on_sigint)
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        if not _state["deferring"]:
            _state["requested"] = False
        if swap:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def report(message: str) -> None:
    """Keep the message of a stopped fit for a caller that only sees the interrupt (R)."""
    _reports[:] = [message]


def take_report() -> str | None:
    """The message of the last stopped fit, once; None when there is none."""
    return _reports.pop() if _reports else None
