# Bad inputs are refused before training starts. Each checks the message names the fix and
# that the object is left as it was. Peak names are read by the Python core (one owner of the
# rule), so tests that reach that step need it.

expect_refused <- function(object, message, ...) {
  before <- object
  expect_error(RunFactVAE(object, ...), message)
  expect_identical(object, before)
}

test_that("PeakRanges reads chr-start-end and chr:start-end names by their last two fields", {
  ranges <- PeakRanges(c("chr1-100-200", "chr2:300-450", "chrUn-gl000220-1-5000-6000"))
  expect_s4_class(ranges, "GRanges")
  expect_identical(names(ranges), c("chr1-100-200", "chr2:300-450", "chrUn-gl000220-1-5000-6000"))
  expect_identical(as.character(GenomicRanges::seqnames(ranges)),
                   c("chr1", "chr2", "chrUn-gl000220-1"))
  expect_identical(GenomicRanges::start(ranges), c(100L, 300L, 5000L))
  expect_identical(GenomicRanges::end(ranges), c(200L, 450L, 6000L))
  expect_error(PeakRanges(c("chr1-100-200", "peak7", "chr1-5-x")),
               "2 of 3 peak names do not parse as 'chr-start-end' \\(e.g. 'peak7', 'chr1-5-x'\\)")
  expect_error(PeakRanges("chr1-500-100"), "end < start")
})

test_that("counts are read as a sparse dgCMatrix with the RNA assay's cell order", {
  object <- toy_object()
  counts <- .assay_counts(object, "ATAC", "atac.assay")
  expect_s4_class(counts, "dgCMatrix")
  expect_identical(dim(counts), c(4L, 20L))
  shuffled <- counts[, rev(colnames(counts))]
  matched <- .match_cells(.assay_counts(object, "RNA", "rna.assay"), shuffled, "RNA", "ATAC")
  expect_identical(colnames(matched$atac), colnames(matched$rna))
  expect_identical(matched$atac, counts)
})

test_that("RunFactVAE refuses a missing assay", {
  expect_refused(toy_object(), "atac.assay = \"peaks\" is not an assay of the object \\(it has: RNA, ATAC\\)",
                 atac.assay = "peaks")
  expect_refused(toy_object(), "rna.assay = \"GEX\" is not an assay", rna.assay = "GEX")
})

test_that("RunFactVAE refuses assays holding different cells", {
  object <- toy_object()
  atac <- layer_data(object, "ATAC", "counts")
  colnames(atac)[1:2] <- c("other1", "other2")
  # Seurat 4 refuses such an assay on assignment; SeuratObject 5 allows it. Build it directly.
  object@assays$ATAC <- SeuratObject::CreateAssayObject(counts = atac)
  expect_refused(object, "Assays 'RNA' and 'ATAC' hold different cells \\(2 only in 'RNA', 2 only in 'ATAC'.*Subset the object",
                 annotation = toy_annotation())
})

test_that("RunFactVAE refuses an assay without counts", {
  object <- toy_object()
  data <- layer_data(object, "RNA", "counts")
  # SeuratObject 5 warns here (assay class changes, no counts to count): the set-up's, not ours.
  suppressWarnings(object[["RNA"]] <- SeuratObject::CreateAssayObject(data = log1p(data)))
  expect_refused(object, "Assay 'RNA' has no raw counts.*create the assay with counts =",
                 annotation = toy_annotation())
})

test_that("RunFactVAE refuses negative counts", {
  object <- toy_object()
  counts <- layer_data(object, "ATAC", "counts")
  counts@x[1] <- -1
  object[["ATAC"]] <- SeuratObject::CreateAssayObject(counts = counts)
  expect_refused(object, "Assay 'ATAC' has negative counts", annotation = toy_annotation())
})

test_that("RunFactVAE refuses peak names that do not parse", {
  object <- toy_object()
  counts <- layer_data(object, "ATAC", "counts")
  rownames(counts) <- paste0("peak", 1:4)
  object[["ATAC"]] <- SeuratObject::CreateAssayObject(counts = counts)
  expect_refused(object, "4 of 4 peak names do not parse.*ChromatinAssay",
                 annotation = toy_annotation())
})

