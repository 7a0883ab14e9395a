"""Loader for the real SNARE-seq cell-line set in ../shared/data (used by tests and benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import pandas as pd
import scipy.io

from factvae.data.genomics import format_peak_names

REPO = Path(__file__).resolve().parents[1]


def snare_folder() -> Path:
    """Where the data lives: $FACTVAE_SHARED_DATA/snare_hcellline or ../shared beside the repo."""
    root = os.environ.get("FACTVAE_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    return Path(root) / "snare_hcellline"


def load_snare(folder: Path | None = None) -> tuple[ad.AnnData, ad.AnnData, pd.DataFrame]:
    """(rna, atac, genes) with raw counts as CSR cells x features and ``obs['cell_type']``."""
    folder = folder or snare_folder()
    cells = pd.read_csv(folder / "barcodes.tsv", header=None)[0].astype(str)
    labels = pd.read_csv(folder / "cell_types.tsv", sep="\t").set_index("barcode")["cell_type"]
    obs = pd.DataFrame({"cell_type": labels.reindex(cells).to_numpy()}, index=cells.to_numpy())
    gene_names = pd.read_csv(folder / "genes.tsv", header=None)[0].astype(str)
    peaks = pd.read_csv(
        folder / "peaks.bed", sep="\t", header=None, names=["chrom", "start", "end"]
    )
    peaks.index = format_peak_names(peaks["chrom"], peaks["start"], peaks["end"])
    rna_counts = scipy.io.mmread(folder / "rna_counts.mtx.gz").T.tocsr().astype("float32")
    atac_counts = scipy.io.mmread(folder / "atac_counts.mtx.gz").T.tocsr().astype("float32")
    rna = ad.AnnData(rna_counts, obs=obs.copy(), var=pd.DataFrame(index=gene_names.to_numpy()))
    atac = ad.AnnData(atac_counts, obs=obs.copy(), var=peaks)
    genes = pd.read_csv(
        folder / "genes.bed",
        sep="\t",
        header=None,
        names=["chrom", "start", "end", "gene_name", "strand"],
    )
    return rna, atac, genes
