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

# With matching builds ATAC peaks gather at TSSs; the annotated RNA genes' TSSs hitting peaks
# hardly more often than 100-200 kb away is the sign of another build. The rule and its one-line
# warning are the Python core's (factvae.data.builds), so R, Python and the CLI give one answer;
# it warns through .py_call. Returns the rates (at_tss, away, n_genes, ratio, warned).
.check_build <- function(table, peaks, genes) {
  invisible(.py_call(.factvae_core()$bridge$check_genome_build(
    .gene_frame(table), .peak_var(peaks), as.list(genes))))
}
