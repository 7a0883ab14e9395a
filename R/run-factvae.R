#' Run FactVAE on a multiome Seurat object
#'
#' Trains FactVAE on the raw counts of an RNA assay and an ATAC assay of the
#' same cells (or reuses a saved model) and adds its results to the object:
#' joint, RNA and ATAC cell embeddings as dimensional reductions, optionally
#' the augmented ATAC matrix as an assay and gene-peak links.
#'
#' Counts are read from the `counts` layer (SeuratObject 5, split layers
#' joined) or slot (SeuratObject 4) and reach Python as sparse matrices. Peak
#' ranges come from the ChromatinAssay when Signac is installed, otherwise
#' from the peak names ([PeakRanges()]). The gene-to-peak prior is built with
#' [GeneToPeak()] from `annotation`, unless `g2p` gives it.
#'
#' The model is saved at `model.path` and recorded, with the settings, in
#' `Tool(object, "RunFactVAE")` and in the reductions' `misc`. Give that path
#' as `model` to add the augmented ATAC or the links later without retraining;
#' the model's own settings then apply.
#'
#' @param object A Seurat object.
#' @param rna.assay,atac.assay Names of the RNA and the ATAC assay.
#' @param annotation A GRanges of genes (`gene_name` column, strands); by
#'   default `Signac::Annotation()` of the ATAC assay when there is one. Needed
#'   to build the prior (unless `g2p` is given) and for `links = TRUE`. When
#'   the ATAC assay (a ChromatinAssay's seqinfo), the annotation or the
#'   assay's existing links carry a genome (`GenomeInfoDb::genome()`), they
#'   must agree, or RunFactVAE stops before any work. When none carries one,
#'   a warning says when the genes' TSSs hit peaks no more than twice as often
#'   as places 100-200 kb away (usually a genome build mismatch).
#' @param g2p A ready gene-to-peak prior: a genes x peaks (sparse) Matrix with
#'   gene names and peak names as dimnames, non-zero where a gene and a peak
#'   are linked. Genes and peaks outside the assays are ignored.
#' @param n.latent Latent dimensions per modality. The joint embedding has as
#'   many, or twice as many when it concatenates the halves (`joint.embedding`).
#' @param n.hvg Number of highly variable genes the model uses.
#' @param joint.embedding How the joint reduction combines the RNA and ATAC
#'   halves: `"average"` of each cell's RNA and ATAC means, each taken from
#'   its half's centre (the training cells' mean) and scaled to unit length,
#'   the ATAC weighted less (the core's `joint_atac_share`; `n.latent` columns),
#'   or `"concatenate"`, the paper's Eq. 14 (`2 * n.latent` columns). `NULL`
#'   takes the preset's: `"average"` for `"default"`, `"concatenate"` for
#'   `"paper"`. It does not change training. The RNA and ATAC reductions are
#'   each half as the joint one reads it: with `"average"` centred and at
#'   unit length (a cell's latent length follows its depth more than its
#'   type), with `"concatenate"` the posterior means.
#'   With `model`, the model's own applies.
#' @param atac.weight Weight of the ATAC reconstruction loss. `NULL` (the
#'   default): the authors' 0.002 up to their 27,399 peaks, and in proportion
#'   to the peaks above that (0.0073 for 100,000 peaks), where 0.002 leaves
#'   the peak embeddings under-fitted and distal links poorly ranked.
#' @param likelihood Count likelihood: zero-inflated (`"zinb"`) or plain
#'   (`"nb"`) negative binomial.
#' @param batch Name of a column of the object's meta data (`object[[]]`)
#'   holding each cell's sample or batch, such as `"sample"`; `NULL` (the
#'   default) for one batch. The decoders then learn a per-feature offset for
#'   each batch (the Python core's `batch_key`), and a batch-mixing term (the
#'   core's `batch_mmd_weight`, squared MMD between each batch and all cells)
#'   asks both halves of the latent to mix the batches, so the embeddings are
#'   free of it. Every cell needs a value (no `NA`). The column is recorded in
#'   `Tool(object, "RunFactVAE")$batch`; new samples are mapped onto the model
#'   with [MapFactVAE()]. With `model`, it must be the column the model was
#'   trained with (or `NULL`).
#' @param rna.reduction,atac.reduction Names of existing reductions (such as
#'   `"pca"` and Signac's `"lsi"`) to use as the encoders' inputs instead of
#'   the ones the model computes.
#' @param upstream Bases before the TSS added to each gene locus in the prior.
#' @param preset `"default"` (made for data of any size: bounded encoder
#'   inputs, validation cells, early stopping, epochs that shrink as cells
#'   grow) or `"paper"` (the authors' 300 epochs on every cell, exactly).
#' @param max.epochs Most epochs to train; `NULL` takes the preset's: for
#'   `"default"` about 500,000 cell passes (300 epochs for 1,000 cells, 54
#'   for 10,000, 10 at most for 50,000), 300 for `"paper"`.
#' @param early.stopping Stop once neither modality's loss on the held-out
#'   validation cells has reached a new low for `patience` epochs, and keep
#'   the weights of the last epoch at which one did; `NULL` takes the
#'   preset's (on for `"default"`).
#' @param validation.fraction Share of cells held out (seeded by `seed`) to
#'   watch for early stopping; `NULL` takes the preset's (0.1 for
#'   `"default"`, 0 for `"paper"`).
#' @param patience Epochs without improvement before stopping; `NULL` is a
#'   tenth of `max.epochs` (at least 5).
#' @param batch.size Minibatch size.
#' @param device `"auto"` (a GPU when there is one), `"cpu"` or `"cuda"`.
#' @param precision `"bf16"` runs the decoders' large matrix products in
#'   bf16 (autocast on a GPU) while the likelihood's arithmetic stays float32;
#'   `"float32"` runs everything in float32; `"auto"` picks bf16 on CPUs with
#'   native bf16 units and float32 elsewhere.
#' @param seed Random seed of training, augmentation and link inference.
#' @param model Path of a model saved by an earlier call, to reuse it
#'   instead of training a new one. It must have been trained on these cells.
#' @param model.path Where to save the trained model; by default a file in
#'   the session's temporary folder.
#' @param augment Add the augmented ATAC matrix as the assay `augment.assay`
#'   (a ChromatinAssay with the source's ranges, seqinfo/genome, annotation,
#'   motifs and fragment files when Signac is there, a plain Assay
#'   otherwise), with the
#'   metadata columns `nCount_<augment.assay>` and `nFeature_<augment.assay>`.
#'   Its values (expected counts, Eq. 12, decoded by default at the ATAC
#'   latent each cell's joint embedding points to: the ATAC half's length
#'   along the joint direction, so the RNA half informs them; with
#'   `preset = "paper"` or `augment.latent = "atac"` at the ATAC half's
#'   means) are in the `counts` slot, which
#'   Signac's `RunTFIDF()`, `FindTopFeatures()` and `CoveragePlot()` read, and
#'   the same matrix is in `data`, which Seurat's functions read until
#'   `RunTFIDF()` or `NormalizeData()` replaces it. Both slots reference one
#'   matrix, so it is held in memory once.
#' @param augment.assay Name of the augmented assay.
#' @param augment.features Peaks to augment (default: all the peaks the model
#'   uses, i.e. those with counts in some cell).
#' @param augment.threshold Values below it are dropped, which keeps the
#'   matrix sparse. With the default `NULL` the matrix is dense, and an error
#'   is raised beforehand when it would exceed
#'   `getOption("factvae.max.dense.gb", 4)` GB.
#' @param augment.latent Which ATAC latent the augmented matrix decodes:
#'   `"joint"` (the default), the latent each cell's joint embedding points
#'   to, so the RNA half informs it (described under `augment`), or `"atac"`,
#'   the ATAC half's posterior means alone (Eq. 12 as the paper states it).
#'   It applies to `augment` and to `augment.file`, and is kept in
#'   `Tool(object, "RunFactVAE")$augment.latent`.
#' @param augment.file A path ending in `.h5ad`: stream the augmented matrix
#'   (cells x peaks, thresholded by `augment.threshold` when given) to this
#'   AnnData file chunk by chunk, so memory stays bounded by `chunk.size`
#'   whatever the matrix's size. It is written in addition to, and
#'   independently of, `augment = TRUE`; its path is kept in
#'   `Tool(object, "RunFactVAE")$augment.file`.
#' @param chunk.size Cells per chunk when computing the augmented matrix.
#' @param links Infer gene-peak links (see [FactVAELinks()]), sorted and with
#'   the peaks' seqinfo; on a ChromatinAssay they are also set as its Signac
#'   `Links()`, and as those of the augmented assay when it is one.
#' @param link.window Largest distance, in bases, between a gene's TSS and a
#'   linked peak.
#' @param link.score How links are ranked: `"combined"` (the default), the
#'   posterior probability of a link under a two-group model fitted to the
#'   candidates outside the model's prior (whose pairs training tied
#'   together): its prior is the peak's power-law contact with the TSS (as the
#'   Activity-by-Contact model without Hi-C) times `peak_share`, the share of
#'   the peak's contact that goes to this gene rather than to other annotated
#'   TSSs near it; its evidence (`evidence`) the z-score of the model's
#'   co-variation of the pair against the gene's with every peak on other
#'   chromosomes joined with its z-score against the peak's with every gene
#'   on other chromosomes, so the co-variation counts as much as the data
#'   show it does; `"abc"`, the peak's accessibility times that
#'   contact, as a share of its gene's candidates; `"correlation"`, the co-variation alone: the
#'   correlation over cells of the gene's and the peak's contributions to the
#'   model's decoders, which does not depend on how the RNA and ATAC latent
#'   spaces are rotated against each other; or `"cosine"`, the paper's cosine
#'   of the gene and peak embeddings, which is highest for the prior's own pairs
#'   by construction.
#' @param link.pvalue Keep links with a `pvalue` up to this: the pair's
#'   co-variation against the same gene with peaks of matched accessibility on
#'   other chromosomes, as Signac's `LinkPeaks()` tests it. The table also has
#'   `pvalue_cis`, against pairs at the same distance (see [FactVAELinks()]).
#' @param link.genes Genes to link (as `genes.use` of Signac's `LinkPeaks()`);
#'   `NULL` links every annotated gene of the RNA assay detected in any cell
#'   (the core's `link_min_cells`), not only the modelled variable genes;
#'   the links' `gene_detection` column lets you keep the well-measured ones.
#' @param reduction.name Name of the joint reduction; the RNA and ATAC ones
#'   get the suffixes `.rna` and `.atac`.
#' @param reduction.key Key of the joint reduction; the RNA and ATAC ones
#'   insert `RNA` and `ATAC` before the underscore.
#' @param verbose Show progress.
#' @param ... Not used; unknown arguments are an error.
#'
#' @return The Seurat object with the reductions (and assay) added and the
#'   command logged.
#' @export
#' @examples
#' \dontrun{
#' obj <- SimulateMultiome(n.cells = 600)
#' obj <- RunFactVAE(obj, annotation = SeuratObject::Misc(obj, "annotation"),
#'                   max.epochs = 50, links = TRUE, augment = TRUE)
#' obj <- Seurat::RunUMAP(obj, reduction = "factvae", dims = 1:50)
#' }
RunFactVAE <- function(object, ...) {
  UseMethod("RunFactVAE")
}

