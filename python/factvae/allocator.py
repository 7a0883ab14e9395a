"""Keep freed training temporaries in the process instead of handing them back to the OS.

Each CPU training step allocates and frees a few dozen batch x features arrays (the logits,
the fused likelihood's gradients). glibc's malloc returns large blocks to the kernel when they
are freed, so every step page-faults ~70 MB back in (about a fifth of a step on snare_hcellline).
Raising the mmap and trim thresholds while training keeps those blocks in the heap for reuse;
``release()`` returns the memory afterwards. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MAX_MMAP_THRESHOLD = 32 * 1024**2  # glibc's ceiling for this setting on 64-bit
_TRIM_THRESHOLD = 1024**3


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - only glibc has it
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """While the block runs, freed blocks up to 32 MB stay in the heap; trimmed at the end."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    try:
        yield
    finally:
        if libc is not None:
            libc.malloc_trim(0)
