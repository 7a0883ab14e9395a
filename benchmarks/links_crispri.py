"""Do the links find what CRISPRi finds? FactVAE's links on snare_hcellline (one default fit,
seed 0; links for every gene the counts detect) scored against K562 CRISPRi
enhancer-gene pairs (benchmarks/crispri/k562_pairs_snare.tsv). Writes
benchmarks/results/links_crispri.{json,md} (``--heldout``: links_crispri_heldout.*).

Development and tuning use the Gasperini2019 rows only; ``--heldout`` scores the other K562
rows, kept back for one final check. A pair missing from a link table ranks last; closest
first ranks every pair by its distance. Reported:
AUROC and AUPRC of the default score, distance alone (closest first), the nearest gene to the
peak first (the element's view of distance), a LinkPeaks-style
correlation (Pearson over cells of log-normalised expression with accessibility counts) and
the paper's cosine, with 95% bootstrap intervals over genes; AUROC within distance bins;
the default score over the genes detected in >= 3 cells (the model's ``min_cells``, the
default of stop 51) and over those in >= 1% of cells or modelled (the issue's coverage rule,
the default before), each by ``genes=`` (the pairs of rarer genes rank last);
every score's AUROC over the pairs the default table holds, overall and within the distance
bins (how it ranks, apart from coverage); coverage; links with q < 0.05 and with LinkPeaks' own
filter, nominal p < 0.05 (ours, and the LinkPeaks-style test of the same pairs against the
same other-chromosome background) and how enriched CRISPRi positives are among them.

    .venv/bin/python benchmarks/links_crispri.py                  # ~5 min (fit ~3)
    .venv/bin/python benchmarks/links_crispri.py --model /tmp/m   # reuse (or save) that fit
    .venv/bin/python benchmarks/links_crispri.py --heldout        # the held-out rows, once
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.stats
from sklearn.metrics import average_precision_score, roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from factvae import FactVAE  # noqa: E402
from factvae.outputs.gene_loadings import log_normalised  # noqa: E402
from factvae.outputs.link_tests import (  # noqa: E402
    TRANS_ACCESSIBILITY_BINS,
    benjamini_hochberg,
    quantile_bins,
)
from factvae.outputs.links import candidate_pairs  # noqa: E402
from factvae.settings import MODEL_DEFAULTS  # noqa: E402
from snare_data import load_snare  # noqa: E402

PAIRS = HERE / "crispri" / "k562_pairs_snare.tsv"
DEVELOPMENT = "Gasperini2019"
DISTANCE_BINS = ((0, 10_000), (10_000, 30_000), (30_000, 150_001))
BOOTSTRAPS = 1_000
MIN_DETECTION = 0.01  # the coverage rule: positives whose gene is in >= 1% of cells


class PearsonScorer:
    """LinkPeaks' statistic for any (gene, peak) pairs: the Pearson correlation over cells of
    log-normalised expression with accessibility counts, one gene at a time, sparsely."""

    def __init__(self, expression: sp.csc_matrix, access: sp.csc_matrix) -> None:
        self.expression, self.access, self.n = expression, access, expression.shape[0]
        self.gene_mean, self.gene_sd = self._moments(expression)
        self.peak_mean, self.peak_sd = self._moments(access)

    def _moments(self, matrix: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(matrix.mean(axis=0)).ravel()
        square = np.asarray(matrix.multiply(matrix).mean(axis=0)).ravel()
        return mean, np.sqrt(np.maximum(square - mean**2, 0))

    def __call__(self, genes: np.ndarray, peaks: np.ndarray) -> np.ndarray:
        out = np.zeros(len(genes))
        order = np.argsort(genes, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(genes[order]) != 0])
        for rows in np.split(order, starts[1:]):
            gene, cols = genes[rows[0]], peaks[rows]
            column = self.expression[:, gene].toarray().ravel()
            products = self.access[:, cols].T @ column / self.n
            cov = products - self.gene_mean[gene] * self.peak_mean[cols]
            scale = self.gene_sd[gene] * self.peak_sd[cols]
            out[rows] = np.where(scale > 0, cov / np.where(scale > 0, scale, 1), 0.0)
        return out


def sampled_trans_test(
    scorer, score, genes, peaks, gene_chrom, peak_chrom, accessibility, rng, n_samples=200
) -> np.ndarray:
    """LinkPeaks' test as Signac runs it: each pair against the same gene with ``n_samples``
    random peaks on other chromosomes in the peak's bin of ``accessibility`` (pairs of one
    gene in one bin share a draw); the one-sided normal p-value of its z-score."""
    bins = quantile_bins(accessibility, TRANS_ACCESSIBILITY_BINS)
    n_bins = int(bins.max()) + 1
    groups, inverse = np.unique(genes * n_bins + bins[peaks], return_inverse=True)
    group_gene, group_bin = groups // n_bins, groups % n_bins
    mean, sd = np.zeros(len(groups)), np.ones(len(groups))
    for b in np.unique(group_bin):
        for chrom in np.unique(gene_chrom[group_gene[group_bin == b]]):
            pool = np.nonzero((bins == b) & (peak_chrom != chrom))[0]
            if len(pool) < 2:
                continue
            members = np.nonzero((group_bin == b) & (gene_chrom[group_gene] == chrom))[0]
            for start in range(0, len(members), 2_000):  # memory: 2,000 x n_samples scores
                part = members[start : start + 2_000]
                drawn = pool[rng.integers(len(pool), size=(len(part), n_samples))]
                null = scorer(np.repeat(group_gene[part], n_samples), drawn.ravel())
                null = null.reshape(len(part), n_samples)
                mean[part], sd[part] = null.mean(axis=1), null.std(axis=1, ddof=1)
    sd = np.where(sd > 0, sd, 1.0)
    return scipy.stats.norm.sf((score - mean[inverse]) / sd[inverse])


def linkpeaks_style(model, rna, atac, links: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The LinkPeaks-style correlation of the links' pairs and its test against the same
    gene with peaks of matched accessibility on other chromosomes (our ``pvalue``'s test)."""
    expression = log_normalised(
        sp.csr_matrix(rna.X[rna.obs_names.get_indexer(model.obs_names)]),
        np.asarray(rna.X.sum(axis=1)).ravel()[rna.obs_names.get_indexer(model.obs_names)],
    ).tocsc()
    atac_rows = atac.obs_names.get_indexer(model.obs_names)
    peak_cols = atac.var_names.get_indexer(model.peaks)
    access = sp.csc_matrix(atac.X[atac_rows][:, peak_cols], dtype=np.float64)
    scorer = PearsonScorer(expression, access)
    genes = rna.var_names.get_indexer(links["gene"])
    peaks = model.peaks.get_indexer(links["peak"])
    score = scorer(genes, peaks)
    gene_chrom = pd.Series(links["chrom"].to_numpy(), index=genes).groupby(level=0).first()
    chrom_of_gene = np.zeros(rna.n_vars, dtype=object)
    chrom_of_gene[gene_chrom.index] = gene_chrom.to_numpy()
    codes = pd.factorize(np.concatenate([chrom_of_gene.astype(str), model.peak_coords["chrom"]]))[0]
    detection = np.asarray((access > 0).mean(axis=0)).ravel()
    pvalue = sampled_trans_test(
        scorer, score, genes, peaks, codes[: rna.n_vars], codes[rna.n_vars :], detection,
        np.random.default_rng(seed),
    )  # fmt: skip
    return pd.DataFrame({"score": score, "pvalue": pvalue, "qvalue": benjamini_hochberg(pvalue)})


