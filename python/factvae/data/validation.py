"""Validation of the user's paired AnnData: counts, cell matching, features, reductions,
batch covariates; new cells' features matched to a trained model's.

Nothing here modifies the caller's objects: every array we keep is a new object or a read-only
view that is never written.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from factvae.data.counts import H5CSR, BackedRows, InMemoryRows, RowSource
from factvae.data.preprocessing import ENTRY_BLOCK
from factvae.errors import FactVAEInputError


@dataclass
class ModalityCounts:
    """One modality's raw counts with each cell's total and each feature's detection count.

    Both come from the one validating pass of :func:`raw_counts`, so later steps need no
    extra pass over (possibly on-disk) counts.
    """

    counts: RowSource
    cell_totals: np.ndarray
    detected: np.ndarray

    def permute_rows(self, order: np.ndarray) -> ModalityCounts:
        return ModalityCounts(
            self.counts.permute_rows(order), self.cell_totals[order], self.detected
        )

    def select_columns(self, columns: np.ndarray) -> ModalityCounts:
        return ModalityCounts(
            self.counts.select_columns(columns), self.cell_totals, self.detected[columns]
        )


def _check_anndata(adata: object, name: str) -> None:
    if not (hasattr(adata, "obs_names") and hasattr(adata, "var_names") and hasattr(adata, "X")):
        raise FactVAEInputError(
            f"{name} must be an AnnData (cells x features, raw counts), not {type(adata).__name__}."
        )


# The stack levels below count a frame for the module doing FactVAE's work (factvae.building,
# factvae.mapping), so a warning points where it did when api.py did that work itself.


def raw_counts(adata: object, name: str) -> ModalityCounts:
    """Raw counts from ``layers['counts']`` when present, else ``.X``, validated a block at a time.

    A backed ``.X`` stored as CSR stays on disk and is read in row blocks; anything else is
    held in memory as CSR float32.
    """
    _check_anndata(adata, name)
    layers = getattr(adata, "layers", {})
    in_layers = "counts" in layers
    source = layers["counts"] if in_layers else adata.X
    where = f"{name}.layers['counts']" if in_layers else f"{name}.X"
    if source is None:
        raise FactVAEInputError(f"{where} is empty; put the raw counts in {name}.X.")
    if getattr(adata, "isbacked", False) and in_layers:
        warnings.warn(
            f"{name} is opened backed, but its counts come from {where}, which anndata holds in "
            "memory; store the raw counts in .X to train without loading them.",
            UserWarning,
            stacklevel=4,
        )
    counts = _row_source(source, where)
    totals = np.empty(counts.shape[0])
    detected = np.zeros(counts.shape[1], dtype=np.int64)
    whole = True
    for positions, block in counts.chunks():
        whole = _check_count_values(block.data, where) and whole
        totals[positions] = np.asarray(block.sum(axis=1)).ravel()
        detected += detected_cells(block)
    if not whole:
        warnings.warn(
            f"{where} holds non-integer values; FactVAE models raw counts and will use them as "
            "given. If these are normalised data, pass the raw counts instead.",
            UserWarning,
            stacklevel=4,
        )
    return ModalityCounts(counts, totals, detected)


def _row_source(source: object, where: str) -> RowSource:
    """Backed CSR stays on disk; other backed storage is read whole; in-memory data as CSR."""
    group = getattr(source, "group", None)
    if isinstance(group, h5py.Group) and _read_attr(group, "encoding-type") == "csr_matrix":
        return BackedRows(H5CSR(group, where))
    if group is not None or isinstance(source, h5py.Dataset):
        warnings.warn(
            f"{where} is stored on disk as a dense or CSC matrix, which cannot be read a block "
            "of cells at a time, so it is loaded into memory. To train out of core, store it as "
            "CSR: adata = anndata.read_h5ad(path); adata.X = scipy.sparse.csr_matrix(adata.X); "
            "adata.write_h5ad(path).",
            UserWarning,
            stacklevel=5,
        )
        source = source[:]
    if sp.issparse(source):
        return InMemoryRows(sp.csr_matrix(source, dtype=np.float32))
    values = np.asarray(source)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise FactVAEInputError(f"{where} must be a numeric 2-D matrix of counts.")
    return InMemoryRows(sp.csr_matrix(values.astype(np.float32, copy=False)))


def _read_attr(group: h5py.Group, key: str) -> str:
    value = group.attrs.get(key, "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_count_values(values: np.ndarray, where: str) -> bool:
    """Finite and non-negative, else an error; returns whether all are whole numbers.

    Checked in blocks so no nnz-sized temporary is made.
    """
    whole = True
    for start in range(0, len(values), ENTRY_BLOCK):
        block = values[start : start + ENTRY_BLOCK]
        if not np.isfinite(block).all():
            raise FactVAEInputError(
                f"{where} holds NaN or infinite values; FactVAE needs raw counts (fix or drop "
                "them)."
            )
        if (block < 0).any():
            raise FactVAEInputError(
                f"{where} holds negative values; FactVAE needs raw counts, not normalised or "
                "scaled data (use the counts layer)."
            )
        whole = whole and bool(np.all(block == np.round(block)))
    return whole


def detected_cells(counts: sp.csr_matrix) -> np.ndarray:
    """Per feature, how many cells have a non-zero count (no boolean copy of the matrix)."""
    positive = np.zeros(counts.shape[1], dtype=np.int64)
    for start in range(0, counts.nnz, ENTRY_BLOCK):
        block = slice(start, start + ENTRY_BLOCK)
        positive += np.bincount(
            counts.indices[block][counts.data[block] > 0], minlength=counts.shape[1]
        )
    return positive


def check_unique(names: pd.Index, what: str) -> None:
    if names.has_duplicates:
        dups = names[names.duplicated()].unique()[:3].tolist()
        raise FactVAEInputError(
            f"{what} names must be unique; {int(names.duplicated().sum())} are repeated (for "
            f"example {dups}). Make them unique (e.g. AnnData.{'obs' if 'cell' in what else 'var'}"
            "_names_make_unique())."
        )


def cell_names(adata: object, name: str) -> pd.Index:
    """The cell names of one AnnData, which must be unique."""
    _check_anndata(adata, name)
    cells = pd.Index(adata.obs_names.astype(str))  # type: ignore[attr-defined]
    check_unique(cells, f"{name} cell")
    return cells


def match_cells(rna: object, atac: object) -> tuple[pd.Index, np.ndarray]:
    """The RNA cell order and, for each, its row in ATAC; the two must hold the same cells."""
    _check_anndata(rna, "rna")
    _check_anndata(atac, "atac")
    rna_cells = pd.Index(rna.obs_names.astype(str))
    atac_cells = pd.Index(atac.obs_names.astype(str))
    check_unique(rna_cells, "rna cell")
    check_unique(atac_cells, "atac cell")
    atac_rows = atac_cells.get_indexer(rna_cells)
    only_rna = int((atac_rows < 0).sum())
    only_atac = len(atac_cells) - (len(rna_cells) - only_rna)
    if only_rna or only_atac:
        example = (
            rna_cells[atac_rows < 0][:2].tolist()
            or atac_cells[~atac_cells.isin(rna_cells)][:2].tolist()
        )
        raise FactVAEInputError(
            f"rna and atac must hold the same cells (matched by name): {only_rna} cells are only "
            f"in rna and {only_atac} only in atac (for example {example}). Subset both to their "
            "shared cells, e.g. cells = rna.obs_names.intersection(atac.obs_names)."
        )
    return rna_cells, atac_rows


def check_not_empty(
    counts: ModalityCounts, cells: pd.Index, features: pd.Index, what: str
) -> tuple[ModalityCounts, pd.Index]:
    """Reject cells with no counts (their size factor is log 0); drop all-zero features.

    All-zero features carry no information and are common in unfiltered data, so they are
    dropped with a warning rather than refused. Dropping keeps a column index, not a copy.
    """
    cell_totals = counts.cell_totals
    if (cell_totals == 0).any():
        example = cells[cell_totals == 0][:3].tolist()
        raise FactVAEInputError(
            f"{int((cell_totals == 0).sum())} cells have no {what} counts (for example "
            f"{example}); remove them before fitting (their library size is zero)."
        )
    detected = counts.detected
    if (detected == 0).any():
        warnings.warn(
            f"{int((detected == 0).sum())} {what} features have no counts in any cell (for "
            f"example {features[detected == 0][:3].tolist()}); they are left out of the model.",
            UserWarning,
            stacklevel=4,
        )
        keep = np.nonzero(detected > 0)[0]
        return counts.select_columns(keep), features[keep]
    return counts, features


def reduction(rep: object, adata: object, n_cells: int, rows: np.ndarray, what: str) -> np.ndarray:
    """A user-supplied reduction (array, or a key of ``obsm``) in the model's cell order."""
    if isinstance(rep, str):
        if rep not in adata.obsm:
            raise FactVAEInputError(
                f"{what}={rep!r} is not in obsm (keys: {list(adata.obsm.keys())})."
            )
        rep = adata.obsm[rep]
    values = np.asarray(rep.to_numpy() if isinstance(rep, pd.DataFrame) else rep, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] != n_cells:
        raise FactVAEInputError(
            f"{what} must be a cells x components matrix with {n_cells} rows; got shape "
            f"{values.shape}."
        )
    if not np.isfinite(values).all():
        raise FactVAEInputError(f"{what} holds NaN or infinite values.")
    return np.ascontiguousarray(values[rows])


