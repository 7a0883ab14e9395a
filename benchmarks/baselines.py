"""The simple pipelines a user already has, computed and scored the same way in every
embedding benchmark: RNA PCA at the data's median library and at Seurat's 1e4, ATAC LSI as
Signac runs it, and PCA + LSI. An embedding of factvae's is judged against these."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

N_PCS = 50  # PCs of the RNA baselines, and LSI components 2-51 of the ATAC ones
N_HVG = 2000
TOP_FEATURES_QUANTILE = 0.05  # Signac's FindTopFeatures(min.cutoff = "q5")


def rna_pca(counts: Any, target_sum: float | None) -> np.ndarray:
    """50 PCs of the 2,000 most variable genes (seurat_v3), log-normalised to ``target_sum``
    (None: the median library, scanpy's default), scaled and clipped at 10 sd."""
    from factvae.data.counts import InMemoryRows
    from factvae.data.preprocessing import SCALE_CLIP, highly_variable_genes
    from factvae.data.preprocessing import rna_pca as pca

    matrix = sp.csr_matrix(counts)
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    matrix = matrix[:, np.asarray((matrix > 0).sum(axis=0)).ravel() >= 3]  # as the model's
    hvg = highly_variable_genes(InMemoryRows(matrix), N_HVG)
    scores, _ = pca(matrix[:, hvg], totals, N_PCS, 0, clip=SCALE_CLIP, target_sum=target_sum,
                    new_cells=False)  # fmt: skip
    return scores


def signac_lsi(counts: Any) -> np.ndarray:
    """Signac's pipeline: TF-IDF, the peaks above the 5% quantile of total counts, SVD; the
    components 2-51 (the first follows sequencing depth). A dense matrix (the augmented ATAC)
    is transformed in place, so it is never copied."""
    from factvae.data.preprocessing import atac_lsi

    if sp.issparse(counts):
        matrix = sp.csr_matrix(counts)
        totals = np.asarray(matrix.sum(axis=0)).ravel()
        top = totals > np.quantile(totals, TOP_FEATURES_QUANTILE)
        lsi, _ = atac_lsi(matrix[:, top], N_PCS + 1, 0, new_cells=False)
        return lsi[:, 1:]
    return _dense_lsi(np.asarray(counts, dtype=np.float32))


class _DenseRows:
    """A dense matrix with the two products ``randomized_svd`` reads."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix, self.shape = matrix, matrix.shape

    def dot(self, block: np.ndarray) -> np.ndarray:
        return self.matrix @ block

    def tdot(self, block: np.ndarray) -> np.ndarray:
        return self.matrix.T @ block


def _dense_lsi(matrix: np.ndarray) -> np.ndarray:
    """``signac_lsi`` of a dense matrix, which it overwrites with its TF-IDF: the transform of
    ``factvae.data.preprocessing.tfidf_log`` and the same randomized SVD as ``atac_lsi``."""
    from factvae.data.preprocessing import randomized_svd, standardise_rows

    totals = matrix.sum(axis=0, dtype=np.float64)
    top = np.flatnonzero(totals > np.quantile(totals, TOP_FEATURES_QUANTILE))
    if len(top) < matrix.shape[1]:
        matrix = matrix[:, top]
        totals = totals[top]
    matrix *= (matrix.shape[0] / totals).astype(np.float32)  # IDF
    matrix *= (1e4 / matrix.sum(axis=1, dtype=np.float64))[:, None].astype(np.float32)
    np.log1p(matrix, out=matrix)
    u, _, _ = randomized_svd(_DenseRows(matrix), N_PCS + 1, 0, n_iter=15)  # type: ignore[arg-type]
    return standardise_rows(u)[:, 1:]


def baseline_embeddings(rna_counts: Any, atac_counts: Any) -> dict[str, np.ndarray]:
    """Each simple pipeline's embedding of the same cells, by name."""
    from factvae.data.preprocessing import standardise_rows

    pca_median = rna_pca(rna_counts, None)
    lsi = signac_lsi(atac_counts)
    return {
        "RNA PCA, median library": pca_median,
        "RNA PCA, 1e4": rna_pca(rna_counts, 1e4),
        "ATAC LSI": lsi,
        # each cell's PCA vector standardised as the LSI's is, so neither modality dominates
        "PCA + LSI": np.hstack([standardise_rows(pca_median), lsi]),
    }


def scored(embeddings: dict[str, np.ndarray], labels: Any) -> dict[str, dict[str, Any]]:
    """``embedding_scores`` of each embedding."""
    from factvae.outputs.scores import embedding_scores

    return {name: embedding_scores(embedding, labels) for name, embedding in embeddings.items()}


def model_embeddings(
    model: Any, raw_atac: Any, joint_shares: tuple[float, ...] = ()
) -> dict[str, np.ndarray]:
    """factvae's embeddings of a trained model, and Signac's LSI of its augmented ATAC beside
    the same LSI of the raw counts (the augmented matrix is dense: fine at benchmark size).
    Each half also as its posterior means, which the halves were until 2026-12-05, and the
    augmented ATAC also decoded from the ATAC half alone, as it was until 2026-12-05.
    ``joint_shares``: the joint embedding again at each other ATAC share, from the same fit
    (the share only combines the trained halves), so a candidate share is compared on one fit."""
    embeddings = {"factvae joint": model.get_latent("joint")}
    embeddings.update(joint_at_shares(model, joint_shares))
    return {
        **embeddings,
        "factvae RNA half": model.get_latent("rna"),
        "factvae ATAC half": model.get_latent("atac"),
        "factvae RNA half, posterior means": model.get_latent("rna", posterior_means=True),
        "factvae ATAC half, posterior means": model.get_latent("atac", posterior_means=True),
        "LSI of the augmented ATAC": signac_lsi(model.augment_atac()),
        "LSI of the augmented ATAC, ATAC half alone": signac_lsi(model.augment_atac(latent="atac")),
        "LSI of the raw ATAC": signac_lsi(raw_atac),
    }


def add_joint_shares_option(parser: Any) -> None:
    """``--joint-shares``: the option that passes :func:`model_embeddings` its shares."""
    parser.add_argument(
        "--joint-shares", type=float, nargs="*", default=[],
        help="also score each fit's joint embedding at these ATAC shares (same fit)",
    )  # fmt: skip


def joint_at_shares(model: Any, shares: tuple[float, ...]) -> dict[str, np.ndarray]:
    """The ``"average"`` joint embedding with the ATAC direction weighted by sqrt(share), as
    ``fit_joint_rule`` would set it; the model's own rule is put back."""
    fitted = model.joint_rule
    if shares and fitted.rule != "average":
        raise ValueError("--joint-shares re-weights the 'average' joint embedding only.")
    embeddings = {}
    try:
        for share in shares:
            model.joint_rule = fitted._replace(atac_scale=float(np.sqrt(share)))
            embeddings[f"factvae joint, ATAC share {share:g}"] = model.get_latent("joint")
    finally:
        model.joint_rule = fitted
    return embeddings


def embedding_table(runs: list[dict[str, dict[str, Any]]], base: dict[str, dict[str, Any]]) -> str:
    """Markdown: each factvae embedding's scores over the seeds (mean ± sd of the per-seed
    median k-means ARI, and of the 15-NN accuracy), then each baseline's, on the same cells."""

    def spread(values: list[float]) -> str:
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return f"{np.mean(values):.3f} ± {sd:.3f}"

    lines = [
        "| embedding | k-means ARI (median of 5 draws) | 15-NN accuracy (5-fold) |",
        "|---|---|---|",
    ]
    for name in runs[0] if runs else []:
        aris = [run[name]["ari"] for run in runs]
        knns = [run[name]["knn"] for run in runs]
        lines.append(f"| {name} | {spread(aris)} | {spread(knns)} |")
    for name, scores in base.items():
        lines.append(f"| {name} | {scores['ari']:.3f} | {scores['knn']:.3f} |")
    return "\n".join(lines)
