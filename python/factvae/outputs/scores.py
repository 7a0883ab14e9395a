"""How well an embedding separates known cell types and mixes batches: the scores the demo,
the tests and the benchmarks all report, defined once."""

from __future__ import annotations

from typing import Any

import numpy as np


def clustering_scores(embedding: np.ndarray, labels: Any, seed: int = 0) -> dict[str, float]:
    """ARI and NMI of k-means (k = the number of distinct labels, 10 starts, seeded) on
    ``embedding`` (cells x dimensions) against ``labels``; both are 1 for a perfect match."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    truth = np.asarray(labels).astype(str)
    clusters = KMeans(len(np.unique(truth)), n_init=10, random_state=seed).fit_predict(embedding)
    return {
        "ari": float(adjusted_rand_score(truth, clusters)),
        "nmi": float(normalized_mutual_info_score(truth, clusters)),
    }


KMEANS_DRAWS = 5  # k-means seeds whose median ARI an embedding is scored by
KNN_NEIGHBOURS, KNN_FOLDS = 15, 5


def embedding_scores(embedding: np.ndarray, labels: Any) -> dict[str, Any]:
    """The benchmarks' two scores of one embedding: ``ari``, the median ARI of k-means over
    ``KMEANS_DRAWS`` seeds (one draw can be lucky; ``ari_draws`` keeps them all), and ``knn``,
    the 15-nearest-neighbour label accuracy by 5-fold cross-validation (how well the
    neighbourhoods a UMAP or a label transfer reads keep the types apart)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    truth = np.asarray(labels).astype(str)
    draws = [clustering_scores(embedding, truth, seed)["ari"] for seed in range(KMEANS_DRAWS)]
    folds = StratifiedKFold(KNN_FOLDS, shuffle=True, random_state=0)
    knn = cross_val_score(KNeighborsClassifier(KNN_NEIGHBOURS), embedding, truth, cv=folds)
    return {"ari": float(np.median(draws)), "ari_draws": draws, "knn": float(np.mean(knn))}


def batch_mixing_scores(
    embedding: np.ndarray, batches: Any, labels: Any, perplexity: float = 30.0
) -> dict[str, float]:
    """How well batches mix within cell types: batch ASW and iLISI, both as scIB defines them.

    ``batch_asw``: per cell type, 1 - |silhouette| of the cells by batch, averaged over the
    type's cells, then over types (1 = batches indistinguishable, 0 = separated).
    ``ilisi``: per cell, the inverse Simpson index of the batches among its 3 x ``perplexity``
    nearest neighbours, weighted by a Gaussian kernel whose width gives that perplexity;
    the median over cells (1 = one batch around each cell, up to the number of batches).
    ``ilisi_scaled`` = (median - 1) / (batches - 1), scIB's 0-1 form.
    """
    from sklearn.metrics import silhouette_samples

    batch = np.asarray(batches).astype(str)
    truth = np.asarray(labels).astype(str)
    if not len(batch) == len(truth) == len(embedding):
        raise ValueError("embedding, batches and labels must have one entry per cell")
    per_type = []
    for label in np.unique(truth):
        members = truth == label
        if len(np.unique(batch[members])) < 2 or members.sum() < 3:
            continue  # a type seen in one batch says nothing about mixing
        silhouette = silhouette_samples(embedding[members], batch[members])
        per_type.append(float(np.mean(1.0 - np.abs(silhouette))))
    levels, codes = np.unique(batch, return_inverse=True)
    lisi = _inverse_simpson(embedding, codes, len(levels), perplexity)
    median = float(np.median(lisi))
    return {
        "batch_asw": float(np.mean(per_type)) if per_type else float("nan"),
        "ilisi": median,
        "ilisi_scaled": (median - 1.0) / (len(levels) - 1.0) if len(levels) > 1 else float("nan"),
    }


def _inverse_simpson(
    embedding: np.ndarray, codes: np.ndarray, n_levels: int, perplexity: float
) -> np.ndarray:
    """Each cell's LISI: 1 / sum_b p_b^2 over its neighbours' batches, the neighbours weighted
    by exp(-beta d^2) with beta found by bisection so the weights' perplexity is ``perplexity``
    (the kernel of t-SNE and of the LISI papers)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(int(3 * perplexity), len(embedding) - 1)
    distances, neighbours = NearestNeighbors(n_neighbors=k).fit(embedding).kneighbors()
    # each cell's k neighbours (itself left out), the nearest at 0 so its weight is 1: no underflow
    shifted = distances**2 - distances[:, :1] ** 2
    target = np.log(perplexity)
    beta = np.ones(len(embedding))
    low = np.zeros(len(embedding))
    high = np.full(len(embedding), np.inf)
    for _ in range(50):
        weights = np.exp(-shifted * beta[:, None])
        probs = weights / weights.sum(axis=1)[:, None]
        entropy = -(probs * np.log(np.maximum(probs, 1e-300))).sum(axis=1)
        too_wide = entropy > target  # the kernel reaches too far: raise beta
        low = np.where(too_wide, beta, low)
        high = np.where(too_wide, high, beta)
        beta = np.where(np.isinf(high), beta * 2.0, (low + high) / 2.0)
    batch_probs = np.zeros((len(embedding), n_levels))
    rows = np.repeat(np.arange(len(embedding)), k)
    np.add.at(batch_probs, (rows, codes[neighbours].ravel()), probs.ravel())
    return 1.0 / (batch_probs**2).sum(axis=1)
