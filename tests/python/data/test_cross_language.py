"""R and Python read peak names, harmonise chromosome names and build the G2P prior alike.

The rules live once, in Python (factvae.data.genomics, factvae.data.prior); the R package calls
them through reticulate (R/inputs.R, R/gene-to-peak.R). This test feeds the same inputs to both
sides and requires identical output, and pins the rules themselves: a name ``chr1-1000-1500``
is the bases 1000..1500 (Signac's 1-based, inclusive reading), i.e. ``[999, 1500)`` 0-based.

The R side runs in its own ``Rscript`` process, with the R package installed from this checkout
into a temporary library and Python reached through reticulate, as users run it. (rpy2 cannot
host it: R embedded by rpy2 runs with the GIL released, and reticulate 1.28 then stops the
process with "PyThreadState_Get: the function must be called with the GIL held".) Missing R or
R packages fail the test with the reason; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factvae import FactVAEInputError, gene_to_peak
from factvae.data.builds import warn_if_other_build
from factvae.data.genomics import harmonise_chromosome_names, parse_peak_names

ROOT = Path(__file__).resolve().parents[3]

GOOD_NAMES = [
    "chr1-1000-1500",
    "chr1:1000-1500",
    "chr1_1000_1500",
    "chr1:1000_1500",
    "1-2000-2000",  # end == start: one base
    "MT-5-10",
    "chrM:1-16569",
    "chrX_77_77",
    "chrUn-gl000220-1-5000-6000",  # the last two fields are the coordinates
    "chr2-0-100",  # a start of 0 (a BED-style name) is base 1
    "HLA-A*01:01-1-100",
]
# (chrom, 0-based start, end) that the rule gives for GOOD_NAMES
GOOD_RANGES = [
    ("chr1", 999, 1500),
    ("chr1", 999, 1500),
    ("chr1", 999, 1500),
    ("chr1", 999, 1500),
    ("1", 1999, 2000),
    ("MT", 4, 10),
    ("chrM", 0, 16569),
    ("chrX", 76, 77),
    ("chrUn-gl000220-1", 4999, 6000),
    ("chr2", 0, 100),
    ("HLA-A*01:01", 0, 100),
]
BAD_NAMES = ["peak7", "chr1-5-x", "chr1-500-499", "chr1-0-0", "chr1:100:200", "chr1-100"]

# gene chromosomes -> peak chromosomes -> the gene chromosomes renamed
CHROM_CASES = [
    (["1", "2", "X", "MT"], ["chr1", "chr2", "chrX", "chrM"], ["chr1", "chr2", "chrX", "chrM"]),
    (["chr1", "chrX", "chrM"], ["1", "X", "MT"], ["1", "X", "MT"]),
    (["chr1", "chrM", "chrX"], ["chr1", "chrM", "chrX"], ["chr1", "chrM", "chrX"]),
    (["1", "chr2", "MT"], ["chr1", "chr2", "chrM"], ["chr1", "chr2", "chrM"]),
    (["MT", "1"], ["MT", "chr1"], ["MT", "1"]),  # a tie keeps the names as given
]

# A small annotation in BED coordinates (0-based start): strands +, - and none, a repeated gene
# (the longer copy wins), a gene listed by transcript parts (its longest transcript wins) and
# chromosome names in the other style (MT, X) than the peaks'.
GENES = pd.DataFrame(
    [
        ("chr1", 10_000, 20_000, "PLUS", "+", "t1"),
        ("chr1", 50_000, 60_000, "MINUS", "-", "t2"),
        ("chr2", 1_000, 2_000, "NOSTRAND", ".", "t3"),
        ("chr1", 30_000, 30_500, "DUP", "+", "t4"),
        ("chr1", 30_000, 31_000, "DUP", "+", "t5"),
        ("chr1", 70_000, 70_200, "TXG", "+", "T1"),
        ("chr1", 73_000, 73_200, "TXG", "+", "T1"),
        ("chr1", 70_000, 70_400, "TXG", "+", "T2"),
        ("MT", 100, 900, "MITO", "+", "t6"),
        ("X", 5_000, 6_000, "XG", "-", "t7"),
    ],
    columns=["chrom", "start", "end", "gene_name", "strand", "tx_id"],
)
PEAKS = [
    "chr1-8000-8000",
    "chr1-8001-8001",
    "chr1:20000-20000",
    "chr1_20001_20001",
    "chr1-50000-50000",
    "chr1-62000-62000",
    "chr1-62001-62100",
    "chr1-30990-31005",
    "chr1-72000-72100",
    "chr2-500-600",
    "chrM-1-50",
    "chrX-6001-6500",
    "chrX:6000-6000",
    "chr3-1-100",
]
UPSTREAMS = [0, 2000, 3000]
EXPECTED_PAIRS = {
    0: {
        ("PLUS", "chr1:20000-20000"),
        ("DUP", "chr1-30990-31005"),
        ("TXG", "chr1-72000-72100"),
        ("XG", "chrX:6000-6000"),
    },
    2000: {
        ("PLUS", "chr1-8001-8001"),
        ("PLUS", "chr1:20000-20000"),
        ("MINUS", "chr1-62000-62000"),
        ("NOSTRAND", "chr2-500-600"),
        ("DUP", "chr1-30990-31005"),
        ("TXG", "chr1-72000-72100"),
        ("MITO", "chrM-1-50"),
        ("XG", "chrX-6001-6500"),
        ("XG", "chrX:6000-6000"),
    },
}

R_SCRIPT = r"""
suppressPackageStartupMessages(library(factvae))
args <- commandArgs(TRUE)
dir <- args[1]
read <- function(name) {
  utils::read.delim(file.path(dir, name), colClasses = "character", quote = "",
                    na.strings = character(), comment.char = "")
}
write <- function(frame, name) {
  utils::write.table(frame, file.path(dir, name), sep = "\t", quote = FALSE,
                     row.names = FALSE)
}
available <- FactVAEAvailable()
if (!available) stop("the factvae Python core is not usable: ", attr(available, "reason"))

