test_that("ClusterAgreement gives the ARI and NMI of two labelings", {
  # Reference values from scikit-learn (adjusted_rand_score, normalized_mutual_info_score).
  expect_equal(ClusterAgreement(c(0, 0, 0, 1, 1, 1), c(0, 0, 1, 1, 2, 2)),
               c(ARI = 0.24242424242424243, NMI = 0.5158037429793888))
  expect_equal(ClusterAgreement(c(1, 1, 2, 2), c("b", "b", "a", "a")), c(ARI = 1, NMI = 1))
  expect_equal(ClusterAgreement(c(1, 1, 2, 2), c("a", "b", "a", "b")), c(ARI = -0.5, NMI = 0))
  expect_error(ClusterAgreement(1:3, 1:2), "same length")
})
