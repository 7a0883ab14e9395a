"""MuData in and out: scverse keeps multiome data as one MuData (``.h5mu``); the model reads its
RNA and ATAC modalities and writes its results back where scverse users look for them.

Written by :func:`add_results` (the one function here that changes the MuData it is given):

* ``mdata.obsm["X_factvae"]``, ``["X_factvae_rna"]``, ``["X_factvae_atac"]``: the joint, RNA and
  ATAC embeddings (cells the model did not see are NaN);
* ``mdata.uns["factvae_links"]``: the link table of ``model.infer_links()``;
* ``mdata.mod[atac].layers["factvae_augmented"]``: the augmented ATAC, sparse, in the modality's
  own cells x peaks order (peaks the model dropped, having no counts, are zero).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from factvae.errors import FactVAEInputError

MODALITIES = ("rna", "atac")  # scverse's (muon's) usual names
EMBEDDING_KEYS = {"joint": "X_factvae", "rna": "X_factvae_rna", "atac": "X_factvae_atac"}
LINKS_KEY, AUGMENTED_LAYER = "factvae_links", "factvae_augmented"


class TrainedModel(Protocol):
    """What :func:`add_results` reads of a trained ``FactVAE``, named here so that this module,
    which ``factvae.api`` imports, need not import it back."""

    obs_names: pd.Index
    peaks: pd.Index

    def get_latent(self, kind: str = ...) -> np.ndarray: ...


def is_mudata(value: Any) -> bool:
    """Whether ``value`` is a MuData, without importing mudata for callers that never use it."""
    return type(value).__name__ == "MuData" and hasattr(value, "mod")


def modalities(mdata: Any, names: tuple[str, str] = MODALITIES) -> tuple[Any, Any]:
    """The (RNA, ATAC) AnnData of ``mdata``, named by ``names``; a clear error when one is
    missing. The cells of the two are matched later, by name, as for any AnnData pair."""
    if not is_mudata(mdata):
        raise FactVAEInputError(
            f"expected a MuData with RNA and ATAC modalities, not {type(mdata).__name__}; pass "
            "an AnnData pair as FactVAE(rna, atac) instead."
        )
    if len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise FactVAEInputError(f"modalities must be two names (RNA, ATAC), not {names!r}.")
    return _modality(mdata, names[0]), _modality(mdata, names[1])


def _modality(mdata: Any, name: str) -> Any:
    if name not in mdata.mod:
        raise FactVAEInputError(
            f"the MuData has no modality {name!r} (it has {sorted(mdata.mod)}); name its RNA "
            "and ATAC modalities with modalities=(RNA, ATAC) in Python or --rna-modality/"
            "--atac-modality on the command line."
        )
    return mdata.mod[name]


def add_results(
    mdata: Any,
    model: TrainedModel,
    links: pd.DataFrame | None = None,
    augmented: sp.spmatrix | None = None,
    atac_modality: str = MODALITIES[1],
) -> None:
    """Write ``model``'s embeddings, and ``links`` and ``augmented`` (cells x ``model.peaks``
    in ``model.obs_names`` order, as ``augment_atac`` returns it) when given, into ``mdata``
    in place, under the keys in this module's docstring."""
    if not is_mudata(mdata):
        raise FactVAEInputError(f"add_results needs a MuData, not {type(mdata).__name__}.")
    cells = pd.Index(mdata.obs_names.astype(str))
    rows = cells.get_indexer(model.obs_names)
    if (rows < 0).any():
        raise FactVAEInputError(
            f"{int((rows < 0).sum())} of the model's cells are not in this MuData (for example "
            f"{model.obs_names[rows < 0][:2].tolist()}); write the results into the MuData the "
            "model was fitted on."
        )
    for kind, key in EMBEDDING_KEYS.items():
        latent = model.get_latent(kind)
        full = np.full((len(cells), latent.shape[1]), np.nan, dtype=np.float32)
        full[rows] = latent
        mdata.obsm[key] = full
    if links is not None:
        mdata.uns[LINKS_KEY] = links.reset_index(drop=True)
    if augmented is not None:
        atac = _modality(mdata, atac_modality)
        atac.layers[AUGMENTED_LAYER] = _in_modality_order(sp.csr_matrix(augmented), model, atac)


def _in_modality_order(values: sp.csr_matrix, model: TrainedModel, atac: Any) -> sp.csr_matrix:
    """Cells x model peaks -> the modality's cells x peaks, by name, without densifying."""
    cell_rows = pd.Index(model.obs_names).get_indexer(pd.Index(atac.obs_names.astype(str)))
    peak_columns = pd.Index(atac.var_names.astype(str)).get_indexer(model.peaks)
    if (peak_columns < 0).any():
        raise FactVAEInputError("the model's peaks are not all in this ATAC modality.")
    present = cell_rows >= 0
    picked = values[np.where(present, cell_rows, 0)]
    picked = sp.diags(present.astype(values.dtype)) @ picked  # cells the model lacks: empty
    coo = picked.tocoo()
    out = sp.csr_matrix(
        (coo.data, (coo.row, peak_columns[coo.col])), shape=(atac.n_obs, atac.n_vars)
    )
    out.eliminate_zeros()
    return out


def read_h5mu(path: Any) -> Any:
    """The MuData stored at ``path`` (an ``.h5mu`` file), read into memory."""
    import mudata

    return mudata.read_h5mu(path)