#' @rdname RunFactVAE
#' @export
RunFactVAE.Seurat <- function(object, rna.assay = "RNA", atac.assay = "ATAC", annotation = NULL,
                              g2p = NULL, n.latent = 50, n.hvg = 2000,
                              joint.embedding = NULL, atac.weight = NULL,
                              likelihood = c("zinb", "nb"), batch = NULL, rna.reduction = NULL,
                              atac.reduction = NULL, upstream = 2000, preset = "default",
                              max.epochs = NULL, early.stopping = NULL,
                              validation.fraction = NULL, patience = NULL,
                              batch.size = 128, device = "auto",
                              precision = "auto", seed = 0, model = NULL,
                              model.path = NULL, augment = FALSE, augment.assay = "factvaeATAC",
                              augment.features = NULL, augment.threshold = NULL,
                              augment.latent = "joint", augment.file = NULL,
                              chunk.size = 1024, links = FALSE, link.window = 150000,
                              link.score = "combined", link.pvalue = 0.05, link.genes = NULL,
                              reduction.name = "factvae",
                              reduction.key = "FactVAE_", verbose = TRUE, ...) {
  if (...length() > 0) {
    stop("Unknown argument(s) to RunFactVAE: ", paste(names(list(...)), collapse = ", "),
         call. = FALSE)
  }
  likelihood <- match.arg(likelihood)
  if (!is.character(precision) || length(precision) != 1 ||
      !precision %in% c("auto", "float32", "bf16")) {
    stop("precision must be \"auto\", \"float32\" or \"bf16\".", call. = FALSE)
  }
  settings <- list(n.latent = .whole(n.latent, 1), n.hvg = .whole(n.hvg, 1),
                   joint.embedding = if (!is.null(joint.embedding)) .one_string(joint.embedding),
                   atac.weight = if (!is.null(atac.weight)) .positive_number(atac.weight),
                   likelihood = likelihood, preset = .one_string(preset),
                   max.epochs = if (!is.null(max.epochs)) .whole(max.epochs, 1),
                   early.stopping = if (!is.null(early.stopping)) .flag(early.stopping),
                   validation.fraction = if (!is.null(validation.fraction))
                     .fraction(validation.fraction),
                   patience = if (!is.null(patience)) .whole(patience, 1),
                   batch.size = .whole(batch.size, 2), device = device, precision = precision,
                   seed = .whole(seed, 0),
                   upstream = .whole(upstream, 0))
  chunk.size <- .whole(chunk.size, 1)
  link.window <- .whole(link.window, 0)
  if (!is.numeric(link.pvalue) || length(link.pvalue) != 1 || is.na(link.pvalue)) {
    stop("link.pvalue must be a number (1 keeps every candidate link).", call. = FALSE)
  }
  if (!is.null(link.genes) && (!is.character(link.genes) || anyNA(link.genes))) {
    stop("link.genes must be NULL or a character vector of gene names.", call. = FALSE)
  }
  outputs <- .output_names(object, reduction.name, reduction.key, rna.assay, atac.assay,
                         if (augment) augment.assay)

  # Everything that can be checked is checked before training starts.
  counts <- .match_cells(.assay_counts(object, rna.assay, "rna.assay"),
                         .assay_counts(object, atac.assay, "atac.assay"), rna.assay, atac.assay)
  cells <- colnames(counts$rna)
  batch.values <- .batch_values(object, batch, cells)
  peaks <- .assay_peak_ranges(object, atac.assay, rownames(counts$atac))
  augment.file <- .augment_file(augment.file)
  features <- .augment_features(augment, augment.features, augment.threshold, names(peaks),
                                length(cells), augment.file)
  if (is.null(model)) {
    prior <- .prior(object, atac.assay, annotation, g2p, rownames(counts$rna), peaks, upstream)
    if (links && is.null(prior$genes)) {
      stop("links = TRUE needs the genes' coordinates: give annotation = a GRanges of genes.",
           call. = FALSE)
    }
    reps <- list(rna = .reduction_input(object, rna.reduction, cells, "rna.reduction"),
                 atac = .reduction_input(object, atac.reduction, cells, "atac.reduction"))
  }

  core <- .factvae_core()
  choices <- .py_call(core$bridge$choices())
  link.score <- .choice(link.score, unlist(choices$link_score))
  augment.latent <- .choice(augment.latent, unlist(choices$augment_latent))
  if (is.null(model)) {
    model.path <- model.path %||% tempfile("factvae-model-")
    fit <- .train(core, counts, peaks, prior, reps, settings, verbose,
                  if (!is.null(batch)) stats::setNames(list(batch.values), batch))
    .py_call(fit$save(model.path))
    trained <- TRUE
  } else {
    fit <- .py_call(core$module$FactVAE$load(path.expand(model)))
    model.path <- model
    trained <- FALSE
  }
  fitted <- .py_call(core$bridge$model_summary(fit))
  keys <- unlist(.py_call(core$bridge$model_features(fit))$batch_keys)
  if (!is.null(batch) && !identical(keys, batch)) {
    stop("The model at ", model.path, " was trained with batch = ",
         if (length(keys)) paste0("'", paste(keys, collapse = "', '"), "'") else "NULL",
         ", not '", batch, "'; leave batch = NULL to reuse it, or train a new one with ",
         "model = NULL.", call. = FALSE)
  }
  if (!setequal(fitted$cells, cells)) {
    stop("The model at ", model.path, " was trained on other cells than this object's; ",
         "train a new one with model = NULL.", call. = FALSE)
  }

  # A reused model keeps the settings it was trained with (recorded by the call that trained it).
  record <- list(model.path = model.path, python.version = core$version, cells = length(cells))
  if (trained) {
    record$settings <- settings
    record$batch <- batch
  }
  order <- match(cells, fitted$cells)
  latent <- function(kind) .py_call(fit$get_latent(kind = kind))[order, , drop = FALSE]
  object <- .add_reductions(object, latent, fitted, cells, outputs, rna.assay, atac.assay, record)
  info <- if (trained) list() else SeuratObject::Tool(object, slot = "RunFactVAE") %||% list()
  info[names(record)] <- record
  info$reductions <- unname(unlist(outputs$reductions))
  if (augment) {
    values <- .augment(core, fit, cells, features %||% fitted$peaks, augment.threshold,
                       augment.latent, chunk.size, verbose)
    object <- .add_augmented_assay(object, augment.assay,
                                   .augmented_assay(object[[atac.assay]], values,
                                                    augment.assay))
    info$augment.assay <- augment.assay
  }
  if (!is.null(augment.file)) {
    if (verbose) message("FactVAE: streaming the augmented ATAC to ", augment.file)
    .py_call(fit$augment_atac(cells = as.list(cells), peaks = as.list(features %||% fitted$peaks),
                              chunk_size = chunk.size, threshold = augment.threshold,
                              latent = augment.latent, out = augment.file))
    info$augment.file <- augment.file
  }
  if (augment || !is.null(augment.file)) info$augment.latent <- augment.latent
  if (links) {
    found <- .links(core, fit, peaks, link.window, link.score, link.pvalue, settings$seed,
                    .py_call(core$bridge$anndata_from_counts(counts$rna, cells,
                                                             rownames(counts$rna))),
                    link.genes, .link_annotation(object, atac.assay, annotation, peaks,
                                                 if (trained) prior))
    object <- .set_signac_links(object, c(atac.assay, if (augment) augment.assay), found)
    info$links <- found
  }
  object@tools[["RunFactVAE"]] <- info
  # Logged by hand to name the assay it used (Seurat warns about a command without one).
  command <- SeuratObject::LogSeuratCommand(object = object, return.command = TRUE)
  command@assay.used <- rna.assay
  object[[command@name]] <- command
  object
}

