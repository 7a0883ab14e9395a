"""Reading multiome inputs from disk: 10x Cell Ranger ARC outputs, h5ad pairs and G2P priors.

Everything is read sparse and returned as CSR float32 raw counts (cells x features), which is
what :class:`factvae.FactVAE` expects, so a whole 10x run never becomes a dense matrix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from factvae.data.genomics import (
    check_intervals,
    format_peak_names,
    normalise_peak_names,
    parse_peak_names,
)
from factvae.errors import FactVAEInputError

__all__ = ["read_10x_multiome", "read_g2p", "read_pair"]

GENE_TYPE, PEAK_TYPE = "Gene Expression", "Peaks"
_FEATURE_COLUMNS = ["id", "name", "feature_type", "chrom", "start", "end"]


def read_10x_multiome(path: str | Path) -> tuple[anndata.AnnData, anndata.AnnData]:
    """(rna, atac) AnnData from a Cell Ranger ARC ``filtered_feature_bc_matrix`` folder or ``.h5``.

    RNA features are named by gene symbol (made unique with ``-1``, ``-2``...; the Ensembl ids
    stay in ``var['gene_ids']``) because gene annotations are keyed by symbol. Peaks are named
    ``chrom-start-end`` with ``var`` columns chrom, start and end.
    """
    path = Path(path)
    if not path.exists():
        raise FactVAEInputError(f"10x input {str(path)!r} does not exist.")
    if (path / "filtered_feature_bc_matrix").is_dir():  # the run's outs/ folder was given
        path = path / "filtered_feature_bc_matrix"
    if path.is_dir():
        counts, features, barcodes = _read_mtx_folder(path)
    elif path.suffix == ".h5":
        counts, features, barcodes = _read_h5(path)
    else:
        raise FactVAEInputError(
            f"{path} is neither a folder nor an .h5 file; give the Cell Ranger ARC "
            "'filtered_feature_bc_matrix' folder (or filtered_feature_bc_matrix.h5)."
        )
    if pd.Index(barcodes).has_duplicates:
        raise FactVAEInputError(f"{path} lists some cell barcodes more than once.")
    kinds = features["feature_type"].to_numpy()
    is_gene, is_peak = kinds == GENE_TYPE, kinds == PEAK_TYPE
    found = sorted(set(kinds))
    if not is_peak.any():
        raise FactVAEInputError(
            f"{path} has no {PEAK_TYPE!r} features (feature types found: {found}); FactVAE needs "
            "a multiome (Cell Ranger ARC) output with both gene expression and peaks."
        )
    if not is_gene.any():
        raise FactVAEInputError(
            f"{path} has no {GENE_TYPE!r} features (feature types found: {found}); FactVAE needs "
            "a multiome (Cell Ranger ARC) output with both gene expression and peaks."
        )
    obs = pd.DataFrame(index=pd.Index(barcodes, name=None))
    genes = features[is_gene]
    rna_var = pd.DataFrame(
        {"gene_ids": genes["id"].to_numpy()},
        index=pd.Index(make_unique(genes["name"].to_numpy()), name=None),
    )
    peaks = _peak_coordinates(features[is_peak])
    rna = anndata.AnnData(X=counts[:, np.nonzero(is_gene)[0]], obs=obs.copy(), var=rna_var)
    atac = anndata.AnnData(X=counts[:, np.nonzero(is_peak)[0]], obs=obs.copy(), var=peaks)
    return rna, atac


def read_pair(
    rna_path: str | Path, atac_path: str | Path, backed: bool = False
) -> tuple[anndata.AnnData, anndata.AnnData]:
    """The RNA and ATAC AnnData from two ``.h5ad`` files (cells are matched later, by name).

    With ``backed`` the files are opened read-only and their counts stay on disk, so
    :class:`factvae.FactVAE` reads them a block of cells at a time.
    """
    return (
        _read_h5ad(Path(rna_path), "RNA", backed),
        _read_h5ad(Path(atac_path), "ATAC", backed),
    )


def read_g2p(path: str | Path, genes: pd.Index, peaks: pd.Index) -> sp.csr_matrix | pd.DataFrame:
    """A gene-to-peak prior checked against the input's ``genes`` and ``peaks`` (input order).

    ``.npz``: a scipy sparse genes x peaks matrix; anything else: a TSV with columns gene and
    peak. Pairs naming features the input lacks are dropped with a warning, since a prior
    built for a larger feature set is common; none left is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FactVAEInputError(f"G2P file {str(path)!r} does not exist.")
    if path.suffix == ".npz":
        try:
            matrix = sp.csr_matrix(sp.load_npz(path), dtype=np.float32)
        except (OSError, ValueError, KeyError) as err:
            raise FactVAEInputError(
                f"{path} is not a scipy sparse matrix saved with scipy.sparse.save_npz ({err})."
            ) from err
        if matrix.shape != (len(genes), len(peaks)):
            raise FactVAEInputError(
                f"The G2P matrix in {path} is {matrix.shape[0]} x {matrix.shape[1]} but the input "
                f"has {len(genes)} genes and {len(peaks)} peaks; it must be genes x peaks in the "
                "input's feature order."
            )
        return matrix
    table = pd.read_csv(path, sep="\t", dtype=str)
    if not {"gene", "peak"} <= set(table.columns):
        raise FactVAEInputError(
            f"{path} needs a header with columns 'gene' and 'peak' (tab-separated, one linked "
            f"pair per row); its columns are {list(table.columns)}."
        )
    table = table[["gene", "peak"]].dropna()
    known = table["gene"].isin(genes) & table["peak"].isin(peaks)
    if not known.any():
        raise FactVAEInputError(
            f"No (gene, peak) pair in {path} names an input gene and peak (for example "
            f"{tuple(table.iloc[0]) if len(table) else 'none'} vs genes like {list(genes[:2])} "
            f"and peaks like {list(peaks[:2])})."
        )
    if not known.all():
        warnings.warn(
            f"{int((~known).sum())} of {len(table)} pairs in {path} name a gene or peak that is "
            "not in the input; they are ignored.",
            UserWarning,
            stacklevel=2,
        )
    return table[known].reset_index(drop=True)


