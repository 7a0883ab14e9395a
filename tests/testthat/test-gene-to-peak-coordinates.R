# Peak names, chromosome names and the G2P rule at the base level. The rules are the Python
# core's (factvae.data.genomics, factvae.data.prior); these tests pin what R gets from them:
# Signac's 1-based, inclusive reading of peak names. tests/python/data/test_cross_language.py
# feeds the same inputs to both languages and requires identical output.

pairs_at <- function(g2p) {
  linked <- Matrix::which(g2p != 0, arr.ind = TRUE)
  sort(paste(rownames(g2p)[linked[, 1]], colnames(g2p)[linked[, 2]]))
}

test_that("PeakRanges reads names with -, : and _ as Signac does (1-based, inclusive)", {
  skip_if_no_core()
  names <- c("chr1-1000-1500", "chr1:1000-1500", "chr1_1000_1500", "chr1:1000_1500")
  ranges <- PeakRanges(names)
  expect_identical(names(ranges), names)
  expect_identical(as.character(GenomicRanges::seqnames(ranges)), rep("chr1", 4))
  expect_identical(GenomicRanges::start(ranges), rep(1000L, 4))
  expect_identical(GenomicRanges::end(ranges), rep(1500L, 4))
  expect_identical(GenomicRanges::width(ranges), rep(501L, 4))
  # end == start is a 1-bp peak; a start of 0 (a name written from BED coordinates) is base 1.
  one <- PeakRanges(c("chrX-77-77", "MT-0-100"))
  expect_identical(GenomicRanges::width(one), c(1L, 100L))
  expect_identical(GenomicRanges::start(one), c(77L, 1L))
  # The Python core gets 0-based, half-open coordinates.
  expect_identical(.peak_var(one)$start, c(76L, 0L))
  expect_identical(.peak_var(one)$end, c(77L, 100L))
  expect_identical(length(PeakRanges(character())), 0L)
})

test_that("PeakRanges refuses names that are not coordinates, with the core's message", {
  skip_if_no_core()
  expect_error(PeakRanges(c("chr1-100-200", "peak7", "chr1-5-x")),
               "2 of 3 peak names do not parse as 'chr-start-end' \\(e.g. 'peak7', 'chr1-5-x'\\)")
  expect_error(PeakRanges("chr1-500-499"), "end < start")
  expect_error(PeakRanges("chr1-0-0"), "end at 0")
  expect_error(PeakRanges(1:3), "character vector of peak names")
})

test_that("GeneToPeak counts a peak's first and last named bases, and no more", {
  skip_if_no_core()
  # PLUS covers bases 10001..20000 and its locus 8001..20000; MINUS 50001..60000 and
  # 50001..62000.
  genes <- GenomicRanges::GRanges(
    "chr1", IRanges::IRanges(c(10001, 50001), c(20000, 60000)), strand = c("+", "-"),
    gene_name = c("PLUS", "MINUS"))
  peaks <- c("chr1-8000-8000", "chr1-8001-8001", "chr1-20000-20000", "chr1_20001_20001",
             "chr1:50000-50000", "chr1-62000-62000", "chr1-62001-62100", "chr1-7000-8001")
  expect_identical(pairs_at(GeneToPeak(genes, peaks)),
                   sort(c("PLUS chr1-8001-8001", "PLUS chr1-20000-20000",
                          "PLUS chr1-7000-8001", "MINUS chr1-62000-62000")))
  expect_identical(pairs_at(GeneToPeak(genes, peaks, upstream = 0)),
                   "PLUS chr1-20000-20000")
  expect_error(GeneToPeak(genes, peaks, upstream = 1.5), "whole number")
})

test_that("GeneToPeak harmonises chr1/1 and chrM/MT and keeps names that already match", {
  skip_if_no_core()
  genes <- GenomicRanges::GRanges(c("1", "MT", "X"), IRanges::IRanges(c(100, 100, 100), 200),
                                  strand = "+", gene_name = c("A", "ND1", "XG"))
  peaks <- c("chr1-150-160", "chrM-150-160", "chrX-150-160")
  table <- .gene_table(genes, PeakRanges(peaks))
  expect_identical(table$chrom, c("chr1", "chrM", "chrX"))
  expect_identical(table$start, c(100, 100, 100))
  expect_identical(pairs_at(GeneToPeak(genes, peaks)),
                   c("A chr1-150-160", "ND1 chrM-150-160", "XG chrX-150-160"))
  back <- .gene_table(GenomicRanges::GRanges(c("chr1", "chrM"), IRanges::IRanges(1, 2),
                                             gene_name = c("A", "ND1")),
                      PeakRanges(c("1-1-5", "MT-1-5")))
  expect_identical(back$chrom, c("1", "MT"))
})

test_that("unnamed peak ranges get the name that reads back to them", {
  skip_if_no_core()
  peaks <- GenomicRanges::GRanges(c("chr1", "chr2"), IRanges::IRanges(c(1000, 7), c(1500, 7)))
  named <- .as_peak_ranges(peaks)
  expect_identical(names(named), c("chr1-1000-1500", "chr2-7-7"))
  expect_identical(GenomicRanges::start(PeakRanges(names(named))), GenomicRanges::start(peaks))
})
