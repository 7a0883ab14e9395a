# Genome build checks that need no Signac: with no genome named, a prior whose genes' TSSs hit
# peaks hardly more often than elsewhere is flagged (the ChromatinAssay cases are in
# test-signac.R).

# 300 genes on chr1-3, every other one with a peak at its TSS, and peaks scattered elsewhere.
tss_fixture <- function() {
  set.seed(5)
  n <- 300
  chrom <- paste0("chr", rep(1:3, length.out = n))
  tss <- sort(sample(seq(1e6, 1e8, by = 5e4), n))
  strand <- rep(c("+", "-"), length.out = n)
  genes <- GenomicRanges::GRanges(chrom, IRanges::IRanges(
    ifelse(strand == "+", tss, tss - 20000), ifelse(strand == "+", tss + 20000, tss)),
    strand = strand, gene_name = sprintf("G%03d", seq_len(n)))
  at <- seq(1, n, by = 2)
  starts <- c(tss[at] - 200, sample(seq(1e6, 1e8, by = 997), 1000))
  peaks <- GenomicRanges::GRanges(c(chrom[at], paste0("chr", sample(1:3, 1000, TRUE))),
                                  IRanges::IRanges(starts, starts + 400))
  names(peaks) <- paste(GenomicRanges::seqnames(peaks), GenomicRanges::start(peaks),
                        GenomicRanges::end(peaks), sep = "-")
  list(genes = genes, peaks = peaks, names = genes$gene_name)
}

test_that("an annotation whose TSSs miss the peaks gets a warning naming the genome build", {
  skip_if_no_core()  # .gene_table tidies the annotation with the Python core's rule
  fixture <- tss_fixture()
  table <- .gene_table(fixture$genes, fixture$peaks)
  expect_silent(rates <- .check_build(table, fixture$peaks, fixture$names))
  expect_gt(rates$ratio, 5)
  expect_false(rates$warned)
  shifted <- GenomicRanges::shift(fixture$genes, 3e5 + 7919)
  expect_warning(.check_build(.gene_table(shifted, fixture$peaks), fixture$peaks, fixture$names),
                 "looks like another genome build.*genome build mismatch")
  # Too few genes to judge: no warning.
  expect_silent(.check_build(table[1:50, ], fixture$peaks, fixture$names))
  # Only the annotated RNA genes count: the same table with half its genes not in the RNA assay.
  half <- .check_build(table, fixture$peaks, fixture$names[1:150])
  expect_identical(half$n_genes, 150L)
})

test_that("RunFactVAE warns before training when the prior looks like another build's", {
  skip_if_no_core()
  fixture <- tss_fixture()
  shifted <- GenomicRanges::shift(fixture$genes, 3e5 + 7919)
  object <- toy_object()
  # (It may then also find no prior pairs at all: that error comes after the warning.)
  expect_warning(tryCatch(.prior(object, "ATAC", shifted, NULL, fixture$names, fixture$peaks,
                                 2000), error = function(e) NULL),
                 "another genome build")
  # A genome named on the annotation alone (a plain Assay names none): no conflict, no error.
  named <- fixture$genes
  GenomeInfoDb::genome(named) <- "hg38"
  expect_identical(.check_genomes(object[["ATAC"]], "ATAC", named), "hg38")
  expect_identical(.check_genomes(object[["ATAC"]], "ATAC", fixture$genes), character())
})
