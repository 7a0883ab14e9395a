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
.augment <- function(core, fit, cells, features, threshold, latent, chunk.size, verbose) {
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
                                               chunk.size, latent))
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

# The augmented assay: the expected counts in its `counts` slot, which Signac's and Seurat's
# functions read (RunTFIDF, FindTopFeatures, CoveragePlot, FindMarkers with slot = "counts"),
# and the same matrix in `data`, which the others read until RunTFIDF or NormalizeData replaces
# it. Both slots reference one R object (built with new(), not CreateAssayObject(), which would
# turn a dense matrix into a larger dgCMatrix, and not SetAssayData(), which subsets a copy), so
# the values are held in memory once. A ChromatinAssay source passes on its ranges,
# seqinfo/genome, annotation, motifs (subset to the augmented peaks) and fragment files.
.augmented_assay <- function(source, values, name = "factvaeATAC") {
  # SeuratObject 5 requires a key; Seurat's own default for an assay is its lower-case name.
  key <- paste0(gsub("[^[:alnum:]]", "", tolower(name)), "_")
  assay <- methods::new("Assay", counts = values, data = values,
                        scale.data = methods::new("matrix"), key = key,
                        meta.features = data.frame(row.names = rownames(values)), misc = list())
  if (inherits(source, "ChromatinAssay") && requireNamespace("Signac", quietly = TRUE)) {
    signac <- function(name) getExportedValue("Signac", name)
    ranges <- granges(source)
    names(ranges) <- rownames(source)
    motifs <- signac("Motifs")(source)
    if (!is.null(motifs)) motifs <- motifs[rownames(values), ]
    # The cells' fragment files too, so that CoveragePlot(assay = ) can draw this assay: it
    # scales coverage by nCount_, which here is close to the observed library size (Eq. 12).
    fragments <- signac("Fragments")(source)
    assay <- signac("as.ChromatinAssay")(
      assay, ranges = unname(ranges[rownames(values)]), seqinfo = .assay_seqinfo(source),
      annotation = signac("Annotation")(source), motifs = motifs,
      fragments = if (length(fragments)) fragments)
  }
  assay
}

# Adds the augmented assay with the per-cell totals Seurat adds for any assay (nCount_ and
# nFeature_, which CoveragePlot and QC plots read). SeuratObject 5 computes them itself on
# assignment; SeuratObject 4 does not.
.add_augmented_assay <- function(object, name, assay) {
  object[[name]] <- assay
  values <- methods::slot(assay, "counts")
  totals <- data.frame(Matrix::colSums(values), .detected(values), row.names = colnames(values))
  names(totals) <- paste0(c("nCount_", "nFeature_"), name)
  SeuratObject::AddMetaData(object, totals)
}

# Features above 0 per cell, as Seurat's nFeature_; a dense matrix is compared in blocks of
# cells so that no logical matrix of its full size is made.
.detected <- function(values) {
  if (!is.matrix(values)) return(Matrix::colSums(values > 0))
  blocks <- split(seq_len(ncol(values)), ceiling(seq_len(ncol(values)) / 1024))
  unlist(lapply(blocks, function(cols) colSums(values[, cols, drop = FALSE] > 0)),
         use.names = FALSE)
}

# A ChromatinAssay's seqinfo (where Signac keeps the genome), else that of its ranges.
.assay_seqinfo <- function(assay) {
  info <- tryCatch(GenomeInfoDb::seqinfo(assay), error = function(e) NULL)
  if (is.null(info)) info <- GenomeInfoDb::seqinfo(granges(assay))
  info
}

# Links as Signac stores them: a GRanges from the gene's TSS to the peak's centre. `rna` (the
# cells' RNA AnnData) lets every detected gene be linked, `genes` only the chosen ones;
# `annotation` (a gene frame) gives their coordinates, NULL the model's own.
.links <- function(core, fit, peaks, window, score, pvalue, seed, rna = NULL, genes = NULL,
                   annotation = NULL) {
  found <- .py_call(core$bridge$infer_links(fit, window = window, seed = seed, score = score,
                                            rna = rna, genes = genes,
                                            annotation = annotation))
  keep <- as.vector(found$pvalue) <= pvalue
  found <- lapply(found, function(column) as.vector(column)[keep])
  peak <- match(found$peak, names(peaks))
  tss <- found$tss + 1
  centre <- (start(peaks)[peak] + end(peaks)[peak]) %/% 2
  links <- GRanges(seqnames(peaks)[peak], IRanges(pmin(tss, centre), pmax(tss, centre)),
                   score = found$score, gene = found$gene, peak = found$peak,
                   covariation = found$covariation, activity = found$activity,
                   contact = found$contact, abc = found$abc, peak_share = found$peak_share,
                   evidence = found$evidence, evidence_gene = found$evidence_gene,
                   evidence_peak = found$evidence_peak, zscore = found$zscore,
                   pvalue = found$pvalue, qvalue = found$qvalue,
                   zscore_cis = found$zscore_cis, pvalue_cis = found$pvalue_cis,
                   qvalue_cis = found$qvalue_cis, distance = found$distance,
                   in_prior = as.logical(found$in_prior), modelled = as.logical(found$modelled),
                   gene_detection = as.numeric(found$gene_detection),
                   seqinfo = GenomeInfoDb::seqinfo(peaks))
  # Sorted by position, as Signac's LinkPeaks returns them.
  links[order(links)]
}

