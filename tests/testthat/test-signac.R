# The Signac path: peak ranges, annotation and Links from a ChromatinAssay. Skipped when Signac
# is not installed (it cannot be on machines without CRAN).

chromatin_object <- function() {
  cached("chromatin", function() {
    object <- SimulateMultiome(n.cells = 150, seed = 2)
    annotation <- SeuratObject::Misc(object, "annotation")
    # Signac expects these columns in an annotation.
    annotation$gene_id <- annotation$gene_name
    annotation$tx_id <- annotation$gene_name
    annotation$gene_biotype <- "protein_coding"
    annotation$type <- "exon"
    counts <- layer_data(object, "ATAC", "counts")
    # A genome as users set it, offline: a Seqinfo rather than a UCSC name (which downloads).
    chroms <- unique(c(sub("-[0-9]+-[0-9]+$", "", rownames(counts)),
                       as.character(GenomicRanges::seqnames(annotation))))
    seqinfo <- GenomeInfoDb::Seqinfo(chroms, genome = "hg19")
    GenomeInfoDb::seqlevels(annotation) <- chroms
    GenomeInfoDb::seqinfo(annotation) <- seqinfo
    object[["ATAC"]] <- Signac::CreateChromatinAssay(
      counts = counts, sep = c("-", "-"), genome = seqinfo, annotation = annotation,
      fragments = fragment_file(counts), verbose = FALSE)
    object
  })
}

# A tabix-indexed fragment file holding each count of the matrix as that many fragments inside
# its peak, so that CoveragePlot has reads to draw.
fragment_file <- function(counts) {
  counts <- methods::as(counts, "TsparseMatrix")
  ranges <- PeakRanges(rownames(counts))
  n <- as.integer(counts@x)
  peak <- rep(counts@i + 1L, n)
  starts <- GenomicRanges::start(ranges)[peak] + sequence(n) * 3L
  frame <- data.frame(chrom = as.character(GenomicRanges::seqnames(ranges))[peak],
                      start = starts, end = pmin(starts + 50L, GenomicRanges::end(ranges)[peak]),
                      cell = colnames(counts)[rep(counts@j + 1L, n)], count = 1L)
  frame <- frame[order(frame$chrom, frame$start), ]
  path <- tempfile(fileext = ".tsv")
  utils::write.table(frame, path, sep = "\t", quote = FALSE, row.names = FALSE,
                     col.names = FALSE)
  zipped <- Rsamtools::bgzip(path, paste0(path, ".gz"))
  Rsamtools::indexTabix(zipped, format = "bed")
  zipped
}

# One fit on the ChromatinAssay, shared by the tests below.
chromatin_fit <- function() {
  cached("chromatin.fit", function() {
    # It warns about features without counts (tested in test-run-factvae.R).
    suppressWarnings(RunFactVAE(
      chromatin_object(), n.latent = 5, n.hvg = 200, max.epochs = 2, augment = TRUE,
      augment.threshold = 0.01, links = TRUE, link.pvalue = 1, verbose = FALSE))
  })
}

test_that("with Signac, ranges and annotation come from the ChromatinAssay and links are set", {
  skip_if_not_installed("Signac")
  skip_if_no_core()
  object <- chromatin_object()
  fit <- chromatin_fit()
  # the joint embedding averages the halves: n.latent columns
  expect_identical(dim(SeuratObject::Embeddings(fit, "factvae")), c(150L, 5L))
  links <- Signac::Links(fit[["ATAC"]])
  expect_identical(links, FactVAELinks(fit))
  expect_true(all(links$peak %in% rownames(fit[["ATAC"]])))
  augmented <- fit[["factvaeATAC"]]
  expect_s4_class(augmented, "ChromatinAssay")
  source <- Signac::granges(fit[["ATAC"]])
  names(source) <- rownames(fit[["ATAC"]])
  expect_identical(as.character(Signac::granges(augmented)),
                   unname(as.character(source[rownames(augmented)])))
  expect_identical(length(Signac::Annotation(augmented)),
                   length(Signac::Annotation(object[["ATAC"]])))
})

test_that("with Signac, peak ranges are read from the assay, not the names", {
  skip_if_not_installed("Signac")
  skip_if_no_core()
  object <- chromatin_object()
  peaks <- rownames(object[["ATAC"]])
  ranges <- .assay_peak_ranges(object, "ATAC", peaks)
  expect_identical(names(ranges), peaks)
  expect_identical(unname(as.character(ranges)),
                   as.character(Signac::granges(object[["ATAC"]])))
})

# The rows of issue 11's table: what a Signac user runs next on the augmented assay.

test_that("Signac's RunTFIDF, FindTopFeatures and RunSVD analyse the augmented assay", {
  skip_if_not_installed("Signac")
  skip_if_no_core()
  fit <- chromatin_fit()
  fit <- Signac::RunTFIDF(fit, assay = "factvaeATAC", verbose = FALSE)
  tfidf <- layer_data(fit, "factvaeATAC", "data")
  expect_identical(dim(tfidf), dim(layer_data(fit, "factvaeATAC", "counts")))
  fit <- Signac::FindTopFeatures(fit, assay = "factvaeATAC", min.cutoff = "q50", verbose = FALSE)
  top <- SeuratObject::VariableFeatures(fit[["factvaeATAC"]])
  expect_gt(length(top), 0.3 * nrow(fit[["factvaeATAC"]]))
  fit <- Signac::RunSVD(fit, assay = "factvaeATAC", n = 10, reduction.name = "lsi.aug",
                        verbose = FALSE)
  expect_identical(dim(SeuratObject::Embeddings(fit, "lsi.aug")), c(150L, 10L))
})

