# How an installed package finds its Python core: the record `make install`
# (inst/setup/install-r.sh) and install_factvae() write, and what a new user sees.

# Sets environment variables (NA unsets one) for the duration of code.
local_env <- function(vars, code) {
  old <- Sys.getenv(names(vars), unset = NA, names = TRUE)
  on.exit({
    unset <- is.na(old)
    if (any(unset)) Sys.unsetenv(names(old)[unset])
    if (any(!unset)) do.call(Sys.setenv, as.list(old[!unset]))
  })
  if (any(is.na(vars))) Sys.unsetenv(names(vars)[is.na(vars)])
  if (any(!is.na(vars))) do.call(Sys.setenv, as.list(vars[!is.na(vars)]))
  force(code)
}

# Runs R code in a fresh R process started in an empty folder outside any checkout, with no
# Python chosen by the environment, and returns its output (stdout and stderr).
run_fresh_r <- function(code, config.dir, env = character()) {
  skip_if(length(find.package("factvae", lib.loc = .libPaths(), quiet = TRUE)) == 0,
          "factvae is not installed (a fresh R process cannot load it)")
  work <- tempfile("fresh-r-")
  dir.create(work)
  old <- setwd(work)
  on.exit(setwd(old))
  env <- c(paste0("R_LIBS=", paste(.libPaths(), collapse = .Platform$path.sep)),
           paste0("R_USER_CONFIG_DIR=", config.dir), "RETICULATE_PYTHON=",
           "OMP_WAIT_POLICY=PASSIVE", env)
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(code)),
                                  stdout = TRUE, stderr = TRUE, env = env))
  paste(out, collapse = "\n")
}

test_that("the recorded Python is used when no option or variable names one", {
  config <- tempfile("config")
  old <- options(factvae.python = NULL)
  on.exit(options(old))
  local_env(c(R_USER_CONFIG_DIR = config, RETICULATE_PYTHON = NA), {
    written <- .record_python("/recorded/venv/bin/python")
    expect_identical(written, file.path(config, "R", "factvae", "python"))
    expect_identical(readLines(written), "/recorded/venv/bin/python")
    chosen <- .choose_python()
    expect_identical(chosen$python, "/recorded/venv/bin/python")
    expect_match(chosen$source, "make install")
    # An explicit setting still wins over the record.
    local_env(c(RETICULATE_PYTHON = "/explicit/bin/python"), {
      expect_identical(.choose_python()$source, "RETICULATE_PYTHON")
    })
    options(factvae.python = "/option/bin/python")
    expect_identical(.choose_python()$source, "options(factvae.python)")
  })
})

test_that("with no Python found, the error names the command that fixes it", {
  out <- run_fresh_r(paste0("cat(tryCatch({factvae::SimulateMultiome(10); 'no error'}, ",
                            "error = conditionMessage))"), tempfile("empty-config"))
  expect_match(out, "The factvae Python core is not usable: no Python environment with factvae")
  expect_match(out, "run `make install` in the factvae source folder")
  expect_match(out, "install_factvae\\(")
})

test_that("RunFactVAE in Rscript shows plain progress lines and no deprecation notice", {
  skip_if_no_core()
  config <- tempfile("config")
  local_env(c(R_USER_CONFIG_DIR = config), .record_python(reticulate::py_config()$python))
  out <- run_fresh_r(paste(
    "library(factvae)",
    "obj <- SimulateMultiome(n.cells = 150, seed = 1)",
    "obj <- suppressWarnings(RunFactVAE(obj, annotation = SeuratObject::Misc(obj, 'annotation'),",
    "  n.latent = 4, n.hvg = 100, max.epochs = 4, early.stopping = FALSE))",
    "cat('trained', ncol(obj[['factvae']]), '\\n')", sep = "\n"), config)
  expect_match(out, "trained 4")  # the joint embedding averages the two halves: n.latent columns
  expect_match(out, "epoch 4/4: rna [0-9.]+", all = FALSE)
  expect_no_match(out, "Deprecat")
})
