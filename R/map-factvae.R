#' Map new cells onto a trained FactVAE model
#'
#' Embeds the cells of `query` (raw RNA and ATAC counts, like those
#' [RunFactVAE()] trains on) in the latent space of a reference model, and
#' adds the joint, RNA and ATAC embeddings to `query` as reductions named like
#' RunFactVAE's. The reference model is never changed.
#'
#' The query's counts go through the preprocessing saved with the model; its
#' features are matched by name (missing ones count as zeros, with a warning).
#' Their PCA and LSI projections are scaled per component to the reach of the
#' training cells' own vectors, measured when the model was fitted: cells
#' outside a fit project less far onto the components fitted to the training
#' cells' noise, and unscaled they landed apart from the training cells. The
#' reference's own cells, mapped again, are treated as new cells too: they land
#' close to, not exactly on, their own embedding.
#' When the reference was trained with `batch`, the query's cells need their
#' batch too: batch levels the model knows keep theirs, and new ones are
#' learnt as scArches does, with every other parameter of the model frozen (the
#' Python core's `map_query`); each new level needs at least `batch.size`
#' cells. Without a batch there is nothing to learn: the cells are embedded by
#' the trained encoders directly (`get_latent(rna=, atac=)`), with no training.
#' Unless the reference model was built with the Python setting
#' `encode_batch`, its encoders take no batch, so the embeddings are the same
#' as that direct embedding; the training learns the decoders' offsets of the
#' new batches.
#'
#' @param query A Seurat object with the new cells' RNA and ATAC assays.
#' @param reference A Seurat object returned by [RunFactVAE()] (its model is
#'   the one recorded in `Tool(reference, "RunFactVAE")$model.path`), or the
#'   path of a saved model.
#' @param reduction.name Name of the joint reduction; the RNA and ATAC ones
#'   get the suffixes `.rna` and `.atac`.
#' @param reduction.key Key of the joint reduction; the RNA and ATAC ones
#'   insert `RNA` and `ATAC` before the underscore.
#' @param rna.assay,atac.assay Names of the query's RNA and ATAC assays.
#' @param batch Name of the query's meta data column holding each cell's
#'   batch, when the reference model has one; `NULL` takes the column of the
#'   name the model was trained with. Must be `NULL` when the model has no
#'   batch.
#' @param max.epochs Most epochs to train the new batch levels; `NULL` takes
#'   the reference's preset (scaled to the query's cells).
#' @param batch.size Minibatch size of that training.
#' @param seed Random seed of that training.
#' @param verbose Show progress.
#'
#' @return `query` with the three reductions added (their `misc` records the
#'   model and, after learning new batches, the batch levels); nothing else of
#'   it is changed.
#' @export
#' @examples
#' \dontrun{
#' obj <- SimulateMultiome(n.cells = 600)
#' obj$sample <- rep(c("a", "b"), length.out = ncol(obj))
#' ref <- RunFactVAE(obj[, 1:400], batch = "sample",
#'                   annotation = SeuratObject::Misc(obj, "annotation"))
#' query <- obj[, 401:600]
#' query$sample <- "c"
#' query <- MapFactVAE(query, ref)
#' }
MapFactVAE <- function(query, reference, reduction.name = "factvae",
                       reduction.key = "FactVAE_", rna.assay = "RNA", atac.assay = "ATAC",
                       batch = NULL, max.epochs = NULL, batch.size = 128, seed = 0,
                       verbose = TRUE) {
  if (!inherits(query, "Seurat")) {
    stop("query must be a Seurat object.", call. = FALSE)
  }
  path <- .reference_model(reference)
  max.epochs <- if (!is.null(max.epochs)) .whole(max.epochs, 1)
  batch.size <- .whole(batch.size, 2)
  seed <- .whole(seed, 0)
  verbose <- .flag(verbose)
  outputs <- .output_names(query, reduction.name, reduction.key, rna.assay, atac.assay, NULL)
  counts <- .match_cells(.assay_counts(query, rna.assay, "rna.assay"),
                         .assay_counts(query, atac.assay, "atac.assay"), rna.assay, atac.assay)
  cells <- colnames(counts$rna)
  peaks <- .assay_peak_ranges(query, atac.assay, rownames(counts$atac))

  core <- .factvae_core()
  fit <- .py_call(core$module$FactVAE$load(path))
  model <- .py_call(core$bridge$model_features(fit))
  .check_query_features(unlist(model$genes), rownames(counts$rna), "gene", rna.assay, path)
  .check_query_features(unlist(model$peaks), rownames(counts$atac), "peak", atac.assay, path)
  keys <- unlist(model$batch_keys)
  obs <- NULL
  if (length(keys) > 1) {
    stop("The model at ", path, " has several batch columns (", paste(keys, collapse = ", "),
         "); MapFactVAE maps models with one.", call. = FALSE)
  }
  if (length(keys) == 1) {
    values <- .batch_values(query, batch %||% keys, cells)
    obs <- stats::setNames(list(values), keys)
  } else if (!is.null(batch)) {
    stop("The model at ", path, " was trained without a batch, so it learns none: leave ",
         "batch = NULL (the query's cells are embedded as they are).", call. = FALSE)
  }
  pair <- .anndata_pair(core, counts, peaks, obs)

  misc <- list(model.path = path, python.version = core$version, cells = length(cells),
               mapped = TRUE)
  if (length(keys) == 1) {
    if (verbose) message(sprintf("FactVAE: mapping %d query cells onto the model at %s",
                                 length(cells), path))
    mapped <- .py_call(fit$map_query(pair$rna, pair$atac, max_epochs = max.epochs,
                                     batch_size = batch.size, seed = seed, progress = verbose))
    levels <- unlist(.py_call(core$bridge$model_features(mapped))$batch_levels)
    misc$batch <- batch %||% keys
    misc$reference.batch.levels <- unlist(model$batch_levels)
    misc$new.batch.levels <- setdiff(levels, misc$reference.batch.levels)
    latent <- function(kind) .py_call(mapped$get_latent(kind = kind))
  } else {
    latent <- function(kind) {
      .py_call(fit$get_latent(kind = kind, rna = if (kind != "atac") pair$rna,
                              atac = if (kind != "rna") pair$atac))
    }
  }
  fitted <- .py_call(core$bridge$model_summary(fit))
  .add_reductions(query, latent, fitted, cells, outputs, rna.assay, atac.assay, misc)
}

