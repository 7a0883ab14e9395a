"""What ``factvae fit`` writes in ``--out``: the file names (and the help's table of them),
the writing itself, and the summary printed after."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from factvae.api import FactVAE
from factvae.cli.options import FitOptions
from factvae.io.mudata import add_results

CHECKPOINTS = "checkpoints"
MODEL_DIR, EMBEDDINGS_FILE = "model", "embeddings.tsv.gz"
LINKS_FILE, AUGMENTED_FILE = "links.tsv.gz", "augmented_atac.h5ad"
RESULTS_H5MU = "factvae.h5mu"


def outputs_epilog(title: str, rows: list[tuple[str, str]]) -> str:
    """An epilog table; argparse would re-wrap it, so it is laid out here."""
    lines = [title]
    for name, text in rows:
        first, *rest = text.split("\n")
        lines.append(f"  {name:<22}{first}")
        lines.extend(f"  {'':<22}{more}" for more in rest)
    return "\n".join(lines)


FIT_OUTPUTS = outputs_epilog(
    "outputs (in --out DIR):",
    [
        (f"{MODEL_DIR}/", f"the trained model: factvae.FactVAE.load('DIR/{MODEL_DIR}')"),
        (
            EMBEDDINGS_FILE,
            "cells x embeddings: joint_1.. (the joint embedding, the\n"
            "model's joint_embedding rule), then rna_1..rna_L and atac_1..atac_L\n"
            "(each modality's own, as get_latent('rna'/'atac') gives it)",
        ),
        (
            LINKS_FILE,
            "candidate gene-peak pairs within --links-window of the TSS of every\n"
            "gene the counts detect, best first: gene, peak, score\n"
            "(--links-score) and its ingredients covariation, activity, contact, abc,\n"
            "peak_share, evidence (evidence_gene, covariation against every peak on\n"
            "other chromosomes, joined with evidence_peak, against every gene there);\n"
            "zscore, pvalue, qvalue: covariation against peaks of matched accessibility\n"
            "on other chromosomes (LinkPeaks); zscore_cis, pvalue_cis, qvalue_cis:\n"
            "against pairs at the same distance; distance (signed, negative =\n"
            "upstream), in_prior, modelled, gene_detection (share of cells\n"
            "expressing the gene), chrom, tss",
        ),
        (
            AUGMENTED_FILE,
            "with --augment: cells x peaks augmented accessibility (dense, or\n"
            "sparse keeping values >= --augment-threshold)",
        ),
        (
            RESULTS_H5MU,
            "with --h5mu: the input MuData with the results in obsm (X_factvae,\n"
            "X_factvae_rna, X_factvae_atac), uns (factvae_links) and the ATAC\n"
            "modality's layer factvae_augmented (with --augment)",
        ),
        (f"{CHECKPOINTS}/", "training state every --checkpoint-every epochs, for --resume"),
    ],
)


@dataclass
class FitResult:
    """The trained model and what was written, for the summary and the demo's scores."""

    model: FactVAE
    links: pd.DataFrame | None
    written: list[tuple[str, Path, str]]
    train_seconds: float
    total_seconds: float


def write_outputs(
    model: FactVAE, options: FitOptions, rna: Any, mdata: Any = None
) -> tuple[list[tuple[str, Path, str]], pd.DataFrame | None]:
    """Write the model, the embeddings and, as asked, links, augmented ATAC and the MuData."""
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    written = [("model", model.save(out / MODEL_DIR), f"{len(model.history)} epochs")]

    blocks = {kind: model.get_latent(kind) for kind in ("joint", "rna", "atac")}
    columns = [f"{kind}_{i + 1}" for kind, block in blocks.items() for i in range(block.shape[1])]
    latent = np.hstack(list(blocks.values()))
    embeddings = pd.DataFrame(latent, index=pd.Index(model.obs_names, name="cell"), columns=columns)
    path = out / EMBEDDINGS_FILE
    embeddings.to_csv(path, sep="\t", float_format="%.9g")  # %.9g round-trips float32 exactly
    written.append(("embeddings", path, f"{latent.shape[0]} cells x {latent.shape[1]}"))

    links = None
    if options.links:
        links = model.infer_links(  # rna: every detected gene, not only the modelled ones
            window=options.links_window, seed=options.seed, score=options.links_score, rna=rna
        )
        links = links.sort_values("score", ascending=False, kind="stable", ignore_index=True)
        path = out / LINKS_FILE
        links.to_csv(path, sep="\t", index=False, float_format="%.6g")
        significant = int((links["qvalue"] < 0.05).sum())
        written.append(("links", path, f"{len(links)} pairs, {significant} with q < 0.05"))

    matrix = None
    if options.augment or options.augment_threshold is not None:
        matrix = model.augment_atac(
            threshold=options.augment_threshold, latent=options.augment_latent
        )
        assert not isinstance(matrix, Path)  # only out= streams to a path
        augmented = anndata.AnnData(
            X=matrix,
            obs=pd.DataFrame(index=pd.Index(model.obs_names, name=None)),
            var=model.peak_coords.copy(),
        )
        path = out / AUGMENTED_FILE
        augmented.write_h5ad(path)
        kind = f"sparse, {matrix.nnz} values" if isinstance(matrix, sp.csr_matrix) else "dense"
        written.append(("augmented", path, f"{matrix.shape[0]} x {matrix.shape[1]} {kind}"))
    if mdata is not None:
        add_results(mdata, model, links, matrix, options.atac_modality)
        path = out / RESULTS_H5MU
        mdata.write(path)
        written.append(("MuData with results", path, f"{mdata.n_obs} cells"))
    return written, links


def print_summary(result: FitResult) -> None:
    """One line on the training, then one per written output: what, where, how big."""
    model = result.model
    print(
        f"factvae: trained {len(model.history)} epochs on {model.device} in "
        f"{_duration(result.train_seconds)} ({len(model.obs_names)} cells, {len(model.genes)} "
        f"genes, {len(model.peaks)} peaks, {model.g2p.nnz} prior pairs); "
        f"total {_duration(result.total_seconds)}"
    )
    width = max(len(str(path)) for _, path, _ in result.written)
    for label, path, detail in result.written:
        print(f"  {label:<11} {path!s:<{width}}  {detail}")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m {rest:.0f}s" if minutes else f"{rest:.1f}s"
