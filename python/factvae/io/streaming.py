"""Writing the augmented ATAC matrix to an .h5ad file chunk by chunk, so memory is bounded by
one chunk of cells however large the matrix is. The file opens with ``anndata.read_h5ad``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata.io import write_elem

from factvae.io.persistence import atomic_write


def write_h5ad_chunks(
    path: Path,
    chunks: Iterator[tuple[slice, np.ndarray]],
    obs_names: pd.Index,
    var: pd.DataFrame,
    threshold: float | None,
) -> Path:
    """Stream cells x features chunks into ``path``: dense X, or CSR X keeping >= ``threshold``."""
    shape = (len(obs_names), len(var))

    def write(target: Path) -> None:
        with h5py.File(target, "w") as handle:
            handle.attrs["encoding-type"] = "anndata"
            handle.attrs["encoding-version"] = "0.1.0"
            if threshold is None:
                _write_dense(handle, chunks, shape)
            else:
                _write_csr(handle, chunks, shape, threshold)
            write_elem(handle, "obs", pd.DataFrame(index=pd.Index(obs_names, dtype=str)))
            write_elem(handle, "var", var)
            for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
                write_elem(handle, key, {})

    atomic_write(Path(path), write)
    return Path(path)


def _write_dense(handle: h5py.File, chunks: Iterator, shape: tuple[int, int]) -> None:
    rows = max(1, min(shape[0], (1 << 20) // max(1, shape[1])))
    data = handle.create_dataset("X", shape=shape, dtype="float32", chunks=(rows, shape[1]))
    data.attrs["encoding-type"] = "array"
    data.attrs["encoding-version"] = "0.2.0"
    for part, values in chunks:
        data[part] = values


def _write_csr(
    handle: h5py.File, chunks: Iterator, shape: tuple[int, int], threshold: float
) -> None:
    group = handle.create_group("X")
    group.attrs["encoding-type"] = "csr_matrix"
    group.attrs["encoding-version"] = "0.1.0"
    group.attrs["shape"] = shape
    data = group.create_dataset("data", shape=(0,), maxshape=(None,), dtype="float32", chunks=True)
    indices = group.create_dataset(
        "indices", shape=(0,), maxshape=(None,), dtype="int64", chunks=True
    )
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    for part, values in chunks:
        rows, cols = np.nonzero(values >= threshold)
        end = data.shape[0]
        data.resize((end + len(rows),))
        indices.resize((end + len(rows),))
        data[end:] = values[rows, cols]
        indices[end:] = cols
        indptr[part.start + 1 : part.stop + 1] = end + np.cumsum(
            np.bincount(rows, minlength=part.stop - part.start)
        )
    group.create_dataset("indptr", data=indptr)
