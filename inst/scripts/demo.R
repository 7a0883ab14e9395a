#!/usr/bin/env Rscript
# The R demo: renders the package vignette (RunFactVAE, UMAP, clustering scores, links and the
# augmented assay, with plots) into OUTPUT_DIR/factvae-report.html.
#
# Usage: Rscript inst/scripts/demo.R OUTPUT_DIR [DATA_DIR] [EPOCHS]
#   DATA_DIR  a folder in the layout ReadMultiome() reads (default: simulated data)
#   EPOCHS    training epochs (default: 20 on simulated data, 150 on real data)
# It uses the installed factvae package (`make install`, which `make demo` runs, installs it into
# your R library and records the checkout's .venv as its Python); run from a source checkout, it
# renders the checkout's vignette.
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1 || length(args) > 3) {
  stop("usage: Rscript demo.R OUTPUT_DIR [DATA_DIR] [EPOCHS]", call. = FALSE)
}
output.dir <- args[1]
data.dir <- if (length(args) >= 2 && nzchar(args[2])) normalizePath(args[2], mustWork = TRUE) else ""
epochs <- if (length(args) == 3) as.integer(args[3]) else if (nzchar(data.dir)) 150L else 20L

script <- sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE))
checkout <- if (length(script)) normalizePath(file.path(dirname(script), "..", "..")) else ""
from.checkout <- nzchar(checkout) && file.exists(file.path(checkout, "DESCRIPTION")) &&
  file.exists(file.path(checkout, "vignettes", "factvae.Rmd"))

if (!requireNamespace("factvae", quietly = TRUE)) {
  stop("The factvae R package is not installed: run `make install` in the factvae source ",
       "folder (`make demo` runs it), which installs it into your R library.", call. = FALSE)
}
vignette <- if (from.checkout) {
  file.path(checkout, "vignettes", "factvae.Rmd")
} else {
  system.file("doc", "factvae.Rmd", package = "factvae", mustWork = TRUE)
}

library(factvae)
available <- FactVAEAvailable()
if (!available) stop(attr(available, "reason"), call. = FALSE)

dir.create(output.dir, recursive = TRUE, showWarnings = FALSE)
work <- tempfile("factvae-demo-")
dir.create(work)
report <- rmarkdown::render(vignette, output_dir = normalizePath(output.dir),
                            output_file = "factvae-report.html", intermediates_dir = work,
                            knit_root_dir = work, params = list(data.dir = data.dir,
                                                                epochs = epochs),
                            envir = new.env(), quiet = TRUE)
cat("factvae demo: report written to", report, "\n")
