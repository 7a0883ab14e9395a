"""Does co-variation measured within the cell lines carry the CRISPRi pairs better than across
them? A CRISPRi screen perturbs within K562, while snare_hcellline's co-variation is mostly the
difference between its 4 lines, so a test inside a line might find pairs that the test across
lines (LinkPeaks' test, our ``pvalue``) does not. Raw counts, no model: each Gasperini2019 pair's
Pearson correlation of log-normalised expression with binarised accessibility, z-scored against
the same gene with every peak on other chromosomes (exact moments, as ``pvalue``), one-sided
normal p-value, over three sets of cells: all; all with each line centred by its true label (an
upper bound for any clustering); the K562 cells alone. Writes
benchmarks/results/links_within_lines.{json,md}.

    .venv/bin/python benchmarks/links_within_lines.py   # ~1 min
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.stats
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from factvae.outputs.gene_loadings import log_normalised  # noqa: E402
from snare_data import load_snare  # noqa: E402

PAIRS = HERE / "crispri" / "k562_pairs_snare.tsv"
DEVELOPMENT = "Gasperini2019"
LINE = "K562"  # the screens' cell line


def within_group_scale(values: sp.csc_matrix, groups: np.ndarray) -> np.ndarray:
    """Each column's sd around its group means (0 where constant), from sparse sums."""
    indicator = sp.csr_matrix((np.ones(len(groups)), (groups, np.arange(len(groups)))))
    sums = np.asarray((indicator @ values).todense())
    sizes = np.asarray(indicator.sum(axis=1)).ravel()
    squares = np.asarray(values.multiply(values).sum(axis=0)).ravel()
    between = (sums**2 / sizes[:, None]).sum(axis=0)
    return np.sqrt(np.maximum(squares - between, 0) / len(groups))


def off_chromosome_z(
    genes: np.ndarray, gene_chrom: np.ndarray, peaks: sp.csc_matrix, peak_chrom: np.ndarray
) -> np.ndarray:
    """Genes x peaks z-scores of each gene's correlation with every peak (``genes``: cells x
    genes, centred and scaled so that a dot product with a column of ``peaks`` is the
    correlation) against that gene's peaks on other chromosomes: the pool's mean column and
    its covariance (cells x cells) give a dot product's exact mean and variance, no draw."""
    correlation = np.asarray(peaks.T @ genes).T  # dense only over the pairs' genes
    total = np.asarray(peaks.sum(axis=1)).ravel()
    outer = (peaks @ peaks.T).toarray()
    z = np.zeros_like(correlation)
    for chrom in np.unique(gene_chrom):
        own = peaks[:, peak_chrom == chrom]
        n = peaks.shape[1] - own.shape[1]
        mean = (total - np.asarray(own.sum(axis=1)).ravel()) / n
        cov = (outer - (own @ own.T).toarray() - n * np.outer(mean, mean)) / (n - 1)
        rows = np.flatnonzero(gene_chrom == chrom)
        vectors = genes[:, rows].T
        sd = np.sqrt(np.maximum(((vectors @ cov) * vectors).sum(axis=1), 1e-300))
        z[rows] = (correlation[rows] - (vectors @ mean)[:, None]) / sd[:, None]
    return z


def pair_tests(rna, atac, pairs: pd.DataFrame, cells: np.ndarray, groups: np.ndarray) -> dict:
    """The pairs' correlation z-scores and p-values over ``cells``, centred within ``groups``."""
    gene_names = pd.Index(pairs["gene"].unique())
    totals = np.asarray(rna.X[cells].sum(axis=1)).ravel()
    expression = log_normalised(sp.csr_matrix(rna.X[cells]), totals)
    expression = expression[:, rna.var_names.get_indexer(gene_names)].toarray()
    for group in np.unique(groups):
        expression[groups == group] -= expression[groups == group].mean(axis=0)
    gene_sd = np.sqrt((expression**2).mean(axis=0))
    genes = expression / np.where(gene_sd > 0, gene_sd, 1.0)
    access = sp.csc_matrix(atac.X[cells] > 0, dtype=np.float64)
    peak_sd = within_group_scale(access, groups)
    varies = peak_sd > 0
    peaks = access[:, varies] @ sp.diags(1 / (len(cells) * peak_sd[varies]))
    peak_chrom = atac.var["chrom"].to_numpy()[varies]
    gene_chrom = pairs.groupby("gene")["chrom"].first().reindex(gene_names).to_numpy()
    z = off_chromosome_z(genes, gene_chrom, sp.csc_matrix(peaks), peak_chrom)
    column = pd.Index(atac.var_names[varies]).get_indexer(pairs["peak"])
    row = gene_names.get_indexer(pairs["gene"])
    pair_z = np.where(column >= 0, z[row, np.maximum(column, 0)], 0.0)
    return {"z": pair_z, "pvalue": scipy.stats.norm.sf(pair_z)}


def summary(labels: np.ndarray, tested: dict) -> dict:
    """AUROC of the z-score; pairs below p 0.05 and 0.001, the positives among them and the
    enrichment over the base rate; the smallest p-value and whether its pair is positive."""
    base = labels.mean()
    out = {"auroc": float(roc_auc_score(labels, tested["z"]))}
    for cut in (0.05, 0.001):
        hit = tested["pvalue"] < cut
        positive = int(labels[hit].sum())
        ratio = positive / hit.sum() / base if hit.any() else 0.0
        out[f"p<{cut}"] = {"pairs": int(hit.sum()), "positive": positive, "enrichment": ratio}
    smallest = int(np.argmin(tested["pvalue"]))
    out["smallest_p"] = float(tested["pvalue"][smallest])
    out["smallest_p_positive"] = bool(labels[smallest])
    return out


def markdown(results: dict, n_pairs: int, n_positive: int) -> str:
    lines = [
        f"Gasperini2019 pairs: {n_pairs} ({n_positive} positive); one-sided p against the same "
        "gene's peaks on other chromosomes.",
        "",
        "| cells | AUROC | p < 0.05: pairs (positive) | enrichment | p < 0.001: pairs (positive) "
        "| smallest p |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results.items():
        loose, strict = row["p<0.05"], row["p<0.001"]
        sign = "positive" if row["smallest_p_positive"] else "negative"
        lines.append(
            f"| {name} | {row['auroc']:.3f} | {loose['pairs']} ({loose['positive']}) | "
            f"{loose['enrichment']:.2f}x | {strict['pairs']} ({strict['positive']}) | "
            f"{row['smallest_p']:.1e} ({sign}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    rna, atac, _ = load_snare()
    pairs = pd.read_csv(PAIRS, sep="\t")
    pairs = pairs[(pairs["Dataset"] == DEVELOPMENT) & pairs["gene"].isin(rna.var_names)]
    labels = pairs["Regulated"].to_numpy(bool)
    lines = pd.factorize(rna.obs["cell_type"])[0]
    everyone = np.arange(rna.n_obs)
    k562 = np.flatnonzero(rna.obs["cell_type"].to_numpy() == LINE)
    sets = {
        "all cells": (everyone, np.zeros(rna.n_obs, dtype=int)),
        "within the lines (each centred)": (everyone, lines),
        f"{LINE} cells alone ({len(k562)})": (k562, np.zeros(len(k562), dtype=int)),
    }
    results = {
        name: summary(labels, pair_tests(rna, atac, pairs, cells, groups))
        for name, (cells, groups) in sets.items()
    }
    out = HERE / "results" / "links_within_lines"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results, len(pairs), int(labels.sum())))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
