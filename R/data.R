#' Simulated multiome data as a Seurat object
#'
#' Draws paired RNA and ATAC counts from the `factvae` Python package's
#' simulator: cells of a few types whose genes are driven by nearby peaks.
#' Used by the vignette, the demo and the tests.
#'
#' @param n.cells Number of cells.
#' @param seed Random seed.
#'
#' @return A Seurat object with the assays `RNA` and `ATAC` (raw counts; peaks
#'   named `chr-start-end`), the metadata column `cell_type`, the gene
#'   annotation as a GRanges in `Misc(object, "annotation")` and the
#'   simulation's true gene-peak links as a data frame (columns `gene`, `peak`)
#'   in `Misc(object, "true.links")`.
#' @export
#' @examples
#' if (FactVAEAvailable()) {
#'   obj <- SimulateMultiome(n.cells = 200)
#'   obj
#' }
SimulateMultiome <- function(n.cells = 600, seed = 0) {
  core <- .factvae_core()
  sim <- .py_call(core$bridge$simulation_parts(n_cells = .whole(n.cells, 2),
                                               seed = .whole(seed, 0)))
  peaks <- sim$peaks
  object <- .multiome_object(
    rna = .dgc(sim$rna, sim$genes, sim$cells),
    atac = .dgc(sim$atac, peaks, sim$cells),
    annotation = .bed_genes(sim$annotation$chrom, sim$annotation$start, sim$annotation$end,
                            sim$annotation$gene_name, sim$annotation$strand),
    cell.type = sim$cell_type)
  SeuratObject::Misc(object, slot = "true.links") <- data.frame(
    gene = sim$links$gene, peak = sim$links$peak,
    stringsAsFactors = FALSE)
  object
}

#' Read a multiome folder into a Seurat object
#'
#' Reads paired RNA and ATAC counts in the layout of the shared example data
#' (such as `snare_hcellline`): MatrixMarket count matrices of features x
#' cells and plain-text names.
#'
#' @param data.dir Folder holding `rna_counts.mtx.gz` (genes x cells),
#'   `genes.tsv` (one gene a line), `atac_counts.mtx.gz` (peaks x cells),
#'   `peaks.bed` (chrom, start, end), `barcodes.tsv` (one cell a line) and,
#'   optionally, `cell_types.tsv` (header, then barcode and cell type) and
#'   `genes.bed` (chrom, start, end, name, strand; BED coordinates).
#'
#' @return A Seurat object with the assays `RNA` and `ATAC` (peaks named
#'   `chr-start-end` by their BED coordinates), a `cell_type` metadata column
#'   when `cell_types.tsv` is there, and the genes of `genes.bed` as a GRanges
#'   in `Misc(object, "annotation")`.
#' @export
ReadMultiome <- function(data.dir) {
  path <- function(name) file.path(data.dir, name)
  needed <- c("rna_counts.mtx.gz", "genes.tsv", "atac_counts.mtx.gz", "peaks.bed", "barcodes.tsv")
  absent <- needed[!file.exists(path(needed))]
  if (length(absent)) {
    stop("ReadMultiome: ", data.dir, " lacks ", paste(absent, collapse = ", "), ".",
         call. = FALSE)
  }
  cells <- readLines(path("barcodes.tsv"))
  peaks <- utils::read.table(path("peaks.bed"), sep = "\t", quote = "",
                             colClasses = c("character", "numeric", "numeric"))
  annotation <- if (file.exists(path("genes.bed"))) {
    genes <- utils::read.table(path("genes.bed"), sep = "\t", quote = "", comment.char = "",
                               colClasses = c("character", "numeric", "numeric", "character",
                                              "character"))
    .bed_genes(genes[[1]], genes[[2]], genes[[3]], genes[[4]], genes[[5]])
  }
  cell.type <- if (file.exists(path("cell_types.tsv"))) {
    types <- utils::read.table(path("cell_types.tsv"), sep = "\t", header = TRUE, quote = "",
                               colClasses = "character")
    types[[2]][match(cells, types[[1]])]
  }
  .multiome_object(
    rna = .read_counts(path("rna_counts.mtx.gz"), readLines(path("genes.tsv")), cells),
    atac = .read_counts(path("atac_counts.mtx.gz"),
                        .bed_peak_names(peaks[[1]], peaks[[2]], peaks[[3]]), cells),
    annotation = annotation, cell.type = cell.type)
}

.read_counts <- function(file, features, cells) {
  counts <- as(Matrix::readMM(gzfile(file)), "CsparseMatrix")
  dimnames(counts) <- list(features, cells)
  counts
}

.multiome_object <- function(rna, atac, annotation, cell.type) {
  # Seurat would rename features with "_" (with a warning); rename them, and the annotation's
  # genes alike, so that every annotated gene still finds its RNA feature.
  rownames(rna) <- gsub("_", "-", rownames(rna), fixed = TRUE)
  if (!is.null(annotation)) {
    annotation$gene_name <- gsub("_", "-", annotation$gene_name, fixed = TRUE)
  }
  object <- SeuratObject::CreateSeuratObject(counts = rna, assay = "RNA")
  object[["ATAC"]] <- SeuratObject::CreateAssayObject(counts = atac)
  if (!is.null(cell.type)) {
    object$cell_type <- stats::setNames(cell.type, colnames(rna))
  }
  if (!is.null(annotation)) {
    SeuratObject::Misc(object, slot = "annotation") <- annotation
  }
  object
}

# Names of peaks given in BED coordinates, by the core's one naming rule (Signac's reading:
# chrom-(start + 1)-end, so each name reads back to its interval).
.bed_peak_names <- function(chrom, start, end) {
  unlist(.py_call(.factvae_core()$bridge$peak_names_from_ranges(chrom, start, end)))
}

# Genes in BED coordinates (0-based start) as a 1-based GRanges.
.bed_genes <- function(chrom, start, end, gene.name, strand) {
  strand[!strand %in% c("+", "-")] <- "*"
  GRanges(chrom, IRanges(start + 1, end), strand = strand, gene_name = gene.name)
}