.one_string <- function(x) {
  name <- deparse(substitute(x))
  if (!is.character(x) || length(x) != 1 || is.na(x)) {
    stop(sprintf("%s must be one string.", name), call. = FALSE)
  }
  x
}

# One of the values the core takes for an output option (the core owns the list).
.choice <- function(x, allowed) {
  name <- deparse(substitute(x))
  if (!is.character(x) || length(x) != 1 || is.na(x) || !x %in% allowed) {
    stop(sprintf("%s must be one of %s.", name, paste0("\"", allowed, "\"", collapse = ", ")),
         call. = FALSE)
  }
  x
}

.flag <- function(x) {
  name <- deparse(substitute(x))
  if (!is.logical(x) || length(x) != 1 || is.na(x)) {
    stop(sprintf("%s must be TRUE or FALSE.", name), call. = FALSE)
  }
  x
}

# A number; its range is checked by the Python settings, the one owner of that rule.
.fraction <- function(x) {
  name <- deparse(substitute(x))
  if (!is.numeric(x) || length(x) != 1 || is.na(x)) {
    stop(sprintf("%s must be a number.", name), call. = FALSE)
  }
  as.numeric(x)
}

# A whole number >= lowest, as an integer (reticulate would pass 50 as the float 50.0).
.positive_number <- function(x) {
  name <- deparse(substitute(x))
  if (!is.numeric(x) || length(x) != 1 || !is.finite(x) || x <= 0) {
    stop(sprintf("%s must be a positive number.", name), call. = FALSE)
  }
  as.numeric(x)
}