good <- read("good.tsv")$name
ranges <- PeakRanges(good)
write(data.frame(name = names(ranges), chrom = as.character(GenomicRanges::seqnames(ranges)),
                 start = GenomicRanges::start(ranges) - 1L, end = GenomicRanges::end(ranges)),
      "r_good.tsv")
# Unnamed ranges get the name that reads back to them.
unnamed <- ranges
names(unnamed) <- NULL
write(data.frame(name = names(factvae:::.as_peak_ranges(unnamed))), "r_formatted.tsv")

bad <- read("bad.tsv")$name
messages <- vapply(bad, function(name) {
  tryCatch({
    PeakRanges(name)
    "no error"
  }, error = conditionMessage)
}, character(1))
write(data.frame(name = bad, message = gsub("[\t\n]", " ", messages)), "r_bad.tsv")

cases <- read("chroms.tsv")
harmonised <- lapply(split(cases, cases$case), function(case) {
  genes <- case$gene_chrom[nzchar(case$gene_chrom)]
  peaks <- case$peak_chrom[nzchar(case$peak_chrom)]
  annotation <- GenomicRanges::GRanges(genes, IRanges::IRanges(1, 10), strand = "+",
                                       gene_name = paste0("G", seq_along(genes)))
  table <- factvae:::.gene_table(annotation, PeakRanges(paste0(peaks, "-1-10")))
  data.frame(case = case$case[1], chrom = table$chrom)
})
write(do.call(rbind, harmonised), "r_chroms.tsv")

genes <- read("genes.tsv")
annotation <- GenomicRanges::GRanges(
  genes$chrom, IRanges::IRanges(as.numeric(genes$start) + 1, as.numeric(genes$end)),
  strand = ifelse(genes$strand == ".", "*", genes$strand), gene_name = genes$gene_name,
  tx_id = genes$tx_id)
peaks <- read("peaks.tsv")$name
pairs <- list()
for (upstream in as.numeric(read("upstreams.tsv")$upstream)) {
  g2p <- GeneToPeak(annotation, peaks, upstream = upstream)
  linked <- Matrix::which(g2p != 0, arr.ind = TRUE)
  pairs[[length(pairs) + 1]] <- data.frame(
    upstream = rep(upstream, nrow(linked)), gene = rownames(g2p)[linked[, 1]],
    peak = colnames(g2p)[linked[, 2]])
  write(data.frame(gene = rownames(g2p)), sprintf("r_genes_%d.tsv", as.integer(upstream)))
}
write(do.call(rbind, pairs), "r_pairs.tsv")

