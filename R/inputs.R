# Reading RunFactVAE's inputs from a Seurat object, on SeuratObject 4 and 5. Everything here
# errors before training, so bad input fails fast and leaves the object as it was. Peak names
# are read by the Python core's rule (PeakRanges), the one place here that starts Python.

# SeuratObject 5 reads data by layer; version 4 by slot. Functions that exist in only one of
# them are looked up at run time so that R CMD check is clean against either.
.has_layers <- function() {
  "LayerData" %in% getNamespaceExports("SeuratObject")
}

.seurat_object_fun <- function(name) {
  getExportedValue("SeuratObject", name)
}

# One layer (SeuratObject 5: `LayerData`, split layers joined) or slot (SeuratObject 4:
# `GetAssayData(slot = )`, defunct in 5.3) of an assay, as stored; NULL when it is absent or
# empty. The one place that reads a layer: the tests and the vignette read through it too.
.layer <- function(assay, layer) {
  if (.has_layers()) {
    found <- .seurat_object_fun("Layers")(assay)
    if (!layer %in% found) {
      if (!any(startsWith(found, paste0(layer, ".")))) return(NULL)
      assay <- .seurat_object_fun("JoinLayers")(assay, layers = layer)
    }
    values <- .seurat_object_fun("LayerData")(assay, layer = layer)
  } else {
    values <- SeuratObject::GetAssayData(assay, slot = layer)
  }
  if (is.null(values) || nrow(values) == 0 || ncol(values) == 0) return(NULL)
  values
}

# Raw counts of one assay as a dgCMatrix (features x cells), never densified.
.assay_counts <- function(object, assay, arg) {
  if (!is.character(assay) || length(assay) != 1 || !assay %in% SeuratObject::Assays(object)) {
    stop(sprintf("%s = %s is not an assay of the object (it has: %s); set %s to the right name.",
                 arg, deparse(assay), paste(SeuratObject::Assays(object), collapse = ", "), arg),
         call. = FALSE)
  }
  counts <- .layer(object[[assay]], "counts")
  if (is.null(counts)) {
    stop(sprintf(paste0("Assay '%s' has no raw counts (its counts layer is empty). FactVAE ",
                        "models raw counts: create the assay with counts = <raw count matrix>."),
                 assay), call. = FALSE)
  }
  if (!inherits(counts, "dgCMatrix")) {
    counts <- as(as(as(counts, "CsparseMatrix"), "generalMatrix"), "dMatrix")
  }
  if (length(counts@x) && min(counts@x) < 0) {
    stop(sprintf("Assay '%s' has negative counts; FactVAE needs raw (non-negative) counts.",
                 assay), call. = FALSE)
  }
  counts
}

# Both count matrices with the same cells in the same order (the RNA assay's).
.match_cells <- function(rna, atac, rna.assay, atac.assay) {
  if (!setequal(colnames(rna), colnames(atac))) {
    only.rna <- setdiff(colnames(rna), colnames(atac))
    only.atac <- setdiff(colnames(atac), colnames(rna))
    stop(sprintf(paste0("Assays '%s' and '%s' hold different cells (%d only in '%s', %d only in ",
                        "'%s', e.g. %s). Subset the object to the cells both assays share."),
                 rna.assay, atac.assay, length(only.rna), rna.assay, length(only.atac),
                 atac.assay, paste(utils::head(c(only.rna, only.atac), 3), collapse = ", ")),
         call. = FALSE)
  }
  list(rna = rna, atac = atac[, colnames(rna), drop = FALSE])
}

# Peak ranges, named by peak: from the ChromatinAssay when Signac is there, else from the names.
.assay_peak_ranges <- function(object, atac.assay, peaks) {
  data <- object[[atac.assay]]
  if (inherits(data, "ChromatinAssay") && requireNamespace("Signac", quietly = TRUE)) {
    ranges <- granges(data)
    names(ranges) <- rownames(data)
    # With the assay's seqinfo (where Signac keeps the genome), passed on to the links.
    info <- .assay_seqinfo(data)
    if (all(GenomeInfoDb::seqlevels(ranges) %in% GenomeInfoDb::seqnames(info))) {
      GenomeInfoDb::seqlevels(ranges) <- GenomeInfoDb::seqnames(info)
      GenomeInfoDb::seqinfo(ranges) <- info
    }
    return(ranges[peaks])
  }
  PeakRanges(peaks)
}

#' Genomic ranges of peaks from their names
#'
#' Reads peak names by the rule the R package shares with the Python core: it
#' calls the Python function `factvae.data.genomics.parse_peak_names`, so the
#' two languages cannot read a name differently.
#'
#' A name is `chrom`, a separator (`-`, `:` or `_`), `start`, a separator (`-`
#' or `_`) and `end`: `chr1-1000-1500`, `chr1:1000-1500` and `chr1_1000_1500`
#' are one peak (Seurat rewrites `_` to `-` in feature names). The last two
#' fields are the coordinates, so a chromosome name may hold separators:
#' `chrUn-gl000220-1-5000-6000` is on `chrUn-gl000220-1`.
#'
#' Coordinates are read as Signac reads them, 1-based and inclusive:
#' `chr1-1000-1500` is the bases 1000 to 1500, a GRanges with start 1000 and
#' end 1500 (the 0-based, half-open `[999, 1500)` of BED files and of the
#' Python core). `end == start` is a 1-bp peak; `end < start` is an error. A
#' start of 0 (found in names written from BED coordinates) is read as base 1.
#'
#' @param peaks Character vector of peak names.
#' @return A GRanges named by `peaks`.
#' @export
#' @examples
#' if (FactVAEAvailable()) {
#'   PeakRanges(c("chr1-1000-1500", "chr2:500-800", "chr3_10_10"))
#' }
PeakRanges <- function(peaks) {
  if (!is.character(peaks)) {
    stop("peaks must be a character vector of peak names.", call. = FALSE)
  }
  parsed <- .py_call(.factvae_core()$bridge$peak_ranges_from_names(peaks))
  ranges <- GRanges(as.character(unlist(parsed$chrom)),
                    IRanges(as.vector(parsed$start) + 1, as.vector(parsed$end)))
  names(ranges) <- peaks
  ranges
}

# The peaks' coordinates as the Python core reads them (0-based, half-open, like BED): a GRanges
# start s (1-based) is the 0-based s - 1. The one place R converts peaks for Python.
.peak_var <- function(ranges) {
  list(chrom = as.character(seqnames(ranges)), start = start(ranges) - 1L, end = end(ranges))
}
