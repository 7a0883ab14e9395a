"""Cells x features counts handed out a block of rows at a time, from memory or from disk.

Preprocessing and training touch counts only through a :class:`RowSource`, so a matrix opened
with ``anndata.read_h5ad(path, backed="r")`` is never loaded whole: memory grows with one block
of rows, not with the number of cells. Counts already in memory stay one CSR matrix, and every
operation on them is the same whole-matrix product or row slice it would be without this layer.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Union

import h5py
import numpy as np
import scipy.sparse as sp

from factvae.errors import FactVAEInputError

CHUNK_ENTRIES = 1 << 22  # stored values per block read from disk: ~32 MB as float32 + int32

Positions = Union[slice, np.ndarray]  # where a block's rows sit in the model's cell order
Transform = Callable[[sp.csr_matrix], sp.csr_matrix]


class RowSource(ABC):
    """A cells x features count matrix that yields its rows as float32 CSR blocks."""

    shape: tuple[int, int]

    @abstractmethod
    def rows(self, index: np.ndarray) -> sp.csr_matrix:
        """The rows at ``index``, in that order (a minibatch)."""

    @abstractmethod
    def chunks(self) -> Iterator[tuple[Positions, sp.csr_matrix]]:
        """Every row once, as (positions, block): the block's rows are cells ``positions``."""

    @abstractmethod
    def permute_rows(self, order: np.ndarray) -> RowSource:
        """Row ``i`` of the result is row ``order[i]`` of this one (``order`` a permutation)."""

    @abstractmethod
    def select_columns(self, columns: np.ndarray) -> RowSource:
        """Only the features at positions ``columns`` (select before any ``map``)."""

    @abstractmethod
    def map(self, transform: Transform) -> RowSource:
        """``transform`` applied to every block; it must act on each row on its own, so blocks
        of any size give the same rows."""

    @abstractmethod
    def to_memory(self) -> sp.csr_matrix:
        """The whole matrix as one CSR (only for matrices known to be small, like the HVGs)."""

    def select_rows(self, rows: np.ndarray) -> RowSource:
        """Only the rows at ``rows`` (any subset, in that order), read as this source's
        blocks are, so a subset of on-disk counts is never loaded whole either."""
        return RowSubset(self, rows)

    def dot(self, other: np.ndarray) -> np.ndarray:
        """``matrix @ other``, one block of rows at a time."""
        out = np.empty((self.shape[0], other.shape[1]), np.result_type(np.float32, other.dtype))
        for positions, block in self.chunks():
            out[positions] = block @ other
        return out

    def tdot(self, other: np.ndarray) -> np.ndarray:
        """``matrix.T @ other``, summed over blocks of rows."""
        out = np.zeros((self.shape[1], other.shape[1]))
        for positions, block in self.chunks():
            out += block.T @ other[positions]
        return out


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def row_bands(matrix: sp.csr_matrix, n_bands: int) -> list[tuple[slice, sp.csr_matrix]]:
    """The matrix cut into ``n_bands`` bands of rows with about equal non-zeros; each band
    shares the matrix's value and index arrays (views, no copy)."""
    targets = np.linspace(0, matrix.nnz, n_bands + 1)[1:-1]
    cuts = np.unique(
        np.concatenate([[0], np.searchsorted(matrix.indptr, targets), [len(matrix.indptr) - 1]])
    )
    bands = []
    for start, stop in zip(cuts[:-1], cuts[1:]):
        lo, hi = matrix.indptr[start], matrix.indptr[stop]
        # set the arrays directly: scipy's constructor copies them even with copy=False
        band = sp.csr_matrix((stop - start, matrix.shape[1]), dtype=matrix.dtype)
        band.data, band.indices = matrix.data[lo:hi], matrix.indices[lo:hi]
        band.indptr = matrix.indptr[start : stop + 1] - lo
        bands.append((slice(int(start), int(stop)), band))
    return bands


