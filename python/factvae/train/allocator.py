"""Keep freed training temporaries in the process instead of handing them back to the OS.

Each CPU training step allocates and frees a few dozen batch x features arrays (the logits,
the fused likelihood's gradients). glibc's malloc serves large blocks with mmap and returns them
to the kernel when they are freed, so every step page-faults them all back in (~70 MB a step on
snare_hcellline, about a fifth of its time; far more at 150k peaks, where each block is 77 MB).
While training, blocks come from the heap instead (no mmap, a high trim threshold), so freed
ones are reused; the heap is trimmed and mmap allowed again afterwards. Elsewhere than glibc
(macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536  # glibc's default number of mmap'd blocks
_DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's default
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
    """While the block runs, large blocks come from the heap and freed ones stay there for
    reuse; afterwards the heap is trimmed and mmap allowed again."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
