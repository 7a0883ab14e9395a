# Shared fixtures of the factvae tests. Trained models are cached here, so each is trained once
# per test run however many test files use it.

skip_if_no_core <- function() {
  available <- FactVAEAvailable()
  skip_if_not(available, paste("factvae Python core not available:", attr(available, "reason")))
}

# The real data set: $FACTVAE_SHARED_DATA (the data folder or snare_hcellline itself), else
# ../shared/data/snare_hcellline next to the source checkout.
real_data_dir <- function() {
  shared <- Sys.getenv("FACTVAE_SHARED_DATA")
  checkout <- .find_checkout()
  candidates <- c(
    if (nzchar(shared)) c(file.path(shared, "snare_hcellline"), shared),
    if (!is.null(checkout)) file.path(checkout, "..", "shared", "data", "snare_hcellline")
  )
  found <- candidates[file.exists(file.path(candidates, "rna_counts.mtx.gz"))]
  if (length(found)) normalizePath(found[1]) else NULL
}

skip_if_no_real_data <- function() {
  skip_if(is.null(real_data_dir()),
          "snare_hcellline data not found (set FACTVAE_SHARED_DATA to its folder)")
}

# Training on the real data takes minutes: only when asked for (.ci/r-tests.sh asks; the tests
# run by R CMD check do not, so the model is not trained a second time there).
skip_unless_full_tests <- function() {
  skip_if_not(identical(Sys.getenv("FACTVAE_FULL_TESTS"), "true"),
              "real-data training takes minutes; set FACTVAE_FULL_TESTS=true to run it")
}

fixtures <- new.env(parent = emptyenv())

# One layer (SeuratObject 5) or slot (SeuratObject 4) of an assay, through the package's own
# reader: GetAssayData(slot = ) is defunct in SeuratObject 5.3.
layer_data <- function(object, assay, layer) {
  .layer(object[[assay]], layer)
}

skip_unless_seurat_object_5 <- function() {
  skip_if_not(.has_layers(), "needs SeuratObject 5 (LayerData, Assay5)")
}

# Where an R object lives in memory: two slots holding one matrix give the same address.
address <- function(x) {
  sub(" .*", "", utils::capture.output(.Internal(inspect(x, 0L)))[1])
}

# Whether the counts and data slots of a (v3 or Chromatin) assay hold one matrix in memory. Read
# with slot(): SeuratObject 5's LayerData() returns a new copy at each call.
shares_counts_and_data <- function(object, assay) {
  identical(address(methods::slot(object[[assay]], "counts")),
            address(methods::slot(object[[assay]], "data")))
}

cached <- function(name, make) {
  if (is.null(fixtures[[name]])) fixtures[[name]] <- make()
  fixtures[[name]]
}

# A small simulated object without Python: RNA genes near the peaks of an ATAC assay.
toy_object <- function(n.cells = 20) {
  set.seed(1)
  cells <- sprintf("cell%02d", seq_len(n.cells))
  genes <- c("GENE1", "GENE2", "GENE3")
  peaks <- c("chr1-1000-1500", "chr1-9000-9600", "chr2-5000-5400", "chr2-90000-90500")
  rna <- Matrix::rsparsematrix(length(genes), n.cells, 0.5, rand.x = function(n) rpois(n, 3) + 1)
  atac <- Matrix::rsparsematrix(length(peaks), n.cells, 0.5, rand.x = function(n) rpois(n, 2) + 1)
  dimnames(rna) <- list(genes, cells)
  dimnames(atac) <- list(peaks, cells)
  object <- SeuratObject::CreateSeuratObject(counts = rna, assay = "RNA")
  object[["ATAC"]] <- SeuratObject::CreateAssayObject(counts = atac)
  object
}

toy_annotation <- function(chrom = c("chr1", "chr1", "chr2")) {
  GenomicRanges::GRanges(chrom, IRanges::IRanges(c(2000, 8000, 5200), c(4000, 8800, 7000)),
                         strand = c("+", "-", "+"), gene_name = c("GENE1", "GENE2", "GENE3"))
}

# Simulated data trained briefly: fast enough for R CMD check.
simulated_fit <- function() {
  cached("simulated", function() {
    object <- SimulateMultiome(n.cells = 300, seed = 1)
    # It warns about features without counts (tested in test-run-factvae.R).
    fit <- suppressWarnings(RunFactVAE(
      object, annotation = SeuratObject::Misc(object, "annotation"), n.latent = 10, n.hvg = 300,
      max.epochs = 5, augment = TRUE, links = TRUE, link.pvalue = 1, seed = 1, verbose = FALSE))
    list(input = object, fit = fit)
  })
}

# Where a fixture's trained model was saved: the tests that reuse it pass it as `model`.
saved_model <- function(fixture) {
  SeuratObject::Tool(fixture$fit, slot = "RunFactVAE")$model.path
}

real_object <- function() {
  cached("real.object", function() ReadMultiome(real_data_dir()))
}

# The real data set trained once. 100 epochs (of the method's 300) gave a joint-embedding ARI of
# 0.96 here, far above the 0.85 the tests ask for, in a third of the time. Its warnings are kept
# in fixtures$real.warnings for test-real-data.R to check.
real_fit <- function() {
  cached("real.fit", function() {
    object <- real_object()
    fixtures$real.warnings <- character()
    withCallingHandlers(RunFactVAE(
      object, annotation = SeuratObject::Misc(object, "annotation"), max.epochs = 100,
      augment = TRUE, augment.threshold = 0.05, links = TRUE, verbose = FALSE),
      warning = function(w) {
        fixtures$real.warnings <- c(fixtures$real.warnings, conditionMessage(w))
        invokeRestart("muffleWarning")
      })
  })
}
