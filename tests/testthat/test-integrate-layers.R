# FactVAEIntegration, the IntegrateLayers() method. Seurat 5 itself is not needed: the method is
# called as IntegrateLayers() calls it (the RNA Assay5 as `object`, its data layers as `layers`).

test_that("FactVAEIntegration explains what it needs on SeuratObject 4", {
  skip_if(.has_layers(), "SeuratObject 5 is installed")
  expect_error(FactVAEIntegration(toy_object()), "SeuratObject >= 5 and Seurat >= 5")
})

test_that("FactVAEIntegration returns the joint embedding of split RNA layers", {
  skip_if_not(utils::packageVersion("SeuratObject") >= "5.0.0", "needs SeuratObject >= 5")
  skip_if_no_core()
  object <- SimulateMultiome(n.cells = 300, seed = 1)
  object$sample <- rep(c("a", "b"), length.out = ncol(object))
  counts <- .layer(object[["RNA"]], "counts")
  suppressWarnings(object[["RNA"]] <- split(
    getExportedValue("SeuratObject", "CreateAssay5Object")(counts = counts), f = object$sample))
  expect_true(all(c("counts.a", "counts.b") %in%
                    getExportedValue("SeuratObject", "Layers")(object[["RNA"]])))
  # Without the Seurat object, and without an ATAC assay: clear errors before any training.
  expect_error(FactVAEIntegration(object[["RNA"]], assay = "RNA", layers = c("data.a", "data.b")),
               "pass the Seurat object too")
  expect_error(FactVAEIntegration(object[["RNA"]], assay = "RNA", seurat = object,
                                  atac.assay = "peaks"), "needs an ATAC assay")
  groups <- data.frame(group = object$sample, row.names = colnames(object))
  value <- suppressWarnings(FactVAEIntegration(
    object[["RNA"]], assay = "RNA", orig = NULL, layers = c("data.a", "data.b"),
    scale.layer = "scale.data", features = NULL, groups = groups, seurat = object,
    annotation = SeuratObject::Misc(object, "annotation"), n.latent = 10, n.hvg = 300,
    max.epochs = 3, batch.size = 64, verbose = FALSE))
  expect_named(value, "integrated.factvae")
  reduction <- value[["integrated.factvae"]]
  expect_s4_class(reduction, "DimReduc")
  expect_setequal(rownames(SeuratObject::Embeddings(reduction)), colnames(object))
  expect_equal(ncol(SeuratObject::Embeddings(reduction)), 10)
  expect_equal(SeuratObject::Key(reduction), "FactVAEint_")
  # As IntegrateLayers() adds it.
  object[["integrated.factvae"]] <- reduction
  expect_true("integrated.factvae" %in% SeuratObject::Reductions(object))
})