def make_unique(names: np.ndarray) -> list[str]:
    """Names with repeats suffixed ``-1``, ``-2``..., skipping suffixes already taken.

    10x gene symbols repeat (e.g. two Ensembl ids share one symbol), and FactVAE needs unique
    feature names.
    """
    taken = set(map(str, names))
    seen: set[str] = set()
    unique = []
    for name in map(str, names):
        if name not in seen:
            seen.add(name)
            unique.append(name)
            continue
        k = 1
        while f"{name}-{k}" in taken:
            k += 1
        new = f"{name}-{k}"
        taken.add(new)
        unique.append(new)
    return unique


def _read_h5ad(path: Path, what: str, backed: bool) -> anndata.AnnData:
    if not path.is_file():
        raise FactVAEInputError(f"{what} file {str(path)!r} does not exist.")
    try:
        return anndata.read_h5ad(path, backed="r" if backed else None)
    except (OSError, KeyError, ValueError) as err:
        raise FactVAEInputError(f"Could not read {what} file {path} as .h5ad: {err}") from err


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FactVAEInputError(
        f"{folder} has no {stem}(.gz); a Cell Ranger ARC 'filtered_feature_bc_matrix' folder "
        "holds matrix.mtx.gz, features.tsv.gz and barcodes.tsv.gz."
    )


def _read_mtx_folder(folder: Path) -> tuple[sp.csr_matrix, pd.DataFrame, np.ndarray]:
    matrix_path = _find(folder, "matrix.mtx")
    features_path = _find(folder, "features.tsv")
    barcodes_path = _find(folder, "barcodes.tsv")
    try:
        matrix = scipy.io.mmread(matrix_path)
    except (OSError, ValueError) as err:
        raise FactVAEInputError(
            f"Could not read {matrix_path} as a Matrix Market file: {err}"
        ) from err
    features = pd.read_csv(features_path, sep="\t", header=None, dtype=str, keep_default_na=False)
    if features.shape[1] < 3:
        raise FactVAEInputError(
            f"{features_path} has {features.shape[1]} columns; Cell Ranger ARC features need at "
            "least id, name and feature type."
        )
    features = features.iloc[:, :6]
    features.columns = _FEATURE_COLUMNS[: features.shape[1]]
    barcodes = pd.read_csv(barcodes_path, sep="\t", header=None, dtype=str).iloc[:, 0].to_numpy()
    if matrix.shape != (len(features), len(barcodes)):
        raise FactVAEInputError(
            f"{matrix_path} is {matrix.shape[0]} x {matrix.shape[1]} but there are "
            f"{len(features)} features and {len(barcodes)} barcodes; the files do not belong "
            "together."
        )
    return sp.csr_matrix(matrix.T, dtype=np.float32), features, barcodes


def _read_h5(path: Path) -> tuple[sp.csr_matrix, pd.DataFrame, np.ndarray]:
    """The 10x HDF5 layout: a features x barcodes CSC matrix, i.e. a cells x features CSR."""
    import h5py

    def text(values: np.ndarray) -> np.ndarray:
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])

    try:
        with h5py.File(path, "r") as handle:
            group = handle["matrix"]
            n_features, n_cells = (int(n) for n in group["shape"][:])
            counts = sp.csr_matrix(
                (group["data"][:], group["indices"][:], group["indptr"][:]),
                shape=(n_cells, n_features),
                dtype=np.float32,
            )
            feature_group = group["features"]
            features = pd.DataFrame(
                {
                    "id": text(feature_group["id"][:]),
                    "name": text(feature_group["name"][:]),
                    "feature_type": text(feature_group["feature_type"][:]),
                }
            )
            barcodes = text(group["barcodes"][:])
    except (OSError, KeyError) as err:
        raise FactVAEInputError(f"{path} is not a 10x feature-barcode .h5 file ({err}).") from err
    return counts, features, barcodes


def _peak_coordinates(peaks: pd.DataFrame) -> pd.DataFrame:
    """chrom/start/end from the coordinate columns when filled, else read from the peak ids.

    Peaks keep their ids as names, with the separators Seurat and Signac use
    (``chr1:1000-1500`` becomes ``chr1-1000-1500``, numbers as written); ids are read as
    :func:`~factvae.data.genomics.parse_peak_names` reads any peak name. Only peaks whose
    ids are not coordinates are named from their coordinate columns.
    """
    coordinates = None
    if {"chrom", "start", "end"} <= set(peaks.columns):
        start = pd.to_numeric(peaks["start"], errors="coerce")
        end = pd.to_numeric(peaks["end"], errors="coerce")
        if not (start.isna().any() or end.isna().any() or (peaks["chrom"] == "").any()):
            coordinates = pd.DataFrame(
                {
                    "chrom": peaks["chrom"].to_numpy(),
                    "start": start.to_numpy().astype(np.int64),
                    "end": end.to_numpy().astype(np.int64),
                }
            )
    if coordinates is None:
        coordinates = parse_peak_names(peaks["id"].to_numpy()).reset_index(drop=True)
    try:
        names = normalise_peak_names(peaks["id"].to_numpy())
    except FactVAEInputError:
        names = format_peak_names(coordinates["chrom"], coordinates["start"], coordinates["end"])
    coordinates.index = names
    return check_intervals(coordinates, "peak")