# ---- batch covariates ------------------------------------------------------------------------

BATCH_SEPARATOR = "|"  # joins the values of several batch columns into one level


def batch_labels(
    adata: object,
    keys: list[str],
    name: str,
    other: object | None = None,
    other_rows: np.ndarray | None = None,
    other_name: str = "atac",
) -> np.ndarray:
    """Each cell's batch: the value of ``keys`` in ``adata.obs``, several columns joined by
    ``|``, as strings. When ``other.obs`` (its rows ``other_rows`` in ``adata``'s cell order)
    holds a key too, its values must agree."""
    obs = getattr(adata, "obs", None)
    columns = [] if obs is None else list(obs.columns)
    parts = []
    for key in keys:
        if key not in columns:
            raise FactVAEInputError(
                f"batch_key {key!r} is not a column of {name}.obs (its columns: "
                f"{columns[:10]}); add the cells' sample or batch there, or pass the name of "
                "an existing column."
            )
        values = obs[key]
        missing = values.isna().to_numpy()
        if missing.any():
            example = obs.index[missing][:3].tolist()
            raise FactVAEInputError(
                f"{name}.obs[{key!r}] has {int(missing.sum())} missing values (for example "
                f"cells {example}); give every cell a batch (e.g. a level 'unknown') or drop "
                "those cells."
            )
        labels = values.astype(str).to_numpy(dtype=object)
        other_obs = getattr(other, "obs", None)
        if other_obs is not None and key in other_obs.columns:
            rows = np.arange(len(other_obs)) if other_rows is None else other_rows
            theirs = other_obs[key].astype(str).to_numpy(dtype=object)[rows]
            differ = theirs != labels
            if differ.any():
                cell = obs.index[np.argmax(differ)]
                raise FactVAEInputError(
                    f"{name}.obs[{key!r}] and {other_name}.obs[{key!r}] disagree for "
                    f"{int(differ.sum())} cells (for example cell {cell!r}: "
                    f"{labels[np.argmax(differ)]!r} vs {theirs[np.argmax(differ)]!r}); make "
                    f"them the same, or drop the column from {other_name}.obs ({name}.obs is "
                    "the one read)."
                )
        parts.append(labels)
    if len(parts) == 1:
        return parts[0]
    return np.array([BATCH_SEPARATOR.join(values) for values in zip(*parts)], dtype=object)


