# RunFactVAE end to end on simulated data, trained for a few epochs (quick enough for R CMD
# check). The real-data checks of quality are in test-real-data.R.

test_that("SimulateMultiome gives RNA and ATAC counts, cell types and the annotation", {
  skip_if_no_core()
  object <- simulated_fit()$input
  expect_identical(SeuratObject::Assays(object), c("RNA", "ATAC"))
  expect_equal(ncol(object), 300)  # a double on SeuratObject 5's Assay5
  expect_setequal(unique(object$cell_type), paste0("type", 1:4))
  atac <- layer_data(object, "ATAC", "counts")
  expect_s4_class(atac, "dgCMatrix")
  expect_true(all(atac@x == round(atac@x)))
  expect_s4_class(PeakRanges(rownames(atac)), "GRanges")
  annotation <- SeuratObject::Misc(object, "annotation")
  expect_true(all(rownames(object[["RNA"]]) %in% annotation$gene_name))
  truth <- SeuratObject::Misc(object, "true.links")
  expect_true(all(truth$peak %in% rownames(atac)))
  expect_true(all(truth$gene %in% rownames(object[["RNA"]])))
})

test_that("RunFactVAE adds joint, RNA and ATAC reductions of the object's cells", {
  skip_if_no_core()
  fit <- simulated_fit()$fit
  expect_true(all(c("factvae", "factvae.rna", "factvae.atac") %in% SeuratObject::Reductions(fit)))
  dims <- c(factvae = 10L, factvae.rna = 10L, factvae.atac = 10L)
  keys <- c(factvae = "FactVAE_", factvae.rna = "FactVAERNA_", factvae.atac = "FactVAEATAC_")
  for (name in names(dims)) {
    embeddings <- SeuratObject::Embeddings(fit, reduction = name)
    expect_identical(rownames(embeddings), colnames(fit))
    expect_identical(ncol(embeddings), dims[[name]])
    expect_true(all(is.finite(embeddings)))
    expect_identical(SeuratObject::Key(fit[[name]]), keys[[name]])
  }
  # Gene and peak embeddings are the per-modality loadings.
  genes <- SeuratObject::Loadings(fit[["factvae.rna"]])
  peaks <- SeuratObject::Loadings(fit[["factvae.atac"]])
  expect_identical(ncol(genes), 10L)
  expect_true(all(rownames(genes) %in% rownames(fit[["RNA"]])))
  expect_true(all(rownames(peaks) %in% rownames(fit[["ATAC"]])))
  expect_gt(nrow(peaks), 0.9 * nrow(fit[["ATAC"]]))
  expect_identical(SeuratObject::DefaultAssay(fit[["factvae.atac"]]), "ATAC")
})

test_that("joint.embedding = \"concatenate\" gives the paper's joint reduction; others are refused", {
  skip_if_no_core()
  object <- simulated_fit()$input
  annotation <- SeuratObject::Misc(object, "annotation")
  fit <- suppressWarnings(RunFactVAE(object, annotation = annotation, n.latent = 10, n.hvg = 300,
                                     max.epochs = 2, joint.embedding = "concatenate",
                                     verbose = FALSE))
  joint <- SeuratObject::Embeddings(fit, reduction = "factvae")
  rna <- SeuratObject::Embeddings(fit, reduction = "factvae.rna")
  atac <- SeuratObject::Embeddings(fit, reduction = "factvae.atac")
  expect_identical(ncol(joint), 20L)
  # Eq. 14 with the ATAC half's spread capped: [c * z_atac, z_rna], c in (0, 1]
  expect_equal(unname(joint[, 11:20]), unname(rna), tolerance = 1e-6)
  scale <- sum(joint[, 1:10] * atac) / sum(atac^2)
  expect_gt(scale, 0)
  expect_lte(scale, 1 + 1e-6)
  expect_lt(max(abs(joint[, 1:10] - scale * atac)), 1e-5)
  expect_identical(SeuratObject::Tool(fit, slot = "RunFactVAE")$settings$joint.embedding,
                   "concatenate")
  expect_error(RunFactVAE(object, annotation = annotation, joint.embedding = "sum",
                          max.epochs = 1, verbose = FALSE),
               "joint_embedding must be one of \\['average', 'concatenate'\\]")
  expect_error(RunFactVAE(object, joint.embedding = c("average", "concatenate")),
               "joint.embedding must be one string")
})