test_that("RunFactVAE harmonises the annotation's chromosome names, and refuses when none match", {
  expect_refused(toy_object(), "match none of the peaks'.*same genome",
                 annotation = toy_annotation(c("2L", "2L", "3R")))
  peaks <- PeakRanges(rownames(toy_object()[["ATAC"]]))
  genes <- c("GENE1", "GENE2", "GENE3")
  prior <- .prior(toy_object(), "ATAC", toy_annotation(c("1", "1", "2")), NULL, genes, peaks,
                  2000)
  expect_identical(prior$genes$chrom, c("chr1", "chr1", "chr2"))
  expect_setequal(paste(prior$pairs$gene, prior$pairs$peak),
                  c("GENE1 chr1-1000-1500", "GENE2 chr1-9000-9600", "GENE3 chr2-5000-5400"))
})

test_that("RunFactVAE refuses a prior in which no gene overlaps a peak", {
  far <- GenomicRanges::GRanges("chr1", IRanges::IRanges(500000, 600000), strand = "+",
                                gene_name = "GENE1")
  expect_refused(toy_object(), "No gene of the RNA assay overlaps a peak of the ATAC assay",
                 annotation = far)
  # Gene names that are not RNA features count as no overlap too.
  renamed <- toy_annotation()
  renamed$gene_name <- c("A", "B", "C")
  expect_refused(toy_object(), "0 of its 3 genes are RNA features", annotation = renamed)
})

test_that("RunFactVAE asks for the genes' coordinates when it has none", {
  expect_refused(toy_object(), "give annotation = a GRanges of genes")
  g2p <- Matrix::sparseMatrix(i = 1, j = 1, x = 1, dims = c(3, 4),
                              dimnames = list(c("GENE1", "GENE2", "GENE3"),
                                              rownames(toy_object()[["ATAC"]])))
  expect_refused(toy_object(), "links = TRUE needs the genes' coordinates", g2p = g2p,
                 links = TRUE)
  anonymous <- g2p
  anonymous@Dimnames <- list(NULL, NULL)
  expect_refused(toy_object(), "g2p must be a genes x peaks Matrix with gene names",
                 g2p = anonymous)
})

test_that("RunFactVAE refuses bad settings and names before training", {
  ann <- toy_annotation()
  expect_refused(toy_object(), "Unknown argument\\(s\\) to RunFactVAE: latent.dims",
                 latent.dims = 3, annotation = ann)
  expect_refused(toy_object(), "max.epochs must be a whole number >= 1", max.epochs = 2.5,
                 annotation = ann)
  expect_refused(toy_object(), "early.stopping must be TRUE or FALSE", early.stopping = "yes",
                 annotation = ann)
  expect_refused(toy_object(), "validation.fraction must be a number",
                 validation.fraction = "10%", annotation = ann)
  expect_refused(toy_object(), "patience must be a whole number >= 1", patience = 0,
                 annotation = ann)
  expect_refused(toy_object(), "preset must be one string", preset = c("a", "b"),
                 annotation = ann)
  expect_refused(toy_object(), "n.latent must be a whole number >= 1", n.latent = 0,
                 annotation = ann)
  expect_refused(toy_object(), "atac.weight must be a positive number", atac.weight = 0,
                 annotation = ann)
  expect_refused(toy_object(), "precision must be \"auto\", \"float32\" or \"bf16\"",
                 precision = "fp16", annotation = ann)
  expect_refused(toy_object(), "reduction.key must be letters and digits ending in '_'",
                 reduction.key = "fact-vae", annotation = ann)
  expect_refused(toy_object(), "reduction.name gives names already used.*RNA",
                 reduction.name = "RNA", annotation = ann)
  expect_refused(toy_object(), "augment.assay = 'ATAC' would replace an input assay",
                 augment = TRUE, augment.assay = "ATAC", annotation = ann)
  expect_refused(toy_object(), "augment.features has 1 names that are not peaks",
                 augment = TRUE, augment.features = "chr9-1-2", annotation = ann)
})

test_that("an output option the core does not know is refused before training", {
  skip_if_no_core()
  path <- tempfile("factvae-model-")
  expect_refused(toy_object(), 'link.score must be one of "combined", "abc", "correlation", "cosine"',
                 link.score = "pearson", links = TRUE, model.path = path,
                 annotation = toy_annotation())
  expect_refused(toy_object(), 'augment.latent must be one of "joint", "atac"',
                 augment.latent = "rna", augment = TRUE, model.path = path,
                 annotation = toy_annotation())
  expect_false(file.exists(path))  # nothing was trained
})

test_that("a dense augmented matrix too large to hold is refused before anything is allocated", {
  old <- options(factvae.max.dense.gb = 1e-7)
  on.exit(options(old))
  expect_refused(toy_object(), paste0("augmented ATAC of 20 cells x 4 peaks would take 0.0 GB.*",
                                      "Give augment.threshold"),
                 augment = TRUE, annotation = toy_annotation())
})
