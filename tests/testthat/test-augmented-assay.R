# The augmented assay as Seurat and Signac read it, on a plain Assay (no Signac, no Python):
# the values in the `counts` slot/layer, the same matrix in `data`, and nCount_/nFeature_.

augmented_toy <- function(values) {
  object <- toy_object()
  dimnames(values) <- list(rownames(object[["ATAC"]]), colnames(object))
  .add_augmented_assay(object, "aug", .augmented_assay(object[["ATAC"]], values, "aug"))
}

test_that("the augmented values are in counts, which Signac reads, and in data, held once", {
  set.seed(3)
  dense <- matrix(stats::rexp(80), 4, 20)
  for (values in list(dense, Matrix::Matrix(dense * (dense > 0.5), sparse = TRUE))) {
    object <- augmented_toy(values)
    expect_true("aug" %in% SeuratObject::Assays(object))
    counts <- layer_data(object, "aug", "counts")
    expect_equal(unname(as.matrix(counts)), unname(as.matrix(values)))
    expect_identical(class(counts), class(values))
    # One matrix referenced from both slots: the same object in memory.
    expect_true(shares_counts_and_data(object, "aug"))
    expect_equal(unname(object$nCount_aug), unname(Matrix::colSums(values)))
    expect_equal(unname(object$nFeature_aug), unname(Matrix::colSums(values > 0)))
    expect_identical(names(object$nCount_aug), colnames(object))
  }
})

test_that("nFeature_ of a dense matrix is counted in blocks with the same result", {
  values <- matrix(c(0, 1, 2, 0, 0, 3), 2, 3000)
  expect_identical(.detected(values), colSums(values > 0))
})