# The links become Signac's Links() of the ATAC assay and of the augmented assay (which
# CoveragePlot(assay = ) draws), when they are ChromatinAssays.
.set_signac_links <- function(object, assays, links) {
  if (!requireNamespace("Signac", quietly = TRUE)) return(object)
  for (assay in intersect(assays, SeuratObject::Assays(object))) {
    if (inherits(object[[assay]], "ChromatinAssay")) {
      object[[assay]] <- getExportedValue("Signac", "Links<-")(object[[assay]], value = links)
    }
  }
  object
}

#' Gene-peak links inferred by FactVAE
#'
#' The links [RunFactVAE()] found with `links = TRUE`, in Signac's format: a
#' GRanges spanning each gene's TSS and the centre of the linked peak, with the
#' columns
#' * `score`: the ranking (see `link.score` in [RunFactVAE()]); by default the
#'   posterior (0-1) of a two-group model from `contact`, `peak_share` and
#'   `evidence`;
#' * `gene`, `peak`, `distance` (signed bases from the TSS, negative upstream);
#' * `covariation`: the model's co-variation of the pair over cells (the
#'   correlation of the gene's and the peak's decoder contributions; the
#'   cosine with `link.score = "cosine"`), the statistic both tests use;
#' * `activity` (share of cells where the peak is open), `contact` (power-law
#'   contact of its distance, 1 within 5 kb) and `abc` (activity x contact as a
#'   share of the gene's candidates): the Activity-by-Contact ingredients;
#' * `peak_share`: `contact` as a share of the peak's contact with every
#'   annotated TSS within the window (near another gene's promoter, low);
#' * `evidence`: the default score's evidence, `evidence_gene` and
#'   `evidence_peak` joined into one z-score (their sum over
#'   `sqrt(2 + 2r)`, `r` their correlation over the candidates outside the
#'   prior, so that it stays N(0, 1) for unlinked pairs);
#' * `evidence_gene`: the co-variation's z-score against the same gene with
#'   every peak on other chromosomes, whatever its accessibility;
#' * `evidence_peak`: its z-score against the same peak with every gene on
#'   other chromosomes detected in about as many cells (every gene the counts
#'   detect, whichever are linked), so a peak that co-varies with genes
#'   everywhere counts less;
#' * `zscore`, `pvalue`, `qvalue`: the co-variation against the same gene with
#'   every peak of matched accessibility on other chromosomes, as Signac's
#'   `LinkPeaks()` tests it with a random draw of them (here the background's
#'   mean and sd are exact, so the p-values do not depend on a seed; `qvalue`:
#'   Benjamini-Hochberg over all candidates);
#' * `zscore_cis`, `pvalue_cis`, `qvalue_cis`: the co-variation against
#'   candidate pairs outside the prior at a similar distance from the TSS with
#'   similarly accessible peaks, i.e. evidence beyond distance;
#' * `in_prior` (the pair is in the gene-to-peak prior the model was trained
#'   with, so its co-variation says little beyond that input) and `modelled`
#'   (the gene is one of the model's genes; the others are linked through a
#'   ridge regression of their expression on the RNA latent, and a modelled
#'   gene through its decoder factor blended with that regression, the factor
#'   weighing more the more cells express the gene);
#' * `gene_detection`: the share of cells expressing the gene. Genes seen in
#'   few cells carry little co-variation evidence, so their links rank by
#'   proximity; keep `gene_detection >= 0.01` for the genes in at least 1% of
#'   cells.
#'
#' Works with or without Signac; on a ChromatinAssay, `Signac::Links()` returns
#' the same links.
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
