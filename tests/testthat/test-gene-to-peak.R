pairs_of <- function(g2p) {
  linked <- Matrix::which(g2p != 0, arr.ind = TRUE)
  sort(paste(rownames(g2p)[linked[, 1]], colnames(g2p)[linked[, 2]]))
}

# GeneToPeak's rule is the Python core's (factvae.gene_to_peak), so these tests need it; the
# cross-language test (tests/python/data/test_cross_language.py) holds both sides to one output.

test_that("GeneToPeak links gene bodies extended upstream on the gene's strand", {
  skip_if_no_core()
  genes <- GenomicRanges::GRanges(
    "chr1", IRanges::IRanges(c(10001, 50001), c(20000, 60000)), strand = c("+", "-"),
    gene_name = c("PLUS", "MINUS"))
  peaks <- c(
    "chr1-8500-8600",   # 1.4-1.5 kb before PLUS's TSS: in its locus
    "chr1-7000-7500",   # 2.5 kb before PLUS's TSS: outside
    "chr1-20500-20600", # after PLUS's end (downstream): outside
    "chr1-61000-61500", # 1-1.5 kb after MINUS's end, i.e. upstream of its TSS: in
    "chr1-48000-48500", # before MINUS's start, i.e. downstream: outside
    "chr1-55000-55100", # inside MINUS's body
    "chr2-10500-10600") # right place, wrong chromosome
  g2p <- GeneToPeak(genes, peaks)
  expect_s4_class(g2p, "dgCMatrix")
  expect_identical(dimnames(g2p), list(c("PLUS", "MINUS"), peaks))
  expect_identical(pairs_of(g2p), sort(c("PLUS chr1-8500-8600", "MINUS chr1-61000-61500",
                                         "MINUS chr1-55000-55100")))
  expect_true(all(g2p@x == 1))
  # Without the upstream extension only the body counts.
  expect_identical(pairs_of(GeneToPeak(genes, peaks, upstream = 0)), "MINUS chr1-55000-55100")
  expect_identical(pairs_of(GeneToPeak(genes, peaks, upstream = 3000)),
                   sort(c("PLUS chr1-8500-8600", "PLUS chr1-7000-7500", "MINUS chr1-61000-61500",
                          "MINUS chr1-55000-55100")))
})

test_that("GeneToPeak accepts peak GRanges, naming unnamed ones chr-start-end", {
  skip_if_no_core()
  genes <- GenomicRanges::GRanges("chr1", IRanges::IRanges(500, 900), strand = "+",
                                  gene_name = "EARLY")
  peaks <- GenomicRanges::GRanges("chr1", IRanges::IRanges(c(1, 950), c(100, 1000)))
  g2p <- GeneToPeak(genes, peaks)
  expect_identical(colnames(g2p), c("chr1-1-100", "chr1-950-1000"))
  expect_identical(pairs_of(g2p), "EARLY chr1-1-100")
})

test_that("GeneToPeak harmonises chromosome names and errors when none match", {
  skip_if_no_core()
  peaks <- c("chr1-3500-3800", "chr1-9000-9100", "chrM-10-50")
  with.chr <- GeneToPeak(toy_annotation(), peaks)
  without <- GeneToPeak(toy_annotation(c("1", "1", "2")), peaks)
  expect_identical(pairs_of(without), pairs_of(with.chr))
  expect_gt(length(pairs_of(with.chr)), 0)
  mito <- GenomicRanges::GRanges("MT", IRanges::IRanges(1, 100), strand = "+", gene_name = "ND1")
  expect_identical(pairs_of(GeneToPeak(mito, peaks)), "ND1 chrM-10-50")
  # And the other way: an annotation with "chr" against peaks without it.
  expect_identical(pairs_of(GeneToPeak(toy_annotation(), sub("^chr", "", peaks))),
                   sub(" chr", " ", pairs_of(with.chr)))
  expect_error(GeneToPeak(toy_annotation(c("2L", "2L", "3R")), peaks),
               "chromosome names \\(e.g. 2L, 3R\\) match none of the peaks'")
})

test_that("GeneToPeak keeps the longest span of a repeated gene, or its longest transcript", {
  skip_if_no_core()
  peaks <- c("chr1-100-200", "chr1-5000-5100")
  repeated <- GenomicRanges::GRanges("chr1", IRanges::IRanges(c(3000, 3000), c(3500, 6000)),
                                     strand = "+", gene_name = c("G", "G"))
  g2p <- GeneToPeak(repeated, peaks)
  expect_identical(rownames(g2p), "G")
  expect_identical(pairs_of(g2p), "G chr1-5000-5100")
  # Signac-style annotation: exons of two transcripts. T1 spans 3000-7000 though its exons are
  # short; the longest single row (T2's exon, 3000-3400) would reach no peak.
  exons <- GenomicRanges::GRanges(
    "chr1", IRanges::IRanges(c(3000, 6800, 3000), c(3200, 7000, 3400)), strand = "+",
    gene_name = "G", tx_id = c("T1", "T1", "T2"), type = "exon")
  expect_identical(pairs_of(GeneToPeak(exons, peaks)), "G chr1-5000-5100")
})

test_that("GeneToPeak rejects what it cannot read", {
  skip_if_no_core()
  expect_error(GeneToPeak(data.frame(chrom = "chr1"), "chr1-1-2"), "must be a GRanges")
  unnamed <- GenomicRanges::GRanges("chr1", IRanges::IRanges(1, 10))
  expect_error(GeneToPeak(unnamed, "chr1-1-2"), "needs a gene_name column")
  expect_error(GeneToPeak(toy_annotation(), "chr1-1-2", upstream = -5), "upstream must be")
  expect_error(GeneToPeak(toy_annotation(), 1:3), "peaks must be a GRanges")
})

test_that("GeneToPeak agrees with the Python factvae.gene_to_peak on the real data", {
  skip_if_no_core()
  skip_if_no_real_data()
  dir <- real_data_dir()
  bed <- utils::read.table(file.path(dir, "peaks.bed"), sep = "\t")
  peaks <- GenomicRanges::GRanges(bed[[1]], IRanges::IRanges(bed[[2]] + 1, bed[[3]]))
  # Named as the core names BED peaks: the 1-based start in the name (Signac's reading).
  names(peaks) <- sprintf("%s-%.0f-%.0f", bed[[1]], bed[[2]] + 1, bed[[3]])
  bed <- utils::read.table(file.path(dir, "genes.bed"), sep = "\t", quote = "",
                           comment.char = "")
  genes <- GenomicRanges::GRanges(bed[[1]], IRanges::IRanges(bed[[2]] + 1, bed[[3]]),
                                  strand = bed[[5]], gene_name = bed[[4]])
  ours <- GeneToPeak(genes, peaks)

  python <- reticulate::import("factvae", convert = FALSE)
  theirs <- python$gene_to_peak(file.path(dir, "genes.bed"), file.path(dir, "peaks.bed"),
                                upstream = 2000L)
  bridge <- .factvae_core()$bridge
  theirs <- .dgc(bridge$csc_parts(theirs$matrix),
                 reticulate::py_to_r(theirs$genes$tolist()),
                 reticulate::py_to_r(theirs$peaks$tolist()))
  expect_identical(dim(ours), dim(theirs))
  expect_setequal(rownames(ours), rownames(theirs))
  expect_identical(colnames(ours), colnames(theirs))
  expect_gt(length(ours@x), 10000)
  expect_identical(pairs_of(ours), pairs_of(theirs))
})
