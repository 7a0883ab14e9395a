# The defaults are owned by the Python core (python/factvae/settings.py); R shows them in its
# signatures for the help pages, and this test holds each one to the core's value.

test_that("RunFactVAE's and GeneToPeak's defaults are the core's", {
  skip_if_no_core()
  core <- .factvae_core()$bridge$default_settings()
  run <- formals(RunFactVAE.Seurat)
  r.to.python <- c(n.latent = "n_latent", n.hvg = "n_hvg", atac.weight = "atac_recon_weight",
                   upstream = "upstream", batch.size = "batch_size", device = "device",
                   precision = "precision", seed = "seed", chunk.size = "chunk_size",
                   link.window = "link_window", link.score = "link_score",
                   augment.latent = "augment_latent")
  for (name in names(r.to.python)) {
    expect_equal(eval(run[[name]]), core[[r.to.python[[name]]]], label = paste("RunFactVAE", name))
  }
  expect_identical(eval(run$likelihood)[1], core$likelihood)
  expect_identical(eval(run$preset), "default")
  # the schedule is the preset's unless set
  for (name in c("max.epochs", "early.stopping", "validation.fraction", "patience",
                 "joint.embedding")) {
    expect_null(eval(run[[name]]), label = paste("RunFactVAE", name))
  }
  expect_equal(eval(formals(GeneToPeak)$upstream), core$upstream)
  map <- formals(MapFactVAE)
  for (name in c("batch.size", "seed")) {
    expect_equal(eval(map[[name]]), core[[r.to.python[[name]]]], label = paste("MapFactVAE", name))
  }
  expect_null(eval(run$batch))
})

test_that("the R package and the Python core carry one version", {
  skip_if_no_core()
  expect_identical(as.character(utils::packageVersion("factvae")), .factvae_core()$version)
})
