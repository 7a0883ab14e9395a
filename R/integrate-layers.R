#' FactVAE as a Seurat v5 integration method
#'
#' Lets Seurat 5 users run FactVAE through [Seurat::IntegrateLayers()], like
#' the integration methods of SeuratWrappers: the RNA assay's layers, split
#' by sample with `split()`, are the batches, and the joint FactVAE embedding
#' of all the cells is returned as one dimensional reduction
#' (`new.reduction`), which `IntegrateLayers()` adds to the object.
#'
#' FactVAE models the raw RNA and ATAC counts of the same cells together, but
#' `IntegrateLayers()` hands its method only one assay. Pass the whole Seurat
#' object as `seurat` (see the example): the ATAC assay (`atac.assay`) and,
#' through `...`, the annotation or Signac's `Annotation()` are read from it.
#' Called directly, `object` may be that Seurat object itself.
#'
#' The counts layers of `layers` (`data.a` stands for `counts.a`) are the
#' cells used and the batches: each cell's batch is its group in `groups`
#' when given, otherwise the layer that holds it. The ATAC assay may be split
#' or not. [RunFactVAE()] is then run, with `batch`, on a copy of the object,
#' which is left as it was. As for every `IntegrateLayers()` method,
#' `IntegrateLayers()` itself asks for variable features and an `orig.reduction`
#' (such as `"pca"`) to exist; FactVAE ignores them (`orig`, `features` and
#' `scale.layer` are not used) and picks its own highly variable genes.
#'
#' On Seurat 4 (SeuratObject < 5), which has neither layers nor
#' `IntegrateLayers()`, use `RunFactVAE(object, batch = "sample")`, which does
#' the same from a meta data column.
#'
#' @param object The RNA assay (an `Assay5`), as `IntegrateLayers()` passes
#'   it; or, called directly, the Seurat object.
#' @param assay Name of the RNA assay in `seurat`.
#' @param orig,features,scale.layer Passed by `IntegrateLayers()`; not used.
#' @param layers Layers of the RNA assay to integrate (`IntegrateLayers()`
#'   passes the data layers, such as `data.a` and `data.b`); `NULL` takes all
#'   its counts layers.
#' @param groups A data frame, one row per cell (row names), whose first
#'   column is each cell's group; `NULL` takes the layers as the groups.
#' @param atac.assay Name of the ATAC assay in `seurat`.
#' @param seurat The Seurat object holding both assays; needed when called by
#'   `IntegrateLayers()`.
#' @param new.reduction Name of the returned reduction.
#' @param reduction.key Key of the returned reduction.
#' @param verbose Show progress.
#' @param ... Passed on to [RunFactVAE()] (for example `annotation`,
#'   `n.latent`, `max.epochs`).
#'
#' @return A list with one element, named `new.reduction`: the joint
#'   embedding of the cells as a DimReduc.
#' @export
#' @examples
#' \dontrun{
#' # Needs Seurat >= 5.
#' obj <- SimulateMultiome(n.cells = 600)
#' obj$sample <- rep(c("a", "b"), length.out = ncol(obj))
#' obj[["RNA"]] <- split(obj[["RNA"]], f = obj$sample)
#' obj <- Seurat::NormalizeData(obj)
#' obj <- Seurat::FindVariableFeatures(obj)
#' obj <- Seurat::ScaleData(obj)
#' obj <- Seurat::RunPCA(obj)
#' obj <- Seurat::IntegrateLayers(
#'   obj, method = FactVAEIntegration, seurat = obj,
#'   annotation = SeuratObject::Misc(obj, "annotation"), max.epochs = 50)
#' obj <- Seurat::RunUMAP(obj, reduction = "integrated.factvae", dims = 1:50)
#' }
FactVAEIntegration <- function(object, assay = "RNA", orig = NULL, layers = NULL, groups = NULL,
                               features = NULL, scale.layer = NULL, atac.assay = "ATAC",
                               seurat = NULL, new.reduction = "integrated.factvae",
                               reduction.key = "FactVAEint_", verbose = TRUE, ...) {
  if (!.has_layers()) {
    stop("FactVAEIntegration needs SeuratObject >= 5 and Seurat >= 5 (IntegrateLayers and ",
         "split layers). On Seurat 4, RunFactVAE(object, batch = \"<meta data column>\") does ",
         "the same.", call. = FALSE)
  }
  if (is.null(seurat) && inherits(object, "Seurat")) seurat <- object
  if (!inherits(seurat, "Seurat")) {
    stop("FactVAEIntegration needs the RNA and the ATAC counts of the same cells, and ",
         "IntegrateLayers() hands over only one assay: pass the Seurat object too, as in ",
         "IntegrateLayers(obj, method = FactVAEIntegration, seurat = obj).", call. = FALSE)
  }
  if (!is.character(assay) || length(assay) != 1 || !assay %in% SeuratObject::Assays(seurat)) {
    stop(sprintf("assay = %s is not an assay of the Seurat object (it has: %s).",
                 deparse(assay), paste(SeuratObject::Assays(seurat), collapse = ", ")),
         call. = FALSE)
  }
  if (!is.character(atac.assay) || length(atac.assay) != 1 ||
      !atac.assay %in% SeuratObject::Assays(seurat)) {
    stop(sprintf(paste0("FactVAEIntegration needs an ATAC assay of the same cells: atac.assay = ",
                        "%s is not an assay of the Seurat object (it has: %s); set atac.assay ",
                        "to its name."),
                 deparse(atac.assay), paste(SeuratObject::Assays(seurat), collapse = ", ")),
         call. = FALSE)
  }
  rna <- seurat[[assay]]
  counts.layers <- .integration_counts_layers(rna, layers, assay)
  cell.sets <- lapply(counts.layers, function(layer) {
    SeuratObject::Cells(rna, layer = layer)
  })
  cells <- unlist(cell.sets, use.names = FALSE)
  if (anyDuplicated(cells)) {
    stop("The layers ", paste(counts.layers, collapse = ", "), " of assay '", assay,
         "' share cells; give layers that split the cells.", call. = FALSE)
  }
  batch.values <- rep(sub("^counts\\.?", "", counts.layers), lengths(cell.sets))
  batch.values[batch.values == ""] <- "counts"
  if (!is.null(groups)) {
    if (!is.data.frame(groups) || !ncol(groups) || !all(cells %in% rownames(groups))) {
      stop("groups must be a data frame with a row for each cell (row names) and the cells' ",
           "groups in its first column.", call. = FALSE)
    }
    batch.values <- as.character(groups[cells, 1])
  }
  copy <- seurat
  if (length(cells) < ncol(copy)) copy <- copy[, cells]
  column <- "factvae.integration.batch"
  copy[[column]] <- stats::setNames(batch.values, cells)[colnames(copy)]
  fit <- RunFactVAE(copy, rna.assay = assay, atac.assay = atac.assay, batch = column,
                    reduction.name = new.reduction, reduction.key = reduction.key,
                    verbose = verbose, ...)
  stats::setNames(list(fit[[new.reduction]]), new.reduction)
}