# The path of the reference's saved model: a RunFactVAE object's, or a path.
.reference_model <- function(reference) {
  if (inherits(reference, "Seurat")) {
    path <- SeuratObject::Tool(reference, slot = "RunFactVAE")$model.path
    if (is.null(path)) {
      stop("reference has no FactVAE model (no Tool(reference, \"RunFactVAE\")$model.path): ",
           "run RunFactVAE() on it first, or give the path of a saved model.", call. = FALSE)
    }
  } else if (is.character(reference) && length(reference) == 1 && !is.na(reference)) {
    path <- reference
  } else {
    stop("reference must be a Seurat object returned by RunFactVAE() or the path of a saved ",
         "model.", call. = FALSE)
  }
  path <- path.expand(path)
  if (!dir.exists(path)) {
    stop("The reference model ", path, " does not exist (a model in tempdir() lasts only as ",
         "long as the R session that trained it; give RunFactVAE a model.path to keep it).",
         call. = FALSE)
  }
  path
}

.check_query_features <- function(model, query, what, assay, path) {
  if (!length(intersect(model, query))) {
    stop(sprintf(paste0("None of the %d %ss of the model at %s is a feature of the query's ",
                        "assay '%s' (e.g. %s there, %s in the model); the query must be ",
                        "measured on the reference's %ss, named alike."),
                 length(model), what, path, assay, paste(utils::head(query, 2), collapse = ", "),
                 paste(utils::head(model, 2), collapse = ", "), what), call. = FALSE)
  }
}