test_that("RunFactVAE records its settings, the saved model and the command", {
  skip_if_no_core()
  fit <- simulated_fit()$fit
  info <- SeuratObject::Tool(fit, slot = "RunFactVAE")
  expect_true(dir.exists(info$model.path))
  expect_identical(info$settings$max.epochs, 5L)
  expect_identical(info$settings$preset, "default")
  expect_null(info$settings$early.stopping)  # NULL: the preset's (on), decided in Python
  expect_identical(info$settings$n.latent, 10L)
  expect_identical(info$reductions, c("factvae", "factvae.rna", "factvae.atac"))
  expect_identical(fit[["factvae"]]@misc$model.path, info$model.path)
  expect_true("RunFactVAE" %in% names(fit@commands))
  expect_identical(fit@commands$RunFactVAE$max.epochs, 5)
})

test_that("a saved model is reused without retraining", {
  skip_if_no_core()
  fixture <- simulated_fit()
  path <- saved_model(fixture)
  # One epoch with another seed would give other embeddings: equal ones mean no training.
  reused <- RunFactVAE(fixture$input, model = path, max.epochs = 1, seed = 7, verbose = FALSE)
  expect_equal(SeuratObject::Embeddings(reused, "factvae"),
               SeuratObject::Embeddings(fixture$fit, "factvae"))
  expect_identical(SeuratObject::Tool(reused, slot = "RunFactVAE")$model.path, path)
  expect_null(SeuratObject::Tool(reused, slot = "RunFactVAE")$settings)
  subset <- fixture$input[, 1:100]
  expect_error(RunFactVAE(subset, model = path, verbose = FALSE),
               "trained on other cells than this object's")
})

test_that("the augmented ATAC assay has the input's cells and peaks", {
  skip_if_no_core()
  fit <- simulated_fit()$fit
  expect_true("factvaeATAC" %in% SeuratObject::Assays(fit))
  values <- layer_data(fit, "factvaeATAC", "data")
  expect_identical(colnames(values), colnames(fit))
  expect_true(all(rownames(values) %in% rownames(fit[["ATAC"]])))
  expect_identical(rownames(values), rownames(SeuratObject::Loadings(fit[["factvae.atac"]])))
  expect_true(is.matrix(values))
  expect_true(all(values > 0))
  # Expected counts: each cell's total is close to its observed ATAC library size.
  observed <- Matrix::colSums(layer_data(fit, "ATAC", "counts"))
  expect_gt(stats::cor(colSums(values), observed), 0.9)
})

test_that("augment.threshold and augment.features keep the augmented assay sparse and small", {
  skip_if_no_core()
  fixture <- simulated_fit()
  path <- saved_model(fixture)
  dense <- layer_data(fixture$fit, "factvaeATAC", "data")
  features <- rownames(dense)[1:50]
  sparse <- RunFactVAE(fixture$input, model = path, augment = TRUE, augment.assay = "aug",
                       augment.features = features, augment.threshold = 0.05, chunk.size = 64,
                       verbose = FALSE)
  values <- layer_data(sparse, "aug", "data")
  expect_s4_class(values, "dgCMatrix")
  expect_identical(dimnames(values), list(features, colnames(fixture$fit)))
  expect_true(all(values@x >= 0.05))
  # The same values as the dense matrix, dropped where that one is below the threshold (up to
  # float32 rounding, which chunking can change).
  reference <- dense[features, ]
  kept <- as.matrix(values) != 0
  expect_true(all(reference[kept] > 0.05 - 1e-5) && all(reference[!kept] < 0.05 + 1e-5))
  expect_equal(as.matrix(values)[kept], reference[kept], tolerance = 1e-5)
})

test_that("augment.file streams the augmented matrix to an .h5ad that holds the assay's values", {
  skip_if_no_core()
  fixture <- simulated_fit()
  path <- saved_model(fixture)
  dense <- layer_data(fixture$fit, "factvaeATAC", "data")
  file <- tempfile(fileext = ".h5ad")
  streamed <- RunFactVAE(fixture$input, model = path, augment.file = file, chunk.size = 64,
                         verbose = FALSE)
  expect_identical(SeuratObject::Tool(streamed, slot = "RunFactVAE")$augment.file, file)
  expect_false("factvaeATAC" %in% SeuratObject::Assays(streamed))
  written <- reticulate::import("anndata")$read_h5ad(file)
  expect_identical(unlist(written$obs_names$tolist()), colnames(dense))
  expect_identical(unlist(written$var_names$tolist()), rownames(dense))
  expect_equal(t(written$X), unname(dense), tolerance = 1e-5)
  expect_error(RunFactVAE(fixture$input, model = path, augment.file = "augmented.csv"),
               "augment.file must be one path ending in .h5ad")
})

