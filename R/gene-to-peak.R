#' Gene-to-peak prior (G2P) from genomic ranges
#'
#' Links each gene to the peaks that overlap its locus: the gene body extended
#' `upstream` bp before the transcription start site, on the gene's own strand
#' (genes without a strand count as `+`). This is the prior FactVAE's
#' regulatory constraint uses.
#'
#' The rule is the Python core's (`factvae.gene_to_peak`), called here through
#' reticulate, so R and Python build the same prior from the same inputs.
#' Genes are named by the `gene_name` column (or by `names(genes)`). A gene
#' listed several times keeps its longest span; in an annotation that lists
#' exons and UTRs per transcript (one with a `tx_id` column, such as
#' Signac's), a gene spans its longest transcript. Rows come in the order of
#' each gene's first row.
#'
#' Chromosome names are harmonised to the peaks' style: the annotation's names
#' are tried as given, with a `chr` prefix (`MT` becoming `chrM`) and without
#' it (`chrM` becoming `MT`), and the spelling that puts the most genes on the
#' peaks' chromosomes wins (a tie keeps the names as given). A gene and a peak
#' are linked when the locus and the peak share a base; peak names are read as
#' [PeakRanges()] reads them (Signac's 1-based, inclusive reading:
#' `chr1-1000-1500` is the bases 1000 to 1500).
#'
#' @param genes A GRanges of genes with a `gene_name` column and strands, such
#'   as `Signac::Annotation()` of a ChromatinAssay.
#' @param peaks A GRanges of peaks (named by peak; unnamed ones get Signac's
#'   `chr-start-end` names, start 1-based) or a character vector of peak names
#'   (see [PeakRanges()]).
#' @param upstream Bases added before the TSS.
#'
#' @return A `dgCMatrix` of genes x peaks, 1 where a gene locus overlaps a
#'   peak, with gene names and peak names as dimnames.
#' @export
#' @examples
#' genes <- GenomicRanges::GRanges(
#'   c("chr1", "chr1"), IRanges::IRanges(c(5000, 20000), c(9000, 26000)),
#'   strand = c("+", "-"), gene_name = c("GENE1", "GENE2"))
#' if (FactVAEAvailable()) {
#'   GeneToPeak(genes, c("chr1-3500-3800", "chr1-26500-27000", "chr2-10-20"))
#' }
GeneToPeak <- function(genes, peaks, upstream = 2000) {
  peaks <- .as_peak_ranges(peaks)
  .gene_to_peak(.gene_table(genes, peaks), peaks, upstream)
}

# The prior of a gene table (from .gene_table) and named peak ranges, built by the Python core.
.gene_to_peak <- function(table, peaks, upstream) {
  if (!is.numeric(upstream) || length(upstream) != 1 || is.na(upstream) || upstream < 0 ||
      upstream != round(upstream)) {
    stop("upstream must be a whole number of bases >= 0.", call. = FALSE)
  }
  pairs <- .py_call(.factvae_core()$bridge$gene_to_peak_pairs(
    .gene_frame(table), c(.peak_var(peaks), list(name = names(peaks))), as.integer(upstream)))
  Matrix::sparseMatrix(i = as.integer(pairs$gene) + 1L, j = as.integer(pairs$peak) + 1L,
                       x = 1, dims = c(nrow(table), length(peaks)),
                       dimnames = list(table$gene_name, names(peaks)))
}

.as_peak_ranges <- function(peaks) {
  if (is.character(peaks)) return(PeakRanges(peaks))
  if (!is(peaks, "GRanges")) {
    stop("peaks must be a GRanges or a character vector of peak names.", call. = FALSE)
  }
  if (is.null(names(peaks))) {
    coords <- .peak_var(peaks)
    names(peaks) <- as.character(unlist(.py_call(.factvae_core()$bridge$peak_names_from_ranges(
      coords$chrom, coords$start, coords$end))))
  }
  peaks
}

# One row per gene (gene_name, chrom, 1-based start, end, strand) on the peaks' chromosome
# names, tidied by the Python core (see GeneToPeak's details); errors when no gene is on a
# peak chromosome.
.gene_table <- function(genes, peaks) {
  if (!is(genes, "GRanges")) {
    stop("The gene annotation must be a GRanges of genes (with a gene_name column), not ",
         class(genes)[1], ".", call. = FALSE)
  }
  name <- mcols(genes)$gene_name %||% names(genes)
  if (is.null(name)) {
    stop("The gene annotation needs a gene_name column (or names) to name its genes.",
         call. = FALSE)
  }
  name <- as.character(name)
  name[is.na(name)] <- ""
  columns <- .gene_frame(data.frame(gene_name = name, chrom = as.character(seqnames(genes)),
                                    start = start(genes), end = end(genes),
                                    strand = as.character(strand(genes)),
                                    stringsAsFactors = FALSE))
  tx <- mcols(genes)$tx_id
  if (!is.null(tx)) {
    tx <- as.character(tx)
    tx[is.na(tx)] <- ""
    columns$tx_id <- tx
  }
  found <- .py_call(.factvae_core()$bridge$gene_table(
    columns, unique(as.character(seqnames(peaks)))))
  data.frame(gene_name = as.character(unlist(found$gene_name)),
             chrom = as.character(unlist(found$chrom)),
             start = as.vector(found$start) + 1, end = as.vector(found$end),
             strand = as.character(unlist(found$strand)), stringsAsFactors = FALSE)
}

# Genes as the Python core reads them (0-based, half-open, like BED): a GRanges-style 1-based
# start s is the 0-based s - 1.
.gene_frame <- function(table) {
  list(chrom = table$chrom, start = as.integer(table$start - 1), end = as.integer(table$end),
       gene_name = table$gene_name, strand = table$strand)
}
