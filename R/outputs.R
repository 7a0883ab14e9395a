# RunFactVAE's optional outputs: the augmented ATAC assay and the gene-peak links.

# The peaks to augment, checked (with the size of a dense result) before any training starts;
# NULL stands for all the peaks the model uses (those with counts).
.augment_features <- function(augment, features, threshold, peaks, n.cells, file = NULL) {
  if (!augment && is.null(file)) return(NULL)
  missing <- setdiff(features, peaks)
  if (length(missing)) {
    stop(sprintf("augment.features has %d names that are not peaks of the ATAC assay (e.g. %s).",
                 length(missing), paste(utils::head(missing, 3), collapse = ", ")),
         call. = FALSE)
  }
  if (!is.null(threshold) && (!is.numeric(threshold) || length(threshold) != 1 ||
                              is.na(threshold) || threshold < 0)) {
    stop("augment.threshold must be NULL or a number >= 0.", call. = FALSE)
  }
  limit <- getOption("factvae.max.dense.gb", 4)
  size <- 8 * as.numeric(n.cells) * length(features %||% peaks) / 1024^3
  if (augment && is.null(threshold) && size > limit) {
    stop(sprintf(paste0("The augmented ATAC of %d cells x %d peaks would take %.1f GB as a dense ",
                        "matrix (limit: options(factvae.max.dense.gb = %g)). Give ",
                        "augment.threshold (e.g. 0.1) to keep it sparse, or fewer peaks with ",
                        "augment.features."),
                 n.cells, length(features %||% peaks), size, limit), call. = FALSE)
  }
  features
}

# Where augment.file streams to: one .h5ad path in an existing folder, checked before training.
.augment_file <- function(file) {
  if (is.null(file)) return(NULL)
  if (!is.character(file) || length(file) != 1 || is.na(file) || !grepl("\\.h5ad$", file)) {
    stop("augment.file must be one path ending in .h5ad.", call. = FALSE)
  }
  file <- path.expand(file)
  if (!dir.exists(dirname(file))) {
    stop("augment.file: the folder ", dirname(file), " does not exist; create it first.",
         call. = FALSE)
  }
  file
}

# The augmented matrix (peaks x cells), computed chunk by chunk so that neither side holds
# more than one chunk's dense block at a time.
.augment <- function(core, fit, cells, features, threshold, chunk.size, verbose) {
  chunks <- split(cells, ceiling(seq_along(cells) / chunk.size))
  if (verbose) {
    message(sprintf("FactVAE: augmenting %d peaks in %d cells (%d chunks)", length(features),
                    length(cells), length(chunks)))
  }
  dense <- if (is.null(threshold)) {
    matrix(0, nrow = length(features), ncol = length(cells), dimnames = list(features, cells))
  }
  sparse <- vector("list", length(chunks))
  for (k in seq_along(chunks)) {
    part <- .py_call(core$bridge$augment_chunk(fit, chunks[[k]], features, threshold,
                                               chunk.size))
    if (is.null(threshold)) {
      dense[, chunks[[k]]] <- part$values
    } else {
      sparse[[k]] <- .dgc(part, features, chunks[[k]])
    }
  }
  dense %||% do.call(cbind, sparse)
}

# A dgCMatrix from the slots csc_parts() returns.
.dgc <- function(parts, rows, cols) {
  new("dgCMatrix", i = as.integer(parts$i), p = as.integer(parts$p), x = as.numeric(parts$x),
      Dim = as.integer(parts$dim), Dimnames = list(rows, cols))
}

.augmented_assay <- function(source, values) {
  if (inherits(source, "ChromatinAssay") && requireNamespace("Signac", quietly = TRUE)) {
    ranges <- granges(source)
    names(ranges) <- rownames(source)
    return(getExportedValue("Signac", "CreateChromatinAssay")(
      data = values, ranges = unname(ranges[rownames(values)]),
      annotation = getExportedValue("Signac", "Annotation")(source)))
  }
  SeuratObject::CreateAssayObject(data = values)
}

# Links as Signac stores them: a GRanges from the gene's TSS to the peak's centre.
.links <- function(core, fit, peaks, window, pvalue, seed) {
  found <- .py_call(core$bridge$infer_links(fit, window = window, seed = seed))
  keep <- as.vector(found$pvalue) <= pvalue
  found <- lapply(found, function(column) as.vector(column)[keep])
  peak <- match(found$peak, names(peaks))
  tss <- found$tss + 1
  centre <- (start(peaks)[peak] + end(peaks)[peak]) %/% 2
  GRanges(seqnames(peaks)[peak], IRanges(pmin(tss, centre), pmax(tss, centre)),
          score = found$score, gene = found$gene, peak = found$peak, zscore = found$zscore,
          pvalue = found$pvalue, qvalue = found$qvalue)
}

.set_signac_links <- function(object, atac.assay, links) {
  if (inherits(object[[atac.assay]], "ChromatinAssay") &&
      requireNamespace("Signac", quietly = TRUE)) {
    object[[atac.assay]] <- getExportedValue("Signac", "Links<-")(object[[atac.assay]],
                                                                   value = links)
  }
  object
}

#' Gene-peak links inferred by FactVAE
#'
#' The links [RunFactVAE()] found with `links = TRUE`, in Signac's format: a
#' GRanges spanning each gene's TSS and the centre of the linked peak, with the
#' columns `score` (cosine similarity of the gene and peak embeddings),
#' `gene`, `peak`, `zscore`, `pvalue` (against shuffled gene-peak pairs) and
#' `qvalue` (Benjamini-Hochberg). Works with or without Signac; on a
#' ChromatinAssay, `Signac::Links()` returns the same links.
#'
#' @param object A Seurat object returned by [RunFactVAE()].
#' @return A GRanges.
#' @export
FactVAELinks <- function(object) {
  links <- (SeuratObject::Tool(object, slot = "RunFactVAE") %||% list())$links
  if (is.null(links)) {
    stop("This object has no FactVAE links; run RunFactVAE(object, links = TRUE) first ",
         "(with model = the saved model to skip retraining).", call. = FALSE)
  }
  links
}