build <- read("build_genes.tsv")
build.peaks <- PeakRanges(read("build_peaks.tsv")$name)
checks <- lapply(split(build, build$case), function(case) {
  annotation <- GenomicRanges::GRanges(
    case$chrom, IRanges::IRanges(as.numeric(case$start) + 1, as.numeric(case$end)),
    strand = case$strand, gene_name = case$gene_name)
  said <- character()
  rates <- withCallingHandlers(
    factvae:::.check_build(factvae:::.gene_table(annotation, build.peaks), build.peaks,
                           case$gene_name),
    warning = function(w) {
      said <<- c(said, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  data.frame(case = case$case[1], at_tss = sprintf("%.17g", rates$at_tss),
             away = sprintf("%.17g", rates$away), n_genes = rates$n_genes,
             warnings = length(said), message = if (length(said)) said[1] else "")
})
write(do.call(rbind, checks), "r_build.tsv")
"""


# The genome build check: 300 genes on a 30 Mb chromosome, every other one with a peak on its
# TSS, 600 peaks elsewhere; case "moved" shifts every gene 250 kb, off its peaks.
_rng = np.random.default_rng(7)
_TSS = np.sort(_rng.choice(np.arange(500_000, 30_000_000, 40_000), 300, replace=False))
_PEAK_STARTS = np.concatenate([_TSS[::2] - 150, _rng.integers(500_000, 30_000_000, 600)])
BUILD_PEAKS = [f"chr7-{s + 1}-{s + 300}" for s in _PEAK_STARTS]


def _build_cases() -> pd.DataFrame:
    strand = np.where(np.arange(300) % 3 == 0, "-", "+")
    # a minus-strand gene's TSS is its last base: its span ends at the TSS
    start = np.where(strand == "-", _TSS - 15_000 + 1, _TSS)
    genes = pd.DataFrame(
        {"chrom": "chr7", "start": start, "end": start + 15_000, "strand": strand,
         "gene_name": [f"B{i:03d}" for i in range(300)]}
    )  # fmt: skip
    moved = genes.assign(start=genes["start"] + 250_000, end=genes["end"] + 250_000)
    return pd.concat([genes.assign(case="matched"), moved.assign(case="moved")])


def _fail(what: str, detail: str = "") -> None:
    pytest.fail(
        f"The cross-language test could not run R: {what}. It needs R (Rscript and R CMD "
        "INSTALL) with the R package's dependencies (Debian: r-base-core r-cran-seuratobject "
        "r-cran-reticulate r-bioc-genomicranges r-cran-matrix; see inst/setup/). " + detail[-3000:],
        pytrace=False,
    )


@pytest.fixture(scope="module")
def r_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the R side once: install the R package from this checkout, then the script."""
    r_bin = shutil.which("R")
    rscript = shutil.which("Rscript")
    if r_bin is None or rscript is None:
        _fail("R and Rscript are not on the PATH")
    library = tmp_path_factory.mktemp("r-library")
    work = tmp_path_factory.mktemp("cross-language")
    env = {
        **os.environ,
        "R_LIBS": str(library),
        "RETICULATE_PYTHON": sys.executable,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        "LC_ALL": "C.UTF-8",
    }
    install = subprocess.run(
        [r_bin, "CMD", "INSTALL", "--no-test-load", "--no-docs", "-l", str(library), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if install.returncode != 0:
        _fail("R CMD INSTALL of the checkout failed", install.stdout + install.stderr)

    pd.DataFrame({"name": GOOD_NAMES}).to_csv(work / "good.tsv", sep="\t", index=False)
    pd.DataFrame({"name": BAD_NAMES}).to_csv(work / "bad.tsv", sep="\t", index=False)
    rows = []
    for case, (genes, peaks, _) in enumerate(CHROM_CASES):
        for k in range(max(len(genes), len(peaks))):
            rows.append(
                {
                    "case": f"case{case}",
                    "gene_chrom": genes[k] if k < len(genes) else "",
                    "peak_chrom": peaks[k] if k < len(peaks) else "",
                }
            )
    pd.DataFrame(rows).to_csv(work / "chroms.tsv", sep="\t", index=False)
    GENES.to_csv(work / "genes.tsv", sep="\t", index=False)
    pd.DataFrame({"name": PEAKS}).to_csv(work / "peaks.tsv", sep="\t", index=False)
    pd.DataFrame({"upstream": UPSTREAMS}).to_csv(work / "upstreams.tsv", sep="\t", index=False)
    _build_cases().to_csv(work / "build_genes.tsv", sep="\t", index=False)
    pd.DataFrame({"name": BUILD_PEAKS}).to_csv(work / "build_peaks.tsv", sep="\t", index=False)
    script = work / "cross_language.R"
    script.write_text(R_SCRIPT)
    run = subprocess.run(
        [rscript, str(script), str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if run.returncode != 0:
        _fail("the R side of the test failed", run.stdout + run.stderr)
    return work


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, sep="\t", dtype=str, keep_default_na=False)


def test_peak_names_are_read_alike_and_by_signacs_rule(r_results: Path) -> None:
    python = parse_peak_names(GOOD_NAMES)
    ours = list(zip(python["chrom"], python["start"].tolist(), python["end"].tolist()))
    assert ours == GOOD_RANGES
    r = _read(r_results, "r_good.tsv")
    assert r["name"].tolist() == GOOD_NAMES
    theirs = list(zip(r["chrom"], r["start"].astype(int), r["end"].astype(int)))
    assert theirs == GOOD_RANGES
    # Names written for unnamed ranges read back to the same ranges, on both sides.
    formatted = _read(r_results, "r_formatted.tsv")["name"].tolist()
    again = parse_peak_names(formatted)
    assert list(zip(again["chrom"], again["start"], again["end"])) == GOOD_RANGES
    assert formatted[0] == "chr1-1000-1500" and formatted[4] == "1-2000-2000"


def test_bad_peak_names_get_the_same_error(r_results: Path) -> None:
    r = _read(r_results, "r_bad.tsv").set_index("name")["message"]
    for name in BAD_NAMES:
        with pytest.raises(FactVAEInputError) as caught:
            parse_peak_names([name])
        assert r[name] == str(caught.value).replace("\n", " "), name


def test_chromosome_names_are_harmonised_alike(r_results: Path) -> None:
    r = _read(r_results, "r_chroms.tsv")
    for case, (genes, peaks, expected) in enumerate(CHROM_CASES):
        assert harmonise_chromosome_names(genes, peaks).tolist() == expected, case
        assert r.loc[r["case"] == f"case{case}", "chrom"].tolist() == expected, case


def test_gene_to_peak_pairs_are_identical(r_results: Path) -> None:
    r = _read(r_results, "r_pairs.tsv")
    peaks = pd.DataFrame(index=pd.Index(PEAKS))  # coordinates read from the names
    for upstream in UPSTREAMS:
        prior = gene_to_peak(GENES, peaks, upstream=upstream)
        ours = set(map(tuple, prior.pairs().to_numpy()))
        rows = r[r["upstream"].astype(float) == upstream]
        theirs = set(zip(rows["gene"], rows["peak"]))
        assert theirs == ours, upstream
        if upstream in EXPECTED_PAIRS:
            assert ours == EXPECTED_PAIRS[upstream], upstream
        genes = _read(r_results, f"r_genes_{upstream}.tsv")["gene"].tolist()
        assert genes == list(prior.genes)
        assert genes == ["PLUS", "MINUS", "NOSTRAND", "DUP", "TXG", "MITO", "XG"]


def test_the_genome_build_check_gives_one_answer(r_results: Path) -> None:
    """R's RunFactVAE warns through the Python rule: the same rates and the same one line."""
    r = _read(r_results, "r_build.tsv").set_index("case")
    peaks = parse_peak_names(BUILD_PEAKS)
    cases = _build_cases()
    for case, should_warn in (("matched", False), ("moved", True)):
        genes = cases[cases["case"] == case].set_index("gene_name")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rates = warn_if_other_build(genes, peaks)
        assert rates.looks_like_another_build == should_warn, case
        assert float(r.loc[case, "at_tss"]) == rates.at_tss, case
        assert float(r.loc[case, "away"]) == rates.away, case
        assert int(r.loc[case, "n_genes"]) == rates.n_genes == 300, case
        assert int(r.loc[case, "warnings"]) == len(caught) == int(should_warn), case
        if should_warn:
            assert r.loc[case, "message"] == str(caught[0].message) == rates.message()
