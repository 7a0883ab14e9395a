#' factvae: FactVAE for single-cell multiome data in Seurat and Signac
#'
#' Runs FactVAE on a Seurat object holding paired RNA and ATAC counts. The
#' model, the gene-to-peak prior ([GeneToPeak()]) and the genomic conventions
#' (peak names, chromosome names) live in the `factvae` Python package,
#' reached through reticulate; R converts and never re-implements them. [RunFactVAE()] returns the object with joint, RNA and ATAC cell
#' embeddings, and optionally the augmented ATAC matrix as an assay and
#' gene-peak links in Signac's format ([FactVAELinks()]).
#'
#' @section Finding Python:
#' The first of these that is set names the Python interpreter: the option
#' `factvae.python` (a `python` binary or a virtual environment folder), the
#' environment variable `RETICULATE_PYTHON`, the environment recorded by
#' `make install` (run in the source folder) or [install_factvae()] (in the
#' file `python` of `tools::R_user_dir("factvae", "config")`), and the `.venv`
#' folder of a factvae source checkout that contains the working directory.
#' It must hold the `factvae` Python package, of this R package's version or later.
#'
#' @keywords internal
"_PACKAGE"

#' @importFrom methods as new is
#' @importFrom GenomicRanges GRanges granges findOverlaps start end width
#'   strand seqnames mcols
#' @importFrom IRanges IRanges
#' @importFrom S4Vectors queryHits subjectHits
NULL

`%||%` <- function(x, y) if (is.null(x)) y else x
