# RunFactVAE(batch =) and MapFactVAE on simulated data, each fit a few epochs.

batch_fit <- function() {
  cached("batch", function() {
    object <- SimulateMultiome(n.cells = 300, seed = 1)
    object$sample <- rep(c("a", "b"), length.out = ncol(object))
    reference <- object[, 1:150]
    fit <- suppressWarnings(RunFactVAE(
      reference, annotation = SeuratObject::Misc(object, "annotation"), batch = "sample",
      n.latent = 10, n.hvg = 300, max.epochs = 3, batch.size = 64, seed = 1, verbose = FALSE))
    query <- object[, 151:300]
    query$sample <- "c"
    list(object = object, reference = reference, fit = fit, query = query)
  })
}

test_that("RunFactVAE trains with a batch column and records it", {
  skip_if_no_core()
  fit <- batch_fit()$fit
  info <- SeuratObject::Tool(fit, slot = "RunFactVAE")
  expect_identical(info$batch, "sample")
  model <- .factvae_core()$module$FactVAE$load(info$model.path)
  expect_identical(unlist(.factvae_core()$bridge$model_features(model)$batch_levels),
                   c("a", "b"))
  expect_identical(nrow(SeuratObject::Embeddings(fit, "factvae")), 150L)
})

test_that("RunFactVAE stops before training on a bad batch column", {
  skip_if_no_core()
  object <- batch_fit()$reference
  annotation <- SeuratObject::Misc(object, "annotation")
  expect_error(RunFactVAE(object, annotation = annotation, batch = "nope", verbose = FALSE),
               "batch = 'nope' is not a meta data column.*object\\$nope <-")
  object$sample[3] <- NA
  expect_error(RunFactVAE(object, annotation = annotation, batch = "sample", verbose = FALSE),
               "1 cells have no value \\(NA\\)")
  expect_error(RunFactVAE(object, annotation = annotation, batch = c("a", "b"), verbose = FALSE),
               "batch must be NULL or the name of one meta data column")
})

test_that("MapFactVAE maps a query with a new sample and leaves the reference as it was", {
  skip_if_no_core()
  made <- batch_fit()
  path <- SeuratObject::Tool(made$fit, "RunFactVAE")$model.path
  files <- list.files(path, recursive = TRUE, full.names = TRUE)
  before <- tools::md5sum(files)
  query <- made$query
  mapped <- suppressWarnings(MapFactVAE(query, made$fit, max.epochs = 2, verbose = FALSE))
  # The reference's saved model is left as it was.
  expect_identical(tools::md5sum(list.files(path, recursive = TRUE, full.names = TRUE)), before)
  dims <- c(factvae = 10L, factvae.rna = 10L, factvae.atac = 10L)
  for (name in names(dims)) {
    embeddings <- SeuratObject::Embeddings(mapped, reduction = name)
    expect_identical(rownames(embeddings), colnames(query))
    expect_identical(ncol(embeddings), dims[[name]])
    expect_true(all(is.finite(embeddings)))
  }
  expect_identical(mapped[["factvae"]]@misc$new.batch.levels, "c")
  expect_identical(mapped[["factvae"]]@misc$reference.batch.levels, c("a", "b"))
  # Nothing but the reductions is added to the query.
  expect_identical(SeuratObject::Reductions(mapped), names(dims))
  expect_identical(mapped[[]], query[[]])
  expect_identical(mapped@tools, query@tools)
  expect_identical(mapped@commands, query@commands)
  # The saved model's path works as the reference too, with the batch named explicitly.
  query$donor <- query$sample
  again <- suppressWarnings(MapFactVAE(query, SeuratObject::Tool(made$fit, "RunFactVAE")$model.path,
                                       batch = "donor", max.epochs = 2, verbose = FALSE))
  expect_equal(SeuratObject::Embeddings(again, "factvae"),
               SeuratObject::Embeddings(mapped, "factvae"))
})

test_that("MapFactVAE of the reference's own cells without batch lands on RunFactVAE's", {
  skip_if_no_core()
  fit <- simulated_fit()
  query <- fit$input
  mapped <- suppressWarnings(MapFactVAE(query, fit$fit, verbose = FALSE))
  for (name in c("factvae", "factvae.rna", "factvae.atac")) {
    ours <- SeuratObject::Embeddings(mapped, name)
    theirs <- SeuratObject::Embeddings(fit$fit, name)
    expect_identical(dimnames(ours), dimnames(theirs))
    # mapped cells count as new: their projections are scaled to the training cells' reach,
    # so they land close to, not exactly on, their own embedding (exactly on it with
    # Python's projected_inputs=True, tested there)
    expect_gt(min(diag(stats::cor(ours, theirs))), 0.9)
  }
})

test_that("MapFactVAE explains a reference without a model, batch misuse and foreign features", {
  skip_if_no_core()
  made <- batch_fit()
  expect_error(MapFactVAE(made$query, made$reference), "reference has no FactVAE model")
  expect_error(MapFactVAE(made$query, 1), "reference must be a Seurat object")
  expect_error(MapFactVAE(made$query, simulated_fit()$fit, batch = "sample", verbose = FALSE),
               "trained without a batch")
  query <- made$query
  query$sample <- NULL
  expect_error(MapFactVAE(query, made$fit, verbose = FALSE),
               "batch = 'sample' is not a meta data column")
  counts <- layer_data(query, "RNA", "counts")
  rownames(counts) <- paste0("other", seq_len(nrow(counts)))
  foreign <- SeuratObject::CreateSeuratObject(counts = counts, assay = "RNA")
  foreign[["ATAC"]] <- SeuratObject::CreateAssayObject(counts = layer_data(query, "ATAC", "counts"))
  expect_error(MapFactVAE(foreign, made$fit, verbose = FALSE), "None of the .* genes")
})
