"""Where and in what precision training runs, and its seeds."""

from __future__ import annotations

import random

import numpy as np
import torch

from factvae.errors import FactVAEInputError


def select_device(device: str | torch.device = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU; an explicit request that cannot be met is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FactVAEInputError(
            f"device={device!r} was asked for but PyTorch sees no CUDA GPU here; use "
            "device='auto' or 'cpu'."
        )
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise FactVAEInputError(
            f"device={device!r} is not a PyTorch device; use 'auto', 'cpu', 'cuda' or 'mps'."
        ) from err


PRECISIONS = ("auto", "float32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16
    products are emulated through float32 and no faster."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is ``bf16`` on CPUs with native bf16 units, where it was measured to speed
    training without costing clustering quality (README, "Precision"); ``float32`` elsewhere,
    GPUs included, where bf16 has not yet been measured against float32."""
    if precision not in PRECISIONS:
        raise FactVAEInputError(
            f"precision={precision!r} is not one of {list(PRECISIONS)}; 'auto' picks bf16 "
            "products on CPUs with native bf16 and float32 elsewhere."
        )
    if precision == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"
    return precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
