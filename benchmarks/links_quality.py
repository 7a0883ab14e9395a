"""Do the links know more than the prior? Two tests, each scoring FactVAE's link scores against a
LinkPeaks-style correlation and distance alone. Writes benchmarks/results/links_quality.json and
links_quality.md.

1. Held-out prior on snare_hcellline (real data): 20% of the gene-body prior's pairs are held
   out, the model trains on the rest, and the held-out pairs are ranked against candidate pairs
   that were never in the prior, within bins of |distance to the TSS| (0-5, 5-20, 20-50,
   50-150 kb), so distance cannot do the work. AUROC per bin and averaged, for 3 seeds of the
   split.
2. Planted links on simulated data at 5k, 27k and 100k peaks: AUROC of the planted pairs among
   all candidates, and among distal candidates only (outside the prior).

3. With ``--significant-only``: how many links reach q < 0.05 on snare_hcellline at the
   defaults (full prior, seed 0), and how many of those are the prior's own pairs.

    .venv/bin/python benchmarks/links_quality.py                  # 1 and 2 (~25 min)
    .venv/bin/python benchmarks/links_quality.py --skip-simulated --seeds 0
    .venv/bin/python benchmarks/links_quality.py --significant-only   # 3 (~2 min)
    .venv/bin/python benchmarks/links_quality.py --skip-snare --models /tmp/m  # reuse fits
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
BINS = ((0, 5_000), (5_000, 20_000), (20_000, 50_000), (50_000, 150_001))
PEAK_COUNTS = (5_000, 27_000, 100_000)
SIMULATED_CELLS = 3_000
HELD_OUT = 0.2


def log_normalised(counts: sp.spmatrix) -> sp.csc_matrix:
    """log1p of counts per 10,000, as Seurat's NormalizeData: the expression LinkPeaks reads."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scaled = sp.diags(1e4 / np.maximum(totals, 1)) @ counts
    scaled.data = np.log1p(scaled.data)
    return scaled.tocsc()


def pair_correlation(
    expression: sp.csc_matrix, access: sp.csc_matrix, genes: np.ndarray, peaks: np.ndarray
) -> np.ndarray:
    """Pearson correlation over cells of each (gene, peak) pair's expression and accessibility
    counts (LinkPeaks' statistic, without its background), one gene at a time, sparsely."""
    n = expression.shape[0]

    def moments(matrix: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(matrix.mean(axis=0)).ravel()
        square = np.asarray(matrix.multiply(matrix).mean(axis=0)).ravel()
        return mean, np.sqrt(np.maximum(square - mean**2, 0))

    gene_mean, gene_sd = moments(expression)
    peak_mean, peak_sd = moments(access)
    result = np.zeros(len(genes))
    for gene in np.unique(genes):
        rows = np.nonzero(genes == gene)[0]
        column = expression[:, gene].toarray().ravel()
        products = access[:, peaks[rows]].T @ column / n
        cov = products - gene_mean[gene] * peak_mean[peaks[rows]]
        scale = gene_sd[gene] * peak_sd[peaks[rows]]
        result[rows] = np.where(scale > 0, cov / np.where(scale > 0, scale, 1), 0.0)
    return result


def auroc(labels: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, score))


def baseline_scores(model, rna, atac, links: pd.DataFrame) -> dict[str, np.ndarray]:
    """LinkPeaks-style correlation and distance alone for the links' pairs."""
    gene_cols = rna.var_names.get_indexer(links["gene"])
    peak_cols = atac.var_names.get_indexer(links["peak"])
    rows = rna.obs_names.get_indexer(model.obs_names)
    expression = log_normalised(rna.X[rows])
    access = sp.csc_matrix(atac.X[atac.obs_names.get_indexer(model.obs_names)], dtype=np.float64)
    return {
        "LinkPeaks correlation": pair_correlation(expression, access, gene_cols, peak_cols),
        "distance alone": -np.abs(links["distance"].to_numpy()),
    }