def batch_levels(adata: object, keys: list[str], labels: np.ndarray) -> list[str]:
    """The levels in order: a single categorical column's category order (unused categories
    left out), else sorted."""
    present = set(labels)
    column = adata.obs[keys[0]]  # type: ignore[attr-defined]
    if len(keys) == 1 and isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories if str(c) in present]
    return sorted(present)


# ---- new cells: features matched to the model's by name ---------------------------------------


def align_features(
    names: pd.Index, model: pd.Index, known: pd.Index | None, what: str, kind: str
) -> np.ndarray:
    """For each of the model's features, its column in ``names`` (-1 where it is missing).

    Missing features are filled with zeros by :func:`align_columns` and reported in a warning;
    features the model does not use are dropped, and reported when they were not among the
    features of the data the model was built from (``known``; None: report all of them).
    """
    check_unique(names, f"{what} feature ({kind})")
    positions = names.get_indexer(model)
    missing = positions < 0
    unused = names[~names.isin(model)]
    unknown = unused if known is None else unused[~unused.isin(known)]
    problems = []
    if missing.any():
        problems.append(
            f"{int(missing.sum())} of the model's {len(model)} {kind}s are missing (for example "
            f"{model[missing][:3].tolist()}) and are filled with zeros"
        )
    if len(unknown):
        problems.append(
            f"{len(unknown)} {kind}s the model was not built from are dropped (for example "
            f"{unknown[:3].tolist()})"
        )
    if missing.all():
        raise FactVAEInputError(
            f"None of the model's {len(model)} {kind}s is in the new {what} (for example "
            f"{model[:3].tolist()} vs {names[:3].tolist()}); {kind}s are matched by name, so "
            "name them as in the data the model was trained on."
        )
    if problems:
        warnings.warn(
            f"New {what} cells: {'; '.join(problems)}. {kind.capitalize()}s are matched by "
            "name; the more that match, the closer the cells land to where the model would "
            "have put them.",
            UserWarning,
            stacklevel=4,
        )
    return positions


def align_columns(block: sp.csr_matrix, positions: np.ndarray) -> sp.csr_matrix:
    """``block``'s columns in the model's order: column ``j`` is ``block[:, positions[j]]``,
    or zeros where ``positions[j]`` is -1 (a row-wise transform for :meth:`RowSource.map`)."""
    present = np.nonzero(positions >= 0)[0]
    chosen = sp.csr_matrix(block[:, positions[present]])
    aligned = sp.csr_matrix(
        (chosen.data, present[chosen.indices], chosen.indptr),
        shape=(block.shape[0], len(positions)),
    )
    aligned.sort_indices()
    return aligned