class InMemoryRows(RowSource):
    """A CSR matrix in memory: plain slices; its products run on every core, over bands of
    rows (``dot``) or of columns (``tdot``, from one CSC copy made on first use). Each output
    entry is summed in the same order as scipy's single-threaded product, so the results are
    identical bit for bit (scipy's sparse products release the GIL)."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        self.matrix = matrix
        self.shape = matrix.shape
        self._bands: list[tuple[slice, sp.csr_matrix]] | None = None
        self._transposed_bands: list[tuple[slice, sp.csr_matrix]] | None = None

    def rows(self, index: np.ndarray) -> sp.csr_matrix:
        return self.matrix[index]

    def chunks(self) -> Iterator[tuple[Positions, sp.csr_matrix]]:
        yield slice(0, self.shape[0]), self.matrix

    def permute_rows(self, order: np.ndarray) -> InMemoryRows:
        return InMemoryRows(self.matrix[order])

    def select_columns(self, columns: np.ndarray) -> InMemoryRows:
        return InMemoryRows(self.matrix[:, columns])

    def select_rows(self, rows: np.ndarray) -> InMemoryRows:
        return InMemoryRows(self.matrix[rows])

    def map(self, transform: Transform) -> InMemoryRows:
        return InMemoryRows(transform(self.matrix))

    def to_memory(self) -> sp.csr_matrix:
        return self.matrix

    def dot(self, other: np.ndarray) -> np.ndarray:
        if available_cores() == 1:
            return self.matrix @ other
        if self._bands is None:
            self._bands = row_bands(self.matrix, available_cores())
        return _banded_product(self._bands, other, self.shape[0])

    def tdot(self, other: np.ndarray) -> np.ndarray:
        if available_cores() == 1:
            return self.matrix.T @ other
        if self._transposed_bands is None:
            transposed = self.matrix.tocsc().T  # CSR of the transpose: rows are features
            self._transposed_bands = row_bands(transposed, available_cores())
        return _banded_product(self._transposed_bands, other, self.shape[1])


def _banded_product(
    bands: list[tuple[slice, sp.csr_matrix]], other: np.ndarray, n_rows: int
) -> np.ndarray:
    """``matrix @ other`` with each band of the matrix's rows on its own thread."""
    out = np.empty((n_rows, other.shape[1]), np.result_type(bands[0][1].dtype, other))
    with ThreadPoolExecutor(len(bands)) as pool:
        products = pool.map(lambda band: band[1] @ other, bands)
        for (rows, _), product in zip(bands, products):
            out[rows] = product
    return out


class RowSubset(RowSource):
    """Some rows of another row source (:meth:`RowSource.select_rows`): each of its blocks is
    read whole and cut down to the kept rows, so memory grows with one block."""

    def __init__(self, source: RowSource, rows: np.ndarray) -> None:
        self.source, self.kept = source, np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.kept), source.shape[1])
        self.position = np.full(source.shape[0], -1, dtype=np.int64)
        self.position[self.kept] = np.arange(len(self.kept))

    def rows(self, index: np.ndarray) -> sp.csr_matrix:
        return self.source.rows(self.kept[index])

    def chunks(self) -> Iterator[tuple[Positions, sp.csr_matrix]]:
        for positions, block in self.source.chunks():
            at = self.position[positions]
            keep = at >= 0
            if keep.any():
                yield at[keep], block[keep]

    def permute_rows(self, order: np.ndarray) -> RowSubset:
        return RowSubset(self.source, self.kept[order])

    def select_columns(self, columns: np.ndarray) -> RowSubset:
        return RowSubset(self.source.select_columns(columns), self.kept)

    def map(self, transform: Transform) -> RowSubset:
        return RowSubset(self.source.map(transform), self.kept)

    def to_memory(self) -> sp.csr_matrix:
        return self.source.rows(self.kept)