test_that("augment.latent = 'atac' decodes the ATAC half alone, in the assay and the file", {
  skip_if_no_core()
  fixture <- simulated_fit()
  file <- tempfile(fileext = ".h5ad")
  joint <- layer_data(fixture$fit, "factvaeATAC", "data")[1:50, ]
  features <- rownames(joint)
  alone <- RunFactVAE(fixture$input, model = saved_model(fixture), augment = TRUE,
                      augment.assay = "aug", augment.features = features,
                      augment.latent = "atac", augment.file = file, verbose = FALSE)
  values <- layer_data(alone, "aug", "data")
  model <- .factvae_core()$module$FactVAE$load(saved_model(fixture))
  reference <- t(model$augment_atac(cells = as.list(colnames(values)),
                                    peaks = as.list(features), latent = "atac"))
  expect_equal(unname(values), reference, tolerance = 1e-5)
  expect_equal(t(reticulate::import("anndata")$read_h5ad(file)$X), reference, tolerance = 1e-5)
  expect_false(isTRUE(all.equal(values, joint, tolerance = 1e-3)))
  expect_identical(SeuratObject::Tool(alone, slot = "RunFactVAE")$augment.latent, "atac")
})

test_that("links are a Signac-style GRanges joining genes to peaks of the input", {
  skip_if_no_core()
  fit <- simulated_fit()$fit
  links <- FactVAELinks(fit)
  expect_s4_class(links, "GRanges")
  expect_identical(names(GenomicRanges::mcols(links)),
                   c("score", "gene", "peak", "covariation", "activity", "contact", "abc",
                     "peak_share", "evidence", "evidence_gene", "evidence_peak", "zscore",
                     "pvalue", "qvalue", "zscore_cis",
                     "pvalue_cis", "qvalue_cis", "distance", "in_prior", "modelled",
                     "gene_detection"))
  expect_true(all(links$gene_detection > 0 & links$gene_detection <= 1))
  expect_gt(length(links), 100)
  expect_true(all(links$gene %in% rownames(fit[["RNA"]])))
  expect_true(all(links$peak %in% rownames(fit[["ATAC"]])))
  # q >= p up to float64 rounding (BH's p * n / rank came out 1 ulp below p = 0.99984).
  expect_true(all(links$pvalue >= 0 & links$pvalue <= 1 & links$qvalue >= links$pvalue))
  expect_true(all(links$pvalue_cis >= 0 & links$pvalue_cis <= 1 &
                    links$qvalue_cis >= links$pvalue_cis))
  # the default score is a posterior probability
  expect_true(all(links$score >= 0 & links$score <= 1 + 1e-6))
  expect_true(all(abs(links$covariation) <= 1 + 1e-6))
  # Each range spans the gene's TSS and its peak's centre, on the peak's chromosome.
  peaks <- PeakRanges(links$peak)
  centre <- (GenomicRanges::start(peaks) + GenomicRanges::end(peaks)) %/% 2
  expect_true(all(GenomicRanges::start(links) == centre | GenomicRanges::end(links) == centre))
  expect_identical(as.character(GenomicRanges::seqnames(links)),
                   as.character(GenomicRanges::seqnames(peaks)))
  annotation <- SeuratObject::Misc(fit, "annotation")
  gene <- annotation[match(links$gene, annotation$gene_name)]
  tss <- ifelse(as.character(GenomicRanges::strand(gene)) == "-", GenomicRanges::end(gene),
                GenomicRanges::start(gene))
  expect_true(all(GenomicRanges::start(links) == tss | GenomicRanges::end(links) == tss))
  # in_prior marks exactly the pairs of the gene-to-peak prior the model trained on: those of
  # its modelled genes; the other detected genes are linked too (modelled = FALSE).
  prior <- GeneToPeak(SeuratObject::Misc(fit, "annotation"), rownames(fit[["ATAC"]]))
  in.prior <- prior[cbind(match(links$gene, rownames(prior)), match(links$peak, colnames(prior)))]
  expect_identical(links$in_prior, links$modelled & !is.na(in.prior) & in.prior > 0)
  expect_true(any(links$modelled) && any(!links$modelled))
  expect_true(any(links$in_prior) && !all(links$in_prior))
  # The paper's cosine, from the same model without retraining: after these few epochs it
  # already ranks the simulation's planted links (half of them prior pairs) above the rest.
  model <- SeuratObject::Tool(fit, slot = "RunFactVAE")$model.path
  cosine <- FactVAELinks(suppressWarnings(RunFactVAE(
    simulated_fit()$input, annotation = SeuratObject::Misc(fit, "annotation"), model = model,
    links = TRUE, link.score = "cosine", link.pvalue = 1, verbose = FALSE)))
  truth <- SeuratObject::Misc(fit, "true.links")
  planted <- paste(cosine$gene, cosine$peak) %in% paste(truth$gene, truth$peak)
  expect_gt(mean(cosine$score[planted]), mean(cosine$score[!planted]))
})