.whole <- function(x, lowest) {
  name <- deparse(substitute(x))
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x != round(x) || x < lowest) {
    stop(sprintf("%s must be a whole number >= %d.", name, lowest), call. = FALSE)
  }
  as.integer(x)
}

# Names of the new reductions and assay, checked against what the object already holds.
.output_names <- function(object, reduction.name, reduction.key, rna.assay, atac.assay,
                          augment.assay) {
  if (!grepl("^[A-Za-z][A-Za-z0-9]*_$", reduction.key)) {
    stop("reduction.key must be letters and digits ending in '_', such as 'FactVAE_'.",
         call. = FALSE)
  }
  stem <- sub("_$", "", reduction.key)
  reductions <- list(joint = reduction.name, rna = paste0(reduction.name, ".rna"),
                     atac = paste0(reduction.name, ".atac"))
  keys <- list(joint = reduction.key, rna = paste0(stem, "RNA_"), atac = paste0(stem, "ATAC_"))
  taken <- setdiff(names(object), SeuratObject::Reductions(object))
  clash <- intersect(unlist(reductions), c(taken, augment.assay))
  if (length(clash)) {
    stop("reduction.name gives names already used by assays or graphs: ",
         paste(clash, collapse = ", "), "; choose another reduction.name.", call. = FALSE)
  }
  if (!is.null(augment.assay)) {
    if (augment.assay %in% c(rna.assay, atac.assay) ||
        augment.assay %in% setdiff(names(object), SeuratObject::Assays(object))) {
      stop("augment.assay = '", augment.assay, "' would replace an input assay or clash with ",
           "a reduction or graph; choose another name.", call. = FALSE)
    }
  }
  list(reductions = reductions, keys = keys)
}

