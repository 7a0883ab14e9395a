# SeuratObject 5: Assay5 inputs, split layers, LayerData. These run wherever SeuratObject >= 5 is
# installed and skip elsewhere (Debian ships 4.1 here). Reading layers goes through .layer(),
# the one reader that works on both versions.

# (SeuratObject warns that each assay changes class: the set-up's warning, not ours.)
assay5_object <- function(split = FALSE) {
  object <- toy_object()
  for (name in c("RNA", "ATAC")) {
    counts <- .layer(object[[name]], "counts")
    suppressWarnings(object[[name]] <- getExportedValue("SeuratObject", "CreateAssay5Object")(
      counts = counts))
  }
  if (split) {
    object$batch <- rep(c("a", "b"), length.out = ncol(object))
    for (name in c("RNA", "ATAC")) {
      object[[name]] <- split(object[[name]], f = object$batch)
    }
  }
  object
}

test_that("counts of an Assay5 are read without warnings, split layers joined in cell order", {
  skip_unless_seurat_object_5()
  plain <- toy_object()
  whole <- assay5_object()
  expect_s4_class(whole[["ATAC"]], "Assay5")
  expect_no_warning(counts <- .assay_counts(whole, "ATAC", "atac.assay"))
  expect_equal(counts, .assay_counts(plain, "ATAC", "atac.assay"))
  split <- assay5_object(split = TRUE)
  expect_true(length(getExportedValue("SeuratObject", "Layers")(split[["ATAC"]])) > 1)
  expect_no_warning(joined <- .assay_counts(split, "ATAC", "atac.assay"))
  expect_equal(joined[, colnames(counts)], counts)
  expect_setequal(colnames(joined), colnames(counts))
  # dims of an Assay5 are doubles: compare them with expect_equal.
  expect_equal(dim(whole[["ATAC"]]), c(4, 20))
})

test_that("an Assay5 without counts gets our error and no SeuratObject warning first", {
  skip_unless_seurat_object_5()
  object <- assay5_object()
  data <- .layer(object[["RNA"]], "counts")
  suppressWarnings(object[["RNA"]] <- getExportedValue("SeuratObject", "CreateAssay5Object")(
    data = log1p(data)))
  warned <- character()
  withCallingHandlers(
    expect_error(RunFactVAE(object, annotation = toy_annotation()),
                 "Assay 'RNA' has no raw counts"),
    warning = function(w) {
      warned <<- c(warned, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  expect_identical(warned, character())
  # The same for a v3 Assay inside a SeuratObject 5 object.
  suppressWarnings(object[["RNA"]] <- SeuratObject::CreateAssayObject(data = log1p(data)))
  expect_no_warning(expect_error(RunFactVAE(object, annotation = toy_annotation()),
                                 "Assay 'RNA' has no raw counts"))
})

test_that("the augmented assay's counts and data layers hold one matrix on SeuratObject 5", {
  skip_unless_seurat_object_5()
  object <- assay5_object()
  values <- matrix(stats::runif(80), 4, 20, dimnames = dimnames(.layer(object[["ATAC"]],
                                                                       "counts")))
  expect_no_warning(object <- .add_augmented_assay(
    object, "aug", .augmented_assay(object[["ATAC"]], values, "aug")))
  expect_true(shares_counts_and_data(object, "aug"))
  expect_equal(unname(object$nCount_aug), unname(colSums(values)))
})

test_that("RunFactVAE on split Assay5 layers gives the unsplit run's embeddings", {
  skip_unless_seurat_object_5()
  skip_if_no_core()
  object <- simulated_fit()$input
  five <- object
  five$batch <- rep(c("a", "b", "c"), length.out = ncol(five))
  for (name in c("RNA", "ATAC")) {
    counts <- .layer(object[[name]], "counts")
    suppressWarnings(five[[name]] <- split(
      getExportedValue("SeuratObject", "CreateAssay5Object")(counts = counts), f = five$batch))
  }
  run <- function(x) {
    suppressWarnings(RunFactVAE(x, annotation = SeuratObject::Misc(object, "annotation"),
                                n.latent = 5, n.hvg = 100, max.epochs = 2, seed = 3,
                                augment = TRUE, augment.threshold = 0.05, verbose = FALSE))
  }
  a <- run(object)
  b <- run(five)
  expect_equal(SeuratObject::Embeddings(b, "factvae"), SeuratObject::Embeddings(a, "factvae"))
  expect_equal(layer_data(b, "factvaeATAC", "counts"), layer_data(a, "factvaeATAC", "counts"))
})