def all_scores(model, rna, atac) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every score for the same candidate pairs (the default score's table decides the order)."""
    from factvae.outputs.links import LINK_SCORES
    from factvae.settings import RUN_DEFAULTS

    links = model.infer_links()
    scores = {f"FactVAE {RUN_DEFAULTS.link_score} (default)": links["score"].to_numpy()}
    for name in LINK_SCORES:
        if name != RUN_DEFAULTS.link_score:
            other = model.infer_links(score=name)
            scores[f"FactVAE {name}"] = other["score"].to_numpy()
    scores.update(baseline_scores(model, rna, atac, links))
    # the default score and distance combined without a tuned weight: the mean of their ranks
    from scipy.stats import rankdata

    default = next(iter(scores.values()))
    scores["FactVAE default + distance (mean rank)"] = (
        rankdata(default) + rankdata(scores["distance alone"])
    ) / 2
    return links, scores


def cell_line_reference_scores(
    rna, atac, links: pd.DataFrame, training_prior
) -> dict[str, np.ndarray]:
    """Two scores from the raw counts averaged per labelled cell line (four points each), as
    a bound on what co-variation across cells can find: averaging hundreds of cells removes
    the sparsity that limits every single-cell score, and the labels are ones no model has.

    * expression against accessibility: the Pearson correlation over the lines of the gene's
      mean log-normalised expression and the peak's log accessibility per 10,000 fragments;
    * co-accessibility with the training prior: the same correlation of the peak's profile
      with the mean profile of the peaks the training prior gives the gene (0 for a gene
      without any), a Cicero-like score that knows the prior.
    """
    lines = pd.factorize(rna.obs["cell_type"].to_numpy())[0]
    members = sp.csr_matrix((np.ones(len(lines)), (lines, np.arange(len(lines)))))
    mean_of_line = sp.diags(1 / np.asarray(members.sum(axis=1)).ravel()) @ members
    expression = np.asarray((mean_of_line @ log_normalised(rna.X)).todense())
    fragments = np.asarray((members @ sp.csr_matrix(atac.X, dtype=np.float64)).todense())
    access = np.log1p(fragments / fragments.sum(axis=1, keepdims=True) * 1e4)

    def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = a - a.mean(axis=0), b - b.mean(axis=0)
        scale = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
        return np.where(scale > 0, (a * b).sum(axis=0) / np.where(scale > 0, scale, 1), 0.0)

    gene_cols = rna.var_names.get_indexer(links["gene"])
    peak_cols = atac.var_names.get_indexer(links["peak"])
    prior = training_prior.subset(rna.var_names, atac.var_names).matrix[gene_cols]
    per_gene = np.asarray(prior.sum(axis=1)).ravel()
    prior_profile = (sp.diags(1 / np.maximum(per_gene, 1)) @ prior @ access.T).T
    coaccess = correlation(prior_profile, access[:, peak_cols])
    return {
        "cell-line means: expression vs accessibility": correlation(
            expression[:, gene_cols], access[:, peak_cols]
        ),
        "cell-line means: co-accessibility with the training prior": np.where(
            per_gene > 0, coaccess, 0.0
        ),
    }


def held_out_prior(seed: int, settings: dict) -> dict:
    """Train on 80% of the gene-body prior; rank the held-out 20% per distance bin."""
    import factvae
    from factvae.outputs.scores import clustering_scores
    from snare_data import load_snare

    rna, atac, genes = load_snare()
    full = factvae.gene_to_peak(genes, atac.var)
    coo = full.matrix.tocoo()
    rng = np.random.default_rng(seed)
    held = rng.random(coo.nnz) < HELD_OUT
    kept = sp.csr_matrix(
        (np.ones(int((~held).sum()), dtype=np.float32), (coo.row[~held], coo.col[~held])),
        shape=full.matrix.shape,
    )
    prior = factvae.GeneToPeak(kept, full.genes, full.peaks)
    start = time.perf_counter()
    model = factvae.FactVAE(rna, atac, gene_annotation=genes, g2p=prior, **settings)
    model.fit(seed=seed, progress=False)
    seconds = time.perf_counter() - start
    links, scores = all_scores(model, rna, atac)
    scores.update(cell_line_reference_scores(rna, atac, links, prior))
    in_full = full.matrix[
        full.genes.get_indexer(links["gene"]), full.peaks.get_indexer(links["peak"])
    ].A1
    held_pairs = set(zip(full.genes[coo.row[held]], full.peaks[coo.col[held]]))
    positive = np.array([pair in held_pairs for pair in zip(links["gene"], links["peak"])])
    negative = in_full == 0
    distance = links["distance"].abs().to_numpy()
    result: dict = {"seed": seed, "train_s": seconds, "epochs": len(model.history)}
    result["joint_ari"] = clustering_scores(
        model.get_latent("joint"), rna.obs.loc[model.obs_names, "cell_type"]
    )["ari"]
    result["held_out_pairs"] = int(positive.sum())
    for name, score in scores.items():
        per_bin = []
        for low, high in BINS:
            chosen = (positive | negative) & (distance >= low) & (distance < high)
            per_bin.append(auroc(positive[chosen], score[chosen]))
        result[name] = {"bins": per_bin, "mean": float(np.nanmean(per_bin))}
    return result


def significant_links(settings: dict) -> str:
    """Links with q < 0.05 on snare at the defaults, per score, and the share in the prior."""
    import factvae
    from factvae.outputs.links import LINK_SCORES
    from snare_data import load_snare

    rna, atac, genes = load_snare()
    model = factvae.FactVAE(rna, atac, gene_annotation=genes, **settings)
    model.fit(seed=0, progress=False)
    lines = [
        "| score | candidates | in prior | q < 0.05 | of which in prior |",
        "|---|---|---|---|---|",
    ]
    for score in LINK_SCORES:
        links = model.infer_links(score=score)
        significant = links[links["qvalue"] < 0.05]
        lines.append(
            f"| {score} | {len(links):,} | {int(links['in_prior'].sum()):,} | "
            f"{len(significant):,} | {int(significant['in_prior'].sum()):,} |"
        )
    return "\n".join(lines) + "\n"


def planted(n_peaks: int, settings: dict, models: Path | None = None) -> dict:
    """Planted links among all candidates and among distal ones (outside the prior). With
    ``models``, the fit is loaded from ``models/planted_<peaks>`` when saved there (its fit
    time is then unknown), else fitted and saved there: link scores can be compared on the
    same fits."""
    import factvae

    n_genes = max(500, n_peaks // 20)
    sim = factvae.simulate(
        n_cells=SIMULATED_CELLS, n_genes=n_genes, n_peaks=n_peaks, atac_density=0.03, seed=0
    )
    saved = models / f"planted_{n_peaks}" if models else None
    start = time.perf_counter()
    if saved and (saved / "weights.pt").exists():
        model, seconds = factvae.FactVAE.load(saved), None
    else:
        # simulated TSSs lack real data's peaks (see factvae.simulate): no build check
        model = factvae.FactVAE(
            sim.rna, sim.atac, gene_annotation=sim.genes, check_build=False, **settings
        )
        model.fit(progress=False)
        seconds = time.perf_counter() - start
        if saved:
            model.save(saved)
    links, scores = all_scores(model, sim.rna, sim.atac)
    truth = set(zip(sim.links["gene"], sim.links["peak"]))
    labels = np.array([pair in truth for pair in zip(links["gene"], links["peak"])])
    distal = ~links["in_prior"].to_numpy()
    result: dict = {"peaks": n_peaks, "genes": n_genes, "train_s": seconds,
                    "epochs": len(model.history), "planted": int(labels.sum()),
                    "planted_distal": int((labels & distal).sum())}  # fmt: skip
    for name, score in scores.items():
        result[name] = {"all": auroc(labels, score), "distal": auroc(labels[distal], score[distal])}
    return result


def summarise(snare: list[dict], simulated: list[dict]) -> str:
    lines = []
    if snare:
        names = [k for k, v in snare[0].items() if isinstance(v, dict)]
        lines += [
            f"Held-out prior on snare_hcellline ({len(snare)} seeds of a 20% split; AUROC of the "
            "held-out pairs against never-prior candidates in the same |distance| bin; median "
            "over seeds):",
            "",
            "| score | 0-5 kb | 5-20 kb | 20-50 kb | 50-150 kb | mean of bins |",
            "|---|---|---|---|---|---|",
        ]
        for name in names:
            bins = [statistics.median(r[name]["bins"][i] for r in snare) for i in range(len(BINS))]
            mean = statistics.median(r[name]["mean"] for r in snare)
            lines.append(f"| {name} | " + " | ".join(f"{b:.3f}" for b in bins) + f" | {mean:.3f} |")
        aris = ", ".join(f"{r['joint_ari']:.3f}" for r in snare)
        times = statistics.median(r["train_s"] for r in snare)
        lines += ["", f"Joint ARI of those fits: {aris}; median fit {times:.0f} s.", ""]
    if simulated:
        names = [k for k, v in simulated[0].items() if isinstance(v, dict)]
        lines += [
            f"Planted links on simulated data ({SIMULATED_CELLS} cells; AUROC among all "
            "candidates within 150 kb / among distal candidates outside the prior):",
            "",
            "| score | " + " | ".join(f"{r['peaks']:,} peaks" for r in simulated) + " |",
            "|---|" + "---|" * len(simulated),
        ]
        for name in names:
            cells = [f"{r[name]['all']:.3f} / {r[name]['distal']:.3f}" for r in simulated]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        fits = ", ".join(
            f"{r['peaks']:,}: " + (f"{r['train_s']:.0f} s" if r["train_s"] else "a saved fit")
            for r in simulated
        )
        lines += ["", f"Fit times: {fits}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--peaks", type=int, nargs="+", default=list(PEAK_COUNTS))
    parser.add_argument("--skip-snare", action="store_true")
    parser.add_argument("--skip-simulated", action="store_true")
    parser.add_argument("--name", default="links_quality")
    parser.add_argument(
        "--settings",
        type=json.loads,
        default={},
        help="model settings as JSON, e.g. '{\"n_latent\": 30}'",
    )
    parser.add_argument("--significant-only", action="store_true")
    parser.add_argument("--models", type=Path, help="folder to reuse (or save) the planted fits")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.significant_only:
        text = significant_links(args.settings)
        (HERE / "results" / "links_significant.md").write_text(text)
        print(text)
        return
    snare = [] if args.skip_snare else [held_out_prior(seed, args.settings) for seed in args.seeds]
    for row in snare:
        print(json.dumps(row), flush=True)
    simulated = []
    for n_peaks in [] if args.skip_simulated else args.peaks:
        simulated.append(planted(n_peaks, args.settings, args.models))
        print(json.dumps(simulated[-1]), flush=True)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"{args.name}.json").write_text(
        json.dumps({"snare": snare, "simulated": simulated}, indent=2)
    )
    text = summarise(snare, simulated)
    (results / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
