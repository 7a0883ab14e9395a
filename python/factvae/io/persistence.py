"""Saving and loading models safely: weights via ``weights_only`` torch files, the rest as JSON
and plain numpy arrays. Nothing is ever unpickled, and every file is written atomically."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from factvae.errors import FactVAEInputError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A crash mid-write leaves the previous file (or none), never a truncated one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda target: torch.save(obj, target))


def load_torch(path: Path) -> Any:
    """Load tensors and plain containers only; a file that needs arbitrary objects is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise FactVAEInputError(
            f"{path} holds objects other than tensors and plain values, so it was not loaded "
            "(loading it could run code). Only open model files from a source you trust, and "
            "save models with FactVAE.save()."
        ) from err


def save_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda target: target.write_text(json.dumps(obj, indent=2, sort_keys=True)))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(target: Path) -> None:
        with open(target, "wb") as stream:
            np.savez(stream, **arrays)

    atomic_write(path, write)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}
