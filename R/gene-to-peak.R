#' Gene-to-peak prior (G2P) from genomic ranges
#'
#' Links each gene to the peaks that overlap its locus: the gene body extended
#' `upstream` bp before the transcription start site, on the gene's own strand
#' (genes without a strand count as `+`). This is the prior FactVAE's
#' regulatory constraint uses.
#'
#' Genes are named by the `gene_name` column (or by `names(genes)`). A gene
#' listed several times keeps its longest span; in an annotation that lists
#' exons and UTRs per transcript (one with a `tx_id` column, such as
#' Signac's), a gene spans its longest transcript. Chromosome names are
#' harmonised to the peaks' style (`chr1` vs `1`, `chrM` vs `MT`).
#'
#' @param genes A GRanges of genes with a `gene_name` column and strands, such
#'   as `Signac::Annotation()` of a ChromatinAssay.
#' @param peaks A GRanges of peaks (named by peak; unnamed ones get Signac's
#'   `chr-start-end` names) or a character vector of peak names (see
#'   [PeakRanges()]).
#' @param upstream Bases added before the TSS.
#'
#' @return A `dgCMatrix` of genes x peaks, 1 where a gene locus overlaps a
#'   peak, with gene names and peak names as dimnames.
#' @export
#' @examples
#' genes <- GenomicRanges::GRanges(
#'   c("chr1", "chr1"), IRanges::IRanges(c(5000, 20000), c(9000, 26000)),
#'   strand = c("+", "-"), gene_name = c("GENE1", "GENE2"))
#' GeneToPeak(genes, c("chr1-3500-3800", "chr1-26500-27000", "chr2-10-20"))
GeneToPeak <- function(genes, peaks, upstream = 2000) {
  peaks <- .as_peak_ranges(peaks)
  .gene_to_peak(.gene_table(genes, peaks), peaks, upstream)
}

.gene_to_peak <- function(table, peaks, upstream) {
  if (!is.numeric(upstream) || length(upstream) != 1 || is.na(upstream) || upstream < 0) {
    stop("upstream must be a number of bases >= 0.", call. = FALSE)
  }
  minus <- table$strand == "-"
  # Shared chromosome levels: GenomicRanges warns when either side has one the other lacks.
  chroms <- union(table$chrom, as.character(seqnames(peaks)))
  loci <- GRanges(factor(table$chrom, chroms), IRanges(
    ifelse(minus, table$start, pmax(table$start - upstream, 1)),
    ifelse(minus, table$end + upstream, table$end)))
  targets <- GRanges(factor(as.character(seqnames(peaks)), chroms),
                     IRanges(start(peaks), end(peaks)))
  hits <- findOverlaps(loci, targets, ignore.strand = TRUE)
  Matrix::sparseMatrix(i = queryHits(hits), j = subjectHits(hits), x = 1,
                       dims = c(nrow(table), length(peaks)),
                       dimnames = list(table$gene_name, names(peaks)))
}

.as_peak_ranges <- function(peaks) {
  if (is.character(peaks)) return(PeakRanges(peaks))
  if (!is(peaks, "GRanges")) {
    stop("peaks must be a GRanges or a character vector of peak names.", call. = FALSE)
  }
  if (is.null(names(peaks))) {
    names(peaks) <- paste(seqnames(peaks), start(peaks), end(peaks), sep = "-")
  }
  peaks
}

# One row per gene (chrom, 1-based start, end, strand, gene_name), on the peaks' chromosome names.
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
  usable <- !is.na(name) & nzchar(name) & width(genes) > 0
  tx <- mcols(genes)$tx_id
  table <- data.frame(gene_name = name, chrom = as.character(seqnames(genes)),
                      start = start(genes), end = end(genes),
                      strand = as.character(strand(genes)),
                      stringsAsFactors = FALSE)[usable, , drop = FALSE]
  if (nrow(table) == 0) {
    stop("The gene annotation has no usable genes (each needs a gene_name and a width > 0).",
         call. = FALSE)
  }
  if (!is.null(tx) && anyDuplicated(table$gene_name)) {
    table <- .transcript_spans(table, as.character(tx[usable]))
  }
  longest <- order(table$start - table$end, seq_len(nrow(table)))
  table <- table[sort(longest[!duplicated(table$gene_name[longest])]), , drop = FALSE]
  table$chrom <- .harmonise_chromosomes(table$chrom, as.character(seqnames(peaks)))
  rownames(table) <- NULL
  table
}

# Annotations that list the parts of each transcript (exons, UTRs): one row per transcript.
.transcript_spans <- function(table, tx) {
  key <- paste(table$gene_name, tx, table$chrom, table$strand, sep = "\r")
  first <- !duplicated(key)
  starts <- vapply(split(table$start, key), min, numeric(1))
  ends <- vapply(split(table$end, key), max, numeric(1))
  table <- table[first, , drop = FALSE]
  table$start <- unname(starts[key[first]])
  table$end <- unname(ends[key[first]])
  table
}

# Renames chromosomes to the style of `target` (with or without "chr"), choosing the style that
# matches most genes; errors only when no style matches any.
.harmonise_chromosomes <- function(chrom, target) {
  target <- unique(target)
  styles <- list(
    chrom,
    ifelse(chrom == "MT", "chrM", ifelse(startsWith(chrom, "chr"), chrom, paste0("chr", chrom))),
    ifelse(chrom == "chrM", "MT", sub("^chr", "", chrom))
  )
  matched <- vapply(styles, function(style) sum(style %in% target), numeric(1))
  if (max(matched) == 0) {
    stop(sprintf(paste0("The gene annotation's chromosome names (e.g. %s) match none of the ",
                        "peaks' (e.g. %s), with or without a 'chr' prefix. Use an annotation of ",
                        "the same genome as the peaks."),
                 paste(utils::head(unique(chrom), 3), collapse = ", "),
                 paste(utils::head(target, 3), collapse = ", ")), call. = FALSE)
  }
  styles[[which.max(matched)]]
}

# The genes as the Python core reads them (0-based starts, like BED).
.gene_frame <- function(table) {
  list(chrom = table$chrom, start = as.integer(table$start - 1), end = as.integer(table$end),
       gene_name = table$gene_name, strand = table$strand)
}