test_that("link.genes links the chosen genes, modelled or not", {
  skip_if_no_core()
  fit <- simulated_fit()$fit
  model <- SeuratObject::Tool(fit, slot = "RunFactVAE")$model.path
  genes <- rownames(fit[["RNA"]])[c(1, 5, 9)]
  chosen <- FactVAELinks(suppressWarnings(RunFactVAE(
    simulated_fit()$input, annotation = SeuratObject::Misc(fit, "annotation"), model = model,
    links = TRUE, link.genes = genes, link.pvalue = 1, verbose = FALSE)))
  expect_gt(length(chosen), 0)
  expect_true(all(chosen$gene %in% genes))
  expect_error(RunFactVAE(simulated_fit()$input, model = model, links = TRUE, link.genes = 1),
               "link.genes must be NULL or a character vector")
})

test_that("FactVAELinks says how to get links when there are none", {
  expect_error(FactVAELinks(toy_object()), "run RunFactVAE\\(object, links = TRUE\\)")
})

test_that("a Python-side refusal reaches the user as an R error with its message", {
  skip_if_no_core()
  object <- simulated_fit()$input
  expect_error(suppressWarnings(RunFactVAE(
    object, annotation = SeuratObject::Misc(object, "annotation"), n.latent = 400, max.epochs = 1,
    verbose = FALSE)),
               "^n_latent=400 is not below the number of cells \\(300\\)")
})

test_that("the core's warnings reach the user as R warnings", {
  skip_if_no_core()
  object <- simulated_fit()$input
  # The simulation leaves some peaks without counts in these 300 cells.
  empty <- sum(Matrix::rowSums(layer_data(object, "ATAC", "counts")) == 0)
  expect_gt(empty, 0)
  warned <- character()
  withCallingHandlers(
    RunFactVAE(object, annotation = SeuratObject::Misc(object, "annotation"), n.latent = 5,
               n.hvg = 100, max.epochs = 1, verbose = FALSE),
    warning = function(w) {
      warned <<- c(warned, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  expect_true(any(startsWith(warned, sprintf("%d atac features have no counts in any cell",
                                             empty))))
})

test_that("the augmented assay holds its values in counts (read by Signac) and has nCount_", {
  skip_if_no_core()
  fit <- simulated_fit()$fit
  counts <- layer_data(fit, "factvaeATAC", "counts")
  expect_true(is.matrix(counts))
  expect_true(shares_counts_and_data(fit, "factvaeATAC"))
  expect_true(all(c("nCount_factvaeATAC", "nFeature_factvaeATAC") %in% names(fit[[]])))
  expect_equal(unname(fit$nCount_factvaeATAC), unname(colSums(counts)))
  expect_equal(unname(fit$nFeature_factvaeATAC), unname(colSums(counts > 0)))
})

test_that("adding the augmented assay raises no warning from SeuratObject", {
  skip_if_no_core()
  fixture <- simulated_fit()
  path <- saved_model(fixture)
  expect_no_warning(RunFactVAE(fixture$input, model = path, augment = TRUE,
                               augment.threshold = 0.05, verbose = FALSE))
})