# The prior as (gene, peak) pairs among the assays' features, and the genes' coordinates.
.prior <- function(object, atac.assay, annotation, g2p, genes, peaks, upstream) {
  annotation <- annotation %||% .signac_annotation(object[[atac.assay]])
  .check_genomes(object[[atac.assay]], atac.assay, annotation)
  table <- if (!is.null(annotation)) .gene_table(annotation, peaks)
  if (!is.null(table)) .check_build(table, peaks, genes)
  if (is.null(g2p)) {
    if (is.null(table)) {
      stop("RunFactVAE needs the genes' coordinates to build the gene-to-peak prior: give ",
           "annotation = a GRanges of genes (with a gene_name column), or g2p = a genes x ",
           "peaks Matrix.", call. = FALSE)
    }
    g2p <- .gene_to_peak(table, peaks, upstream)
  }
  list(pairs = .g2p_pairs(g2p, genes, names(peaks)), genes = table)
}

# The genes' coordinates for the links: the prior's table when this call trained the model,
# else the annotation given (or the ATAC assay's); NULL leaves the model's own.
.link_annotation <- function(object, atac.assay, annotation, peaks, prior = NULL) {
  table <- prior$genes
  if (is.null(table)) {
    annotation <- annotation %||% .signac_annotation(object[[atac.assay]])
    if (!is.null(annotation)) table <- .gene_table(annotation, peaks)
  }
  if (!is.null(table)) as.data.frame(.gene_frame(table))
}

