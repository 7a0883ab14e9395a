# Genome builds of the inputs, checked before any work: peaks of one build with genes of another
# give a prior of chance overlaps, which trains without any error.

# The genome(s) named by a GRanges, a ChromatinAssay (its seqinfo, or its ranges') or NULL.
.genomes_of <- function(x) {
  if (is.null(x)) return(character())
  if (is(x, "GRanges")) {
    found <- GenomeInfoDb::genome(x)
  } else if (inherits(x, "ChromatinAssay") && requireNamespace("Signac", quietly = TRUE)) {
    found <- c(GenomeInfoDb::genome(.assay_seqinfo(x)), GenomeInfoDb::genome(granges(x)))
  } else {
    return(character())
  }
  found <- unique(as.character(found))
  found[!is.na(found) & nzchar(found)]
}

# Stops when the ATAC assay, the annotation and the assay's existing Signac links name different
# genomes; returns the genome(s) named (none when no input names one).
.check_genomes <- function(assay, assay.name, annotation) {
  links <- if (inherits(assay, "ChromatinAssay") && requireNamespace("Signac", quietly = TRUE)) {
    getExportedValue("Signac", "Links")(assay)
  }
  named <- list(.genomes_of(assay), .genomes_of(annotation),
                if (length(links)) .genomes_of(links) else character())
  names(named) <- c(sprintf("the ATAC assay '%s'", assay.name), "the annotation",
                    sprintf("the Links() of the ATAC assay '%s'", assay.name))
  named <- Filter(length, named)
  genomes <- unique(as.character(unlist(named, use.names = FALSE)))
  if (length(genomes) > 1) {
    first <- named[[1]]
    other <- which(vapply(named, function(g) !setequal(g, first), logical(1)))[1]
    stop(sprintf(paste0("Genome builds differ: %s for %s, %s for %s. The peaks and the genes ",
                        "must come from the same build: use an annotation of %s (or lift the ",
                        "peaks over to %s)."),
                 paste(first, collapse = "/"), names(named)[1],
                 paste(named[[other]], collapse = "/"), names(named)[other],
                 paste(first, collapse = "/"), paste(named[[other]], collapse = "/")),
         call. = FALSE)
  }
  genomes
}

# With no genome named anywhere, a build mismatch shows in the data: ATAC peaks gather at TSSs
# (in real data several times the rate 100-200 kb away), while the TSSs of genes from another
# build hit peaks hardly more often than anywhere else. Measured on snare_hcellline's peaks: 14.5x
# with the build they were called on, 1.7x with the other; FactVAE's simulations: 2.3-2.9x.
.check_tss_hits <- function(table, peaks, genes, window = 1000, ratio = 2, min.genes = 200) {
  table <- table[table$gene_name %in% genes &
                   table$chrom %in% as.character(seqnames(peaks)), , drop = FALSE]
  if (nrow(table) < min.genes) return(invisible(NA_real_))
  tss <- ifelse(table$strand == "-", table$end, table$start)
  chroms <- union(table$chrom, as.character(seqnames(peaks)))
  targets <- GRanges(factor(as.character(seqnames(peaks)), chroms),
                     IRanges(start(peaks), end(peaks)))
  rate <- function(shift) {
    centre <- pmax(tss + shift, window + 1)
    mean(IRanges::overlapsAny(GRanges(factor(table$chrom, chroms),
                                      IRanges(centre - window, centre + window)),
                              targets, ignore.strand = TRUE))
  }
  at <- rate(0)
  away <- mean(vapply(c(-2e5, -1e5, 1e5, 2e5), rate, numeric(1)))
  if (away > 0 && at < ratio * away) {
    warning(sprintf(paste0(
      "The annotation's genes hit peaks far less often than usual: %.1f%% of the %d annotated ",
      "RNA genes have a peak within %d bp of their TSS, %.1fx the rate 100-200 kb away ",
      "(%.1f%%), where ATAC peaks usually gather at TSSs several times more. The annotation is ",
      "probably of another genome build than the peaks (e.g. hg19 vs hg38). Use an annotation ",
      "of the peaks' build; give both a genome (GenomeInfoDb::genome(), or a ChromatinAssay's ",
      "seqinfo) to have RunFactVAE check it."),
      100 * at, nrow(table), window, at / away, 100 * away), call. = FALSE)
  }
  invisible(at / away)
}