class H5CSR:
    """Row reads from a CSR matrix stored in an HDF5 group (``data``, ``indices``, ``indptr``).

    Only ``indptr`` (one integer per cell) is held in memory; values are read on demand.
    """

    def __init__(self, group: h5py.Group, where: str) -> None:
        self.where = where
        self.data, self.indices = group["data"], group["indices"]
        self.indptr = group["indptr"][:]
        self.shape = (len(self.indptr) - 1, int(group.attrs["shape"][1]))

    def range(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows ``start`` to ``stop``: one contiguous read."""
        self._check_open()
        lo, hi = self.indptr[start], self.indptr[stop]
        return self._csr(self.data[lo:hi], self.indices[lo:hi], self.indptr[start : stop + 1] - lo)

    def take(self, rows: np.ndarray) -> sp.csr_matrix:
        """The rows at ``rows``, which must increase (the order HDF5 reads fastest)."""
        self._check_open()
        spans = [slice(self.indptr[r], self.indptr[r + 1]) for r in rows]
        lengths = self.indptr[rows + 1] - self.indptr[rows]
        return self._csr(
            np.concatenate([self.data[s] for s in spans]),
            np.concatenate([self.indices[s] for s in spans]),
            np.concatenate([[0], np.cumsum(lengths)]),
        )

    def chunk_bounds(self) -> np.ndarray:
        """Row boundaries such that each block holds at most CHUNK_ENTRIES values plus a row."""
        targets = np.arange(CHUNK_ENTRIES, self.indptr[-1], CHUNK_ENTRIES)
        cuts = np.searchsorted(self.indptr, targets, side="right") - 1
        return np.unique(np.concatenate([[0], cuts, [self.shape[0]]]))

    def _csr(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> sp.csr_matrix:
        values = np.asarray(data, dtype=np.float32)
        return sp.csr_matrix((values, indices, indptr), shape=(len(indptr) - 1, self.shape[1]))

    def _check_open(self) -> None:
        if not self.data.id.valid:
            raise FactVAEInputError(
                f"The backed file holding {self.where} was closed; keep the AnnData opened with "
                "backed='r' open until training and preprocessing are done."
            )


class BackedRows(RowSource):
    """Counts in a backed h5ad file, read a block (or a minibatch) of rows at a time.

    Row order, column subsets and row-wise transforms are kept as an index and a function and
    applied to each block as it is read, so none of them copies the matrix.
    """

    def __init__(
        self,
        file: H5CSR,
        order: np.ndarray | None = None,
        columns: np.ndarray | None = None,
        transforms: tuple[Transform, ...] = (),
    ) -> None:
        self.file, self.order, self.columns, self.transforms = file, order, columns, transforms
        n_columns = file.shape[1] if columns is None else len(columns)
        self.shape = (file.shape[0], n_columns)
        self.positions = None if order is None else np.argsort(order)

    def rows(self, index: np.ndarray) -> sp.csr_matrix:
        wanted = np.asarray(index) if self.order is None else self.order[index]
        ascending = np.argsort(wanted, kind="stable")
        block = self.file.take(wanted[ascending])
        return self._finish(block[np.argsort(ascending)])

    def chunks(self) -> Iterator[tuple[Positions, sp.csr_matrix]]:
        bounds = self.file.chunk_bounds()
        for start, stop in zip(bounds[:-1], bounds[1:]):
            positions = slice(start, stop) if self.positions is None else self.positions[start:stop]
            yield positions, self._finish(self.file.range(start, stop))

    def permute_rows(self, order: np.ndarray) -> BackedRows:
        combined = order if self.order is None else self.order[order]
        return BackedRows(self.file, combined, self.columns, self.transforms)

    def select_columns(self, columns: np.ndarray) -> BackedRows:
        combined = columns if self.columns is None else self.columns[columns]
        return BackedRows(self.file, self.order, combined, self.transforms)

    def map(self, transform: Transform) -> BackedRows:
        return BackedRows(self.file, self.order, self.columns, (*self.transforms, transform))

    def to_memory(self) -> sp.csr_matrix:
        stacked = sp.vstack([block for _, block in self.chunks()], format="csr")
        return stacked if self.order is None else stacked[self.order]

    def _finish(self, block: sp.csr_matrix) -> sp.csr_matrix:
        if self.columns is not None:
            block = block[:, self.columns]
        for transform in self.transforms:
            block = transform(block)
        return block
