# The real SNARE-seq cell-line mixture (4 cell lines), trained once per test run. Skipped unless
# FACTVAE_FULL_TESTS=true, as training takes minutes.

test_that("ReadMultiome builds the RNA and ATAC assays, cell types and annotation", {
  skip_if_no_real_data()
  object <- real_object()
  expect_equal(dim(object[["RNA"]]), c(18666, 1047))  # doubles on an Assay5
  expect_equal(dim(object[["ATAC"]]), c(27399, 1047))
  expect_identical(sort(table(object$cell_type), decreasing = TRUE)[[1]], 385L)
  # peaks.bed's first line is chr2 148881654 148881927 (0-based start): the name reads back
  # to it the Signac way, chrom-(start + 1)-end
  expect_identical(rownames(object[["ATAC"]])[1], "chr2-148881655-148881927")
  annotation <- SeuratObject::Misc(object, "annotation")
  expect_length(annotation, 18214)  # genes.bed: the hg38 genes with a coordinate
  # genes.bed's 0-based start becomes the 1-based GRanges start (A2M at chr12:9067663 in hg38).
  expect_identical(GenomicRanges::start(annotation)[annotation$gene_name == "A2M"], 9067664L)
})

# The shared hg38 GENCODE table's neighbour, the hg19 one: genes of the other build.
hg19_annotation <- function() {
  file <- file.path(real_data_dir(), "..", "annotations", "gene_annotation_hg19_gencode.bed.gz")
  skip_if_not(file.exists(file), paste("the hg19 annotation is not at", file))
  genes <- utils::read.table(gzfile(file), sep = "\t", quote = "", comment.char = "",
                             colClasses = c("character", "numeric", "numeric", "character",
                                            "character", "character"))
  # named as ReadMultiome names the RNA features (Seurat turns "_" into "-")
  .bed_genes(genes[[1]], genes[[2]], genes[[3]], gsub("_", "-", genes[[4]], fixed = TRUE),
             genes[[5]])
}

test_that("the build check passes genes.bed (hg38) and flags the hg19 genes, naming both rates", {
  skip_if_no_core()
  skip_if_no_real_data()
  object <- real_object()
  genes <- rownames(object[["RNA"]])
  peaks <- PeakRanges(rownames(object[["ATAC"]]))
  # No suppressWarnings: RunFactVAE's own prior step, with the annotation ReadMultiome read.
  expect_no_warning(prior <- .prior(object, "ATAC", SeuratObject::Misc(object, "annotation"),
                                    NULL, genes, peaks, 2000))
  expect_gt(nrow(prior$pairs), 10000)
  expect_warning(.prior(object, "ATAC", hg19_annotation(), NULL, genes, peaks, 2000),
                 paste0("another genome build than the peaks: 7\\.3% of 17,524 annotated genes ",
                        "have a peak within 1,000 bp of their TSS against 4\\.3% 100-200 kb ",
                        "away \\(1\\.7x.*genome build mismatch"))
  rates <- .check_build(.gene_table(SeuratObject::Misc(object, "annotation"), peaks), peaks, genes)
  expect_gt(rates$ratio, 10)
})

test_that("a real-data RunFactVAE gives no genome build warning", {
  skip_unless_full_tests()
  skip_if_no_core()
  skip_if_no_real_data()
  real_fit()
  expect_false(any(grepl("genome build", fixtures$real.warnings)))
})

test_that("on real data the joint embedding separates the cell lines (ARI >= 0.85)", {
  skip_unless_full_tests()
  skip_if_no_core()
  skip_if_no_real_data()
  fit <- real_fit()
  expect_identical(dim(SeuratObject::Embeddings(fit, "factvae")), c(1047L, 50L))
  expect_identical(dim(SeuratObject::Embeddings(fit, "factvae.rna")), c(1047L, 50L))
  expect_identical(dim(SeuratObject::Embeddings(fit, "factvae.atac")), c(1047L, 50L))
  for (name in c("factvae", "factvae.rna", "factvae.atac")) {
    expect_identical(rownames(SeuratObject::Embeddings(fit, name)), colnames(real_object()))
  }
  set.seed(0)
  clusters <- stats::kmeans(SeuratObject::Embeddings(fit, "factvae"), centers = 4,
                            nstart = 20)$cluster
  expect_gte(ClusterAgreement(clusters, fit$cell_type)[["ARI"]], 0.85)
})

test_that("on real data the augmented assay has the input's cells and peaks", {
  skip_unless_full_tests()
  skip_if_no_core()
  skip_if_no_real_data()
  fit <- real_fit()
  values <- layer_data(fit, "factvaeATAC", "data")
  expect_s4_class(values, "dgCMatrix")
  expect_identical(colnames(values), colnames(fit))
  expect_identical(rownames(values), rownames(fit[["ATAC"]]))
  expect_true(all(values@x >= 0.05))
})

test_that("on real data every link joins a gene to a peak of the input", {
  skip_unless_full_tests()
  skip_if_no_core()
  skip_if_no_real_data()
  links <- FactVAELinks(real_fit())
  expect_s4_class(links, "GRanges")
  expect_true(all(c("score", "gene", "peak", "zscore", "pvalue", "qvalue") %in%
                    names(GenomicRanges::mcols(links))))
  expect_gt(length(links), 0)
  expect_true(all(links$gene %in% rownames(real_object()[["RNA"]])))
  expect_true(all(links$peak %in% rownames(real_object()[["ATAC"]])))
  expect_true(all(links$pvalue <= 0.05))
  expect_true(all(GenomicRanges::width(links) <= 150001 + 1000))
  # links reach genes outside the 2,000 modelled ones (every gene detected in any cell,
  # the core's link_min_cells), each pair carrying its gene's detection share, which
  # agrees with the counts
  expect_true(any(!links$modelled) && any(links$modelled))
  counts <- layer_data(real_object(), "RNA", "counts")
  cells.detected <- Matrix::rowSums(counts[links$gene, , drop = FALSE] > 0)
  expect_equal(links$gene_detection, unname(cells.detected) / ncol(counts), tolerance = 1e-6)
  core <- .factvae_core()$bridge$default_settings()
  expect_gte(min(cells.detected), core$link_min_cells)
  expect_true(any(cells.detected < core$min_cells))  # genes the model itself leaves out
  expect_true(all(c("pvalue_cis", "qvalue_cis", "covariation", "contact", "activity") %in%
                    names(GenomicRanges::mcols(links))))
})