def ranked(table: pd.DataFrame, pairs: pd.DataFrame, column: str) -> np.ndarray:
    """The column's value for each evaluation pair; pairs missing from the table rank last."""
    values = table.set_index(["gene", "peak"])[column]
    got = values.reindex(pd.MultiIndex.from_frame(pairs[["gene", "peak"]])).to_numpy(float)
    return np.where(np.isnan(got), np.nanmin(values.to_numpy(float)) - 1, got)


def metrics(labels: np.ndarray, score: np.ndarray, genes: np.ndarray, seed: int) -> dict:
    """AUROC and AUPRC with 95% intervals from resampling genes (pairs of a gene together)."""
    rng = np.random.default_rng(seed)
    names, codes = np.unique(genes, return_inverse=True)
    members = [np.flatnonzero(codes == k) for k in range(len(names))]
    boot: dict[str, list[float]] = {"auroc": [], "auprc": []}
    for _ in range(BOOTSTRAPS):
        rows = np.concatenate([members[k] for k in rng.integers(len(names), size=len(names))])
        if labels[rows].all() or not labels[rows].any():
            continue
        boot["auroc"].append(roc_auc_score(labels[rows], score[rows]))
        boot["auprc"].append(average_precision_score(labels[rows], score[rows]))
    out = {
        "auroc": float(roc_auc_score(labels, score)),
        "auprc": float(average_precision_score(labels, score)),
    }
    for name, values in boot.items():
        out[f"{name}_ci"] = [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]
    return out