test_that("the augmented assay has nCount_/nFeature_ and CoveragePlot draws it", {
  skip_if_not_installed("Signac")
  skip_if_no_core()
  fit <- chromatin_fit()
  values <- layer_data(fit, "factvaeATAC", "counts")
  expect_equal(unname(fit$nCount_factvaeATAC), unname(Matrix::colSums(values)))
  expect_equal(unname(fit$nFeature_factvaeATAC), unname(Matrix::colSums(values > 0)))
  links <- FactVAELinks(fit)
  region <- links$peak[which.max(links$score)]
  plot <- suppressWarnings(Signac::CoveragePlot(fit, region = region, assay = "factvaeATAC",
                                                group.by = "cell_type", extend.upstream = 5000,
                                                extend.downstream = 5000))
  expect_s3_class(plot, "ggplot")
  grDevices::pdf(NULL)
  on.exit(grDevices::dev.off())
  # Signac's gene track clips a gene that runs out of the window (a segment ggplot drops
  # with a warning); any other warning, as from the coverage of the augmented values, fails.
  said <- character()
  withCallingHandlers(print(plot), warning = function(w) {
    said <<- c(said, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  expect_true(all(grepl("missing values \\(`geom_segment\\(\\)`\\)", said)), info = said)
})

test_that("the augmented assay keeps the source's genome, seqinfo, ranges and motifs", {
  skip_if_not_installed("Signac")
  skip_if_no_core()
  fit <- chromatin_fit()
  expect_identical(unique(GenomeInfoDb::genome(fit[["factvaeATAC"]])), "hg19")
  expect_identical(GenomeInfoDb::seqinfo(fit[["factvaeATAC"]]),
                   GenomeInfoDb::seqinfo(fit[["ATAC"]]))
  expect_length(Signac::Fragments(fit[["factvaeATAC"]]), 1)
  # Motifs: a Motif object on the source is subset to the augmented peaks.
  object <- chromatin_object()
  peaks <- rownames(object[["ATAC"]])
  hits <- Matrix::sparseMatrix(i = seq_along(peaks), j = rep(1:2, length.out = length(peaks)),
                               x = 1, dimnames = list(peaks, c("MA0001.1", "MA0002.1")))
  Signac::Motifs(object[["ATAC"]]) <- Signac::CreateMotifObject(data = hits)
  path <- SeuratObject::Tool(fit, slot = "RunFactVAE")$model.path
  modelled <- rownames(fit[["factvaeATAC"]])[1:40]
  again <- RunFactVAE(object, model = path, augment = TRUE, augment.threshold = 0.01,
                      augment.features = modelled, verbose = FALSE)
  motifs <- Signac::Motifs(again[["factvaeATAC"]])
  expect_s4_class(motifs, "Motif")
  expect_identical(rownames(motifs), modelled)
})

test_that("links are sorted, carry the peaks' seqinfo and are read by Signac's link tools", {
  skip_if_not_installed("Signac")
  skip_if_no_core()
  fit <- chromatin_fit()
  links <- Signac::Links(fit[["ATAC"]])
  expect_false(is.unsorted(links))
  expect_identical(GenomeInfoDb::seqinfo(links), GenomeInfoDb::seqinfo(fit[["ATAC"]]))
  expect_identical(Signac::Links(fit[["factvaeATAC"]]), links)
  best <- links[which.max(links$score)]
  region <- paste(GenomicRanges::seqnames(best), GenomicRanges::start(best) - 1000,
                  GenomicRanges::end(best) + 1000, sep = "-")
  # Signac 1.11's LinkPlot reads the default assay's links whatever its assay argument says.
  SeuratObject::DefaultAssay(fit) <- "ATAC"
  expect_s3_class(Signac::LinkPlot(fit, region = region, assay = "ATAC"), "ggplot")
  if ("GetLinkedPeaks" %in% getNamespaceExports("Signac")) {
    expect_true(best$peak %in% Signac::GetLinkedPeaks(fit, features = best$gene, assay = "ATAC",
                                                      min.abs.score = 0))
    expect_true(best$gene %in% Signac::GetLinkedGenes(fit, features = best$peak, assay = "ATAC",
                                                      min.abs.score = 0))
  }
})

test_that("peaks and annotation of different genomes are refused before any work, naming both", {
  skip_if_not_installed("Signac")
  object <- chromatin_object()
  annotation <- Signac::Annotation(object[["ATAC"]])
  hg38 <- annotation
  GenomeInfoDb::genome(hg38) <- "hg38"
  before <- object
  expect_error(RunFactVAE(object, annotation = hg38),
               "Genome builds differ: hg19 for the ATAC assay 'ATAC', hg38 for the annotation")
  expect_identical(object, before)
  # An hg38-tagged ChromatinAssay with an hg19 annotation (set behind Signac's own check).
  tagged <- object
  info <- GenomeInfoDb::seqinfo(tagged[["ATAC"]])
  GenomeInfoDb::genome(info) <- "hg38"
  methods::slot(tagged[["ATAC"]], "seqinfo") <- info
  expect_error(RunFactVAE(tagged, annotation = annotation),
               "hg38 for the ATAC assay 'ATAC', hg19 for the annotation")
  # Existing links of another genome.
  linked <- object
  old <- GenomicRanges::GRanges("chr1", IRanges::IRanges(1, 10), score = 1, gene = "g",
                                peak = "p")
  GenomeInfoDb::genome(old) <- "mm10"
  Signac::Links(linked[["ATAC"]]) <- old
  expect_error(RunFactVAE(linked),
               "hg19 for the ATAC assay 'ATAC', mm10 for the Links\\(\\) of the ATAC assay")
})