# The counts layers behind the layers IntegrateLayers names: `data.a` (or `scale.data.a`,
# `counts.a`) is `counts.a`, an unsplit `data` is `counts`.
.integration_counts_layers <- function(rna, layers, assay) {
  found <- .seurat_object_fun("Layers")(rna)
  available <- found[found == "counts" | startsWith(found, "counts.")]
  if (is.null(layers)) {
    wanted <- available
  } else {
    if (!is.character(layers) || !length(layers)) {
      stop("layers must name layers of the assay, such as c(\"data.a\", \"data.b\").",
           call. = FALSE)
    }
    suffix <- ifelse(grepl(".", layers, fixed = TRUE),
                     sub("^(scale\\.data|data|counts)\\.", "", layers), "")
    suffix[layers %in% c("counts", "data", "scale.data")] <- ""
    wanted <- unique(ifelse(suffix == "", "counts", paste0("counts.", suffix)))
  }
  missing <- setdiff(wanted, available)
  if (!length(wanted) || length(missing)) {
    stop(sprintf(paste0("FactVAE needs raw counts: assay '%s' has no counts layer %s (its ",
                        "layers: %s). Split the assay with counts, e.g. obj[[\"%s\"]] <- ",
                        "split(obj[[\"%s\"]], f = obj$sample)."),
                 assay, paste(if (length(missing)) missing else "counts", collapse = ", "),
                 paste(found, collapse = ", "), assay, assay), call. = FALSE)
  }
  wanted
}
