"""Loadings on the RNA latent for any gene, modelled or not, so links reach every gene a user
asks about: a ridge regression of the gene's log-normalised expression on the cells' RNA
latent, computed from sparse counts a block of cells at a time.

The decoder only has factors for the highly variable genes it was trained on; a gene outside
them still varies with the cells' states, and the latent is a summary of those states. Its
ridge loading is the direction in latent space its expression follows, which
:func:`factvae.outputs.links.correlation_scorer` turns into a correlation with each peak's
decoder contribution, like a modelled gene's factor column.

A modelled gene that few cells express has a decoder factor its counts pin down only weakly:
on the 100,000-peak planted-links benchmark such genes' factors pointed away from their own
expression, and their planted distal links ranked below chance. So a modelled gene links by
its factor and its ridge direction together, the factor counting more the more cells express
the gene (:func:`link_directions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from factvae.data.counts import RowSource
from factvae.data.validation import cell_names, raw_counts
from factvae.errors import FactVAEInputError
from factvae.settings import RUN_DEFAULTS

TARGET_SUM = 1e4  # counts per cell before log1p, as Seurat's NormalizeData
RIDGE = 0.1  # penalty as a share of the latent's mean variance: it only steadies the solve
# A modelled gene detected in this share of cells weighs its decoder factor and its ridge
# direction equally in its links; chosen on the planted-links and Gasperini CRISPRi benchmarks
FACTOR_HALF_DETECTION = 0.1


def log_normalised(block: sp.csr_matrix, totals: np.ndarray) -> sp.csr_matrix:
    """log1p of counts per 10,000 for a block of cells; zeros stay zeros (sparse)."""
    scaled = sp.csr_matrix(sp.diags(TARGET_SUM / np.maximum(totals, 1)) @ block, dtype=np.float64)
    scaled.data = np.log1p(scaled.data)
    return scaled


def ridge_loadings(
    counts: RowSource, cell_totals: np.ndarray, latent: np.ndarray, ridge: float = RIDGE
) -> np.ndarray:
    """Genes x latent ridge coefficients of each column of ``counts`` (cells x genes, raw) on
    ``latent`` (cells x d, same cells), intercept free.

    Only ``latent' x`` (d x genes) is accumulated over blocks of cells, so memory is that
    and one sparse block, never cells x genes dense.
    """
    centred = latent - latent.mean(axis=0)
    cross = np.zeros((latent.shape[1], counts.shape[1]))
    for positions, block in counts.chunks():
        cross += (log_normalised(block, cell_totals[positions]).T @ centred[positions]).T
    gram = centred.T @ centred
    # a latent without spread (every cell alike) gives zero loadings rather than a singular solve
    penalty = max(ridge * np.trace(gram) / max(len(gram), 1), np.finfo(np.float64).tiny)
    return np.linalg.solve(gram + penalty * np.eye(len(gram)), cross).T


@dataclass(frozen=True)
class GeneEvidence:
    """What the training counts say of each modelled gene, kept for its links: its ridge
    loadings on the RNA latent (genes x latent) and the share of cells that express it."""

    ridge: np.ndarray
    detection: np.ndarray


def gene_evidence(counts: RowSource, log_library: np.ndarray, latent: np.ndarray) -> GeneEvidence:
    """:class:`GeneEvidence` of the modelled genes' raw ``counts`` (cells x genes), the cells'
    log library sizes over all genes and their RNA ``latent`` (posterior means)."""
    detected = np.zeros(counts.shape[1])
    for _, block in counts.chunks():
        detected += np.asarray((block > 0).sum(axis=0)).ravel()
    ridge = ridge_loadings(counts, np.exp(log_library.astype(np.float64)), latent)
    return GeneEvidence(ridge, detected / max(counts.shape[0], 1))


def link_directions(
    factors: np.ndarray, evidence: GeneEvidence | None, latent: np.ndarray
) -> np.ndarray:
    """The modelled genes' loadings for their links: each gene's decoder factor and its ridge
    loading, each scaled to unit spread over the cells' ``latent``, weighted by
    ``detection / (detection + FACTOR_HALF_DETECTION)`` and ``1 -`` that. Without
    ``evidence`` (models saved before 2026-12-05) the factors themselves."""
    if evidence is None:
        return factors
    centred = latent - latent.mean(axis=0)
    covariance = centred.T @ centred / max(len(latent) - 1, 1)

    def unit_spread(loadings: np.ndarray) -> np.ndarray:
        spread = np.sqrt(np.einsum("ij,jk,ik->i", loadings, covariance, loadings))
        return loadings / np.where(spread > 0, spread, 1.0)[:, None]

    trust = evidence.detection / (evidence.detection + FACTOR_HALF_DETECTION)
    return trust[:, None] * unit_spread(factors) + (1 - trust[:, None]) * unit_spread(
        evidence.ridge
    )


def link_gene_loadings(
    rna: Any,
    genes: Any,
    cells: pd.Index,
    annotated: pd.Index,
    factors: pd.DataFrame,
    latent: np.ndarray,
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """The genes to link, their loadings on the RNA latent and the share of ``rna``'s cells
    that express each.

    ``rna``: raw counts (AnnData) holding the model's ``cells`` (their ``latent`` rows, in
    order). The genes are ``genes`` if given, else every gene of ``rna`` detected in at least
    ``link_min_cells`` of its cells (or modelled); only ``annotated`` ones are kept.
    Modelled genes (the rows of ``factors``: their :func:`link_directions`) keep those; the
    others get ridge loadings from their counts.
    """
    counts = raw_counts(rna, "rna")
    order = pd.Index(cell_names(rna, "rna")).get_indexer(cells)
    if (order < 0).any():
        raise FactVAEInputError(
            f"rna lacks {int((order < 0).sum())} of the model's cells (for example "
            f"{cells[order < 0][:3].tolist()}); pass the counts of the cells it was trained on."
        )
    names = pd.Index(rna.var_names.astype(str))
    if genes is None:
        detected = counts.detected >= RUN_DEFAULTS.link_min_cells
        chosen = names[names.isin(annotated) & (detected | names.isin(factors.index))]
    else:
        chosen = pd.Index(np.asarray(genes).astype(str).ravel())
        unknown = chosen[~chosen.isin(names)]
        if len(unknown):
            raise FactVAEInputError(
                f"genes {unknown[:3].tolist()} are not features of rna; name genes of rna."
            )
        chosen = chosen[chosen.isin(annotated)].unique()
    modelled = chosen.isin(factors.index)
    loadings = np.empty((len(chosen), factors.shape[1]))
    loadings[modelled] = factors.loc[chosen[modelled]].to_numpy(dtype=np.float64)
    if (~modelled).any():
        subset = counts.select_columns(names.get_indexer(chosen[~modelled])).permute_rows(order)
        loadings[~modelled] = ridge_loadings(subset.counts, subset.cell_totals, latent)
    detection = counts.detected[names.get_indexer(chosen)] / max(counts.counts.shape[0], 1)
    return chosen, loadings, detection
