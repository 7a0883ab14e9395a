# The Signac path: peak ranges, annotation and Links from a ChromatinAssay. Skipped when Signac
# is not installed (it cannot be on machines without CRAN).

chromatin_object <- function() {
  cached("chromatin", function() {
    object <- SimulateMultiome(n.cells = 150, seed = 2)
    annotation <- SeuratObject::Misc(object, "annotation")
    # Signac expects these columns in an annotation.
    annotation$gene_id <- annotation$gene_name
    annotation$tx_id <- annotation$gene_name
    annotation$gene_biotype <- "protein_coding"
    annotation$type <- "exon"
    counts <- SeuratObject::GetAssayData(object, assay = "ATAC", slot = "counts")
    object[["ATAC"]] <- Signac::CreateChromatinAssay(counts = counts, sep = c("-", "-"),
                                                     annotation = annotation)
    object
  })
}

test_that("with Signac, ranges and annotation come from the ChromatinAssay and links are set", {
  skip_if_not_installed("Signac")
  skip_if_no_core()
  object <- chromatin_object()
  fit <- RunFactVAE(object, n.latent = 5, n.hvg = 200, epochs = 2, augment = TRUE,
                    augment.threshold = 0.01, links = TRUE, link.pvalue = 1, verbose = FALSE)
  expect_identical(dim(SeuratObject::Embeddings(fit, "factvae")), c(150L, 10L))
  links <- Signac::Links(fit[["ATAC"]])
  expect_identical(links, FactVAELinks(fit))
  expect_true(all(links$peak %in% rownames(fit[["ATAC"]])))
  augmented <- fit[["factvaeATAC"]]
  expect_s4_class(augmented, "ChromatinAssay")
  source <- Signac::granges(fit[["ATAC"]])
  names(source) <- rownames(fit[["ATAC"]])
  expect_identical(as.character(Signac::granges(augmented)),
                   as.character(source[rownames(augmented)]))
  expect_identical(length(Signac::Annotation(augmented)), length(Signac::Annotation(object)))
})

test_that("with Signac, peak ranges are read from the assay, not the names", {
  skip_if_not_installed("Signac")
  skip_if_no_core()
  object <- chromatin_object()
  peaks <- rownames(object[["ATAC"]])
  ranges <- .assay_peak_ranges(object, "ATAC", peaks)
  expect_identical(names(ranges), peaks)
  expect_identical(as.character(ranges), as.character(Signac::granges(object[["ATAC"]])))
})
