#' Agreement between a clustering and known labels
#'
#' The adjusted Rand index (Hubert and Arabie) and the normalised mutual
#' information (arithmetic-mean normalisation) of two labelings of the same
#' cells, as used to score embeddings against known cell types.
#'
#' @param clusters,labels Two vectors of the same length (factors, characters
#'   or integers).
#' @return A named numeric vector: `ARI` and `NMI`, each 1 for identical
#'   partitions.
#' @export
#' @examples
#' ClusterAgreement(c(1, 1, 2, 2), c("a", "a", "b", "b"))
#' ClusterAgreement(c(1, 1, 2, 2), c("a", "b", "a", "b"))
ClusterAgreement <- function(clusters, labels) {
  if (length(clusters) != length(labels)) {
    stop("clusters and labels must have the same length.", call. = FALSE)
  }
  counts <- table(clusters, labels)
  pairs <- function(n) n * (n - 1) / 2
  index <- sum(pairs(counts))
  rows <- sum(pairs(rowSums(counts)))
  cols <- sum(pairs(colSums(counts)))
  expected <- rows * cols / pairs(sum(counts))
  ari <- (index - expected) / ((rows + cols) / 2 - expected)

  p <- counts / sum(counts)
  entropy <- function(q) -sum(q[q > 0] * log(q[q > 0]))
  outer.p <- outer(rowSums(p), colSums(p))
  mutual <- sum(p[p > 0] * log(p[p > 0] / outer.p[p > 0]))
  nmi <- mutual / ((entropy(rowSums(p)) + entropy(colSums(p))) / 2)
  c(ARI = ari, NMI = nmi)
}