.signac_annotation <- function(assay) {
  if (inherits(assay, "ChromatinAssay") && requireNamespace("Signac", quietly = TRUE)) {
    getExportedValue("Signac", "Annotation")(assay)
  }
}

# Linked (gene, peak) pairs whose gene and peak are features of the assays.
.g2p_pairs <- function(g2p, genes, peaks) {
  if (!(is(g2p, "Matrix") || is.matrix(g2p)) || is.null(rownames(g2p)) ||
      is.null(colnames(g2p))) {
    stop("g2p must be a genes x peaks Matrix with gene names and peak names as dimnames.",
         call. = FALSE)
  }
  triplets <- as(as(as(as(g2p, "CsparseMatrix"), "generalMatrix"), "dMatrix"), "TsparseMatrix")
  linked <- triplets@x != 0
  pairs <- data.frame(gene = rownames(g2p)[triplets@i[linked] + 1L],
                      peak = colnames(g2p)[triplets@j[linked] + 1L], stringsAsFactors = FALSE)
  pairs <- pairs[pairs$gene %in% genes & pairs$peak %in% peaks, , drop = FALSE]
  if (nrow(pairs) == 0) {
    stop(sprintf(paste0("No gene of the RNA assay overlaps a peak of the ATAC assay in the ",
                        "gene-to-peak prior (%d of its %d genes are RNA features, %d of its %d ",
                        "peaks are ATAC features). Check that the annotation's gene names match ",
                        "the RNA features and that it is of the peaks' genome build."),
                 sum(rownames(g2p) %in% genes), nrow(g2p), sum(colnames(g2p) %in% peaks),
                 ncol(g2p)), call. = FALSE)
  }
  rownames(pairs) <- NULL
  pairs
}

# An existing reduction's embeddings, in the model's cell order, as an encoder input.
.reduction_input <- function(object, reduction, cells, arg) {
  if (is.null(reduction)) return(NULL)
  if (!reduction %in% SeuratObject::Reductions(object)) {
    stop(arg, " = '", reduction, "' is not a reduction of the object.", call. = FALSE)
  }
  SeuratObject::Embeddings(object[[reduction]])[cells, , drop = FALSE]
}