def binned_auroc(labels: np.ndarray, score: np.ndarray, distance: np.ndarray) -> list:
    """AUROC within each distance bin (None where a bin has one class only)."""
    out = []
    for low, high in DISTANCE_BINS:
        inside = (distance >= low) & (distance < high)
        both = labels[inside].any() and not labels[inside].all()
        out.append(float(roc_auc_score(labels[inside], score[inside])) if both else None)
    return out


def nearest_gene_first(model: FactVAE, annotation: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """The element's view of closest first: each pair ranked by how many annotated TSSs lie
    nearer to its peak than its gene's, ties by distance (the rule ``peak_share`` builds in)."""
    genes = annotation.drop_duplicates("gene_name").set_index("gene_name")
    candidates = candidate_pairs(genes, model.peak_coords, 150_000)
    candidates["rank"] = candidates["distance"].abs().groupby(candidates["peak_idx"]).rank("min")
    rank = candidates.set_index(
        [genes.index[candidates["gene_idx"]], model.peak_coords.index[candidates["peak_idx"]]]
    )["rank"]
    found = rank.reindex(pd.MultiIndex.from_frame(pairs[["gene", "peak"]])).to_numpy(float)
    found = np.where(np.isnan(found), np.nanmax(rank.to_numpy()) + 1, found)
    return -found - pairs["abs_distance"].to_numpy() / 1e6


def fitted_model(path: str | None, rna, atac, genes) -> tuple[FactVAE, float | None]:
    """One default fit, seed 0; loaded from ``path`` when saved there, else fitted (and saved
    there when ``path`` is given)."""
    if path and (Path(path) / "weights.pt").exists():
        return FactVAE.load(path), None
    started = time.perf_counter()
    model = FactVAE(rna, atac, gene_annotation=genes).fit(seed=0, progress=False)
    seconds = time.perf_counter() - started
    if path:
        model.save(path)
    return model, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heldout", action="store_true", help="score the held-out K562 rows")
    parser.add_argument("--model", help="folder of a saved default fit to reuse (or save to)")
    parser.add_argument("--name", default="links_crispri")
    args = parser.parse_args()
    rna, atac, genes = load_snare()
    model, fit_seconds = fitted_model(args.model, rna, atac, genes)

    started = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    links = model.infer_links(rna=rna, gene_annotation=genes)
    link_seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cosine = model.infer_links(rna=rna, gene_annotation=genes, score="cosine")
    cells_detected = np.asarray((rna.X > 0).sum(axis=0)).ravel()
    three_cells = model.infer_links(
        rna=rna, gene_annotation=genes,
        genes=rna.var_names[cells_detected >= MODEL_DEFAULTS.min_cells],
    )  # fmt: skip
    narrow = model.infer_links(
        rna=rna, gene_annotation=genes,
        genes=rna.var_names[
            (cells_detected >= MIN_DETECTION * rna.n_obs) | rna.var_names.isin(model.genes)
        ],
    )  # fmt: skip
    linkpeaks = linkpeaks_style(model, rna, atac, links, seed=0)
    tables = {
        "FactVAE combined (default)": (links, "score"),
        "LinkPeaks-style correlation": (links.assign(r=linkpeaks["score"].to_numpy()), "r"),
        "FactVAE cosine (paper)": (cosine, "score"),
        "FactVAE combined, genes= those in >= 3 cells (default of stop 51)": (
            three_cells,
            "score",
        ),
        "FactVAE combined, genes= those in >= 1% of cells or modelled (before stop 51)": (
            narrow,
            "score",
        ),
        "FactVAE correlation (co-variation alone)": (links, "covariation"),
        "FactVAE abc (accessibility x contact share)": (links, "abc"),
    }

    truth = pd.read_csv(PAIRS, sep="\t")
    chosen = truth["Dataset"] != DEVELOPMENT if args.heldout else truth["Dataset"] == DEVELOPMENT
    pairs = truth[chosen].reset_index(drop=True)
    labels = pairs["Regulated"].to_numpy(bool)
    distance = pairs["abs_distance"].to_numpy()
    # closest first as a biologist applies it: every pair ranked by its own distance, none last
    by_distance = {
        "distance alone (closest first, every pair)": -distance.astype(float),
        "nearest gene to the peak first (every pair)": nearest_gene_first(model, genes, pairs),
    }
    by_table = {name: ranked(table, pairs, column) for name, (table, column) in tables.items()}
    in_table = pd.MultiIndex.from_frame(pairs[["gene", "peak"]]).isin(
        pd.MultiIndex.from_frame(links[["gene", "peak"]])
    )
    scores = {}
    default = next(iter(by_table))
    for name, values in {default: by_table[default], **by_distance, **by_table}.items():
        scores[name] = {
            **metrics(labels, values, pairs["gene"].to_numpy(), seed=0),
            "auroc_by_distance": binned_auroc(labels, values, distance),
            # every score on the same pairs: how it ranks, apart from what the table covers
            "auroc_in_table": float(roc_auc_score(labels[in_table], values[in_table])),
            "auroc_in_table_by_distance": binned_auroc(
                labels[in_table], values[in_table], distance[in_table]
            ),
        }

    detection = pd.Series(
        np.asarray((rna.X > 0).mean(axis=0)).ravel(), index=rna.var_names.astype(str)
    )
    detected = detection.reindex(pairs["gene"]).fillna(0).to_numpy() >= MIN_DETECTION
    base_rate = labels.mean()

    def significance(table: pd.DataFrame, column: str) -> dict:
        """The links with ``column`` < 0.05 and the evaluation pairs among them."""
        significant = (np.where(in_table, ranked(table, pairs, column), 1.0) < 0.05) & in_table
        rate = labels[significant].mean() if significant.any() else float("nan")
        return {
            "links": int((table[column] < 0.05).sum()),
            "evaluation_pairs": int(significant.sum()),
            "positives": int((significant & labels).sum()),
            "enrichment": float(rate / base_rate) if significant.any() else None,
        }

    def both_filters(table: pd.DataFrame, q_column: str, p_column: str) -> dict:
        # q < 0.05 (BH over all candidates), and LinkPeaks' own filter: nominal p < 0.05
        return {"q": significance(table, q_column), "p": significance(table, p_column)}

    result = {
        "rows": "held-out K562 rows (not Gasperini2019)" if args.heldout else DEVELOPMENT,
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "genes": int(pairs["gene"].nunique()),
        "fit_seconds": fit_seconds,
        "links": {
            "pairs": len(links),
            "genes": int(links["gene"].nunique()),
            "modelled_genes": int(links.loc[links["modelled"], "gene"].nunique()),
            "seconds": link_seconds,
            "peak_rss_growth_mb": (rss_after - rss_before) / 1024,
            "peak_rss_mb": rss_after / 1024,
        },
        "coverage": {
            "positives_detected": int((labels & detected).sum()),
            "positives_detected_in_table": int((labels & detected & in_table).sum()),
            "share": float(
                (labels & detected & in_table).sum() / max(int((labels & detected).sum()), 1)
            ),
            "pairs_in_table": int(in_table.sum()),
        },
        "scores": scores,
        "significance": {
            "FactVAE pvalue (other chromosomes)": both_filters(links, "qvalue", "pvalue"),
            "FactVAE pvalue_cis (same distance)": both_filters(links, "qvalue_cis", "pvalue_cis"),
            "LinkPeaks-style (other chromosomes)": both_filters(
                links[["gene", "peak"]].assign(q=linkpeaks["qvalue"], p=linkpeaks["pvalue"]),
                "q",
                "p",
            ),
        },
    }
    suffix = "_heldout" if args.heldout else ""
    out = HERE / "results" / f"{args.name}{suffix}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    """The result as the tables the README quotes."""
    bins = " | ".join(f"AUROC {a // 1000}-{b // 1000} kb" for a, b in DISTANCE_BINS)
    lines = [
        f"CRISPRi pairs: {result['rows']} ({result['pairs']} pairs, {result['positives']} "
        f"positive, {result['genes']} genes); a pair missing from a table ranks last; 95% "
        f"intervals from {BOOTSTRAPS} bootstraps over genes. The last column ranks only the "
        f"{result['coverage']['pairs_in_table']} pairs in the default table (within the "
        "distance bins in brackets).",
        "",
        f"| score | AUROC | AUPRC | {bins} | AUROC, pairs in the default table |",
        "|---|---|---|---|---|---|---|",
    ]

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for name, s in result["scores"].items():
        by_bin = " | ".join(shown(v) for v in s["auroc_by_distance"])
        held_by_bin = " / ".join(shown(v) for v in s["auroc_in_table_by_distance"])
        lines.append(
            f"| {name} | {s['auroc']:.3f} ({s['auroc_ci'][0]:.3f}-{s['auroc_ci'][1]:.3f}) | "
            f"{s['auprc']:.3f} ({s['auprc_ci'][0]:.3f}-{s['auprc_ci'][1]:.3f}) | {by_bin} | "
            f"{s['auroc_in_table']:.3f} ({held_by_bin}) |"
        )
    c, k = result["coverage"], result["links"]
    lines += [
        "",
        f"Coverage: {c['positives_detected_in_table']} of the {c['positives_detected']} "
        f"positives whose gene is detected in >= 1% of cells are in the table "
        f"({100 * c['share']:.0f}%); {c['pairs_in_table']} of {result['pairs']} pairs.",
        f"Links: {k['pairs']:,} pairs for {k['genes']:,} genes ({k['modelled_genes']:,} "
        f"modelled), in {k['seconds']:.1f} s; peak RSS {k['peak_rss_mb']:.0f} MB "
        f"(+{k['peak_rss_growth_mb']:.0f} MB while linking).",
        "",
        "| test | filter | links passing | evaluation pairs passing | of which positive | "
        "enrichment of positives |",
        "|---|---|---|---|---|---|",
    ]
    filters = {"q": "q < 0.05", "p": "p < 0.05 (LinkPeaks' pvalue.cutoff, uncorrected)"}
    for name, by_filter in result["significance"].items():
        for key, label in filters.items():
            s = by_filter[key]
            enrichment = "n/a" if s["enrichment"] is None else f"{s['enrichment']:.2f}x"
            lines.append(
                f"| {name} | {label} | {s['links']:,} | {s['evaluation_pairs']} | "
                f"{s['positives']} | {enrichment} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