.train <- function(core, counts, peaks, prior, reps, settings, verbose, obs = NULL) {
  pair <- .anndata_pair(core, counts, peaks, obs)
  rna <- pair$rna
  atac <- pair$atac
  cells <- colnames(counts$rna)
  genes <- if (!is.null(prior$genes)) as.data.frame(.gene_frame(prior$genes))
  if (verbose) {
    message(sprintf("FactVAE: %d cells, %d genes, %d peaks, %d gene-peak pairs in the prior",
                    length(cells), nrow(counts$rna), nrow(counts$atac), nrow(prior$pairs)))
  }
  # joint_embedding only when given: None is not a rule, and leaving it out takes the preset's.
  chosen <- list(joint_embedding = settings$joint.embedding)
  fit <- .py_call(do.call(core$module$FactVAE, c(list(
    rna, atac, gene_annotation = genes, g2p = prior$pairs,
    n_latent = settings$n.latent,
    n_hvg = settings$n.hvg, atac_recon_weight = settings$atac.weight,
    rna_rep = reps$rna, atac_rep = reps$atac, batch_key = names(obs),
    likelihood = settings$likelihood, preset = settings$preset,
    check_build = FALSE), Filter(Negate(is.null), chosen))))  # .prior has checked the build
  .py_call(fit$fit(max_epochs = settings$max.epochs, batch_size = settings$batch.size,
                   device = settings$device, seed = settings$seed, progress = verbose,
                   precision = settings$precision, early_stopping = settings$early.stopping,
                   validation_fraction = settings$validation.fraction,
                   patience = settings$patience))
  fit
}

# The cells' RNA and ATAC counts as the AnnData pair the core reads (cells in the RNA assay's
# order); `obs` (a named list of per-cell values, such as the batch column) goes in rna.obs.
.anndata_pair <- function(core, counts, peaks, obs = NULL) {
  bridge <- core$bridge
  cells <- colnames(counts$rna)
  list(rna = .py_call(bridge$anndata_from_counts(counts$rna, cells, rownames(counts$rna),
                                                 obs = obs)),
       atac = .py_call(bridge$anndata_from_counts(counts$atac, cells, rownames(counts$atac),
                                                  var = .peak_var(peaks))))
}

# The values of the meta data column `batch` for `cells`, as strings; NULL without a batch.
.batch_values <- function(object, batch, cells, arg = "batch") {
  if (is.null(batch)) return(NULL)
  if (!is.character(batch) || length(batch) != 1 || is.na(batch)) {
    stop(arg, " must be NULL or the name of one meta data column (such as \"sample\").",
         call. = FALSE)
  }
  meta <- object[[]]
  if (!batch %in% colnames(meta)) {
    stop(sprintf(paste0("%s = '%s' is not a meta data column of the object (its columns: %s). ",
                        "Add each cell's sample there first, e.g. object$%s <- <one value per ",
                        "cell>, or name an existing column."),
                 arg, batch, paste(utils::head(colnames(meta), 10), collapse = ", "), batch),
         call. = FALSE)
  }
  values <- meta[cells, batch]
  missing <- is.na(values)
  if (any(missing)) {
    stop(sprintf(paste0("%s = '%s': %d cells have no value (NA), e.g. %s. Give every cell a ",
                        "batch (e.g. a level \"unknown\") or subset the object to the cells ",
                        "that have one."),
                 arg, batch, sum(missing), paste(utils::head(cells[missing], 3), collapse = ", ")),
         call. = FALSE)
  }
  as.character(values)
}

# Adds the joint, RNA and ATAC reductions; latent(kind) gives the embeddings in `cells`' order.
.add_reductions <- function(object, latent, fitted, cells, outputs, rna.assay, atac.assay, misc) {
  loadings <- list(joint = NULL, rna = fitted$gene_embeddings, atac = fitted$peak_embeddings)
  rownames(loadings$rna) <- fitted$genes
  rownames(loadings$atac) <- fitted$peaks
  assays <- list(joint = rna.assay, rna = rna.assay, atac = atac.assay)
  for (kind in c("joint", "rna", "atac")) {
    embeddings <- latent(kind)
    key <- outputs$keys[[kind]]
    dims <- paste0(key, seq_len(ncol(embeddings)))
    dimnames(embeddings) <- list(cells, dims)
    load <- loadings[[kind]] %||% new("matrix")
    if (length(load)) colnames(load) <- dims
    object[[outputs$reductions[[kind]]]] <- SeuratObject::CreateDimReducObject(
      embeddings = embeddings, loadings = load, key = key, assay = assays[[kind]], misc = misc)
  }
  object
}
