with_env <- function(vars, code) {
  old <- Sys.getenv(names(vars), unset = NA, names = TRUE)
  on.exit({
    unset <- is.na(old)
    if (any(unset)) Sys.unsetenv(names(old)[unset])
    if (any(!unset)) do.call(Sys.setenv, as.list(old[!unset]))
  })
  do.call(Sys.setenv, as.list(vars))
  force(code)
}

test_that("an explicit Python setting wins, and a venv folder stands for its interpreter", {
  venv <- file.path(tempfile("venv"), "env")
  dir.create(file.path(venv, "bin"), recursive = TRUE)
  old <- options(factvae.python = venv)
  on.exit(options(old))
  chosen <- with_env(c(RETICULATE_PYTHON = "/somewhere/bin/python"), .choose_python())
  expect_identical(chosen, list(python = file.path(venv, "bin", "python"),
                                source = "options(factvae.python)"))
  options(factvae.python = NULL)
  chosen <- with_env(c(RETICULATE_PYTHON = "/somewhere/bin/python"), .choose_python())
  expect_identical(chosen, list(python = "/somewhere/bin/python", source = "RETICULATE_PYTHON"))
})

test_that("the source checkout holding the working directory is found", {
  root <- tempfile("checkout")
  dir.create(file.path(root, "python", "factvae"), recursive = TRUE)
  dir.create(file.path(root, "vignettes", "deep"), recursive = TRUE)
  file.create(file.path(root, "pyproject.toml"))
  expect_identical(.find_checkout(file.path(root, "vignettes", "deep")), normalizePath(root))
  expect_null(.find_checkout(file.path(root, "..")))
})

test_that("a core older than 0.1.0 is refused with install instructions", {
  expect_error(.check_core_version("0.0.9", "/py"),
               "/py has factvae 0.0.9, older than the 0.1.0.*install_factvae")
  expect_identical(.check_core_version("0.1.0", "/py"), "0.1.0")
  expect_identical(.check_core_version("1.2.3", "/py"), "1.2.3")
})

test_that("install_factvae needs the source folder", {
  expect_error(install_factvae(source = tempdir()), "needs the factvae source folder")
})

test_that("Python errors reach R as R errors carrying the Python message", {
  skip_if_no_core()
  core <- .factvae_core()
  # FactVAEInputError messages are for users: shown alone, no traceback.
  expect_error(.py_call(core$module$gene_to_peak(NULL, NULL, upstream = -1L)),
               "^upstream must be >= 0 bp, got -1\\.$")
  expect_error(.py_call(reticulate::py_eval("1/0")),
               "factvae \\(Python\\) failed: ZeroDivisionError: division by zero")
  expect_error(.py_call(stop("an R error")), "^an R error$")
})

# Runs R code in a fresh R process (Python can start only once per process).
run_r <- function(code, env = character()) {
  skip_if(length(find.package("factvae", lib.loc = .libPaths(), quiet = TRUE)) == 0,
          "factvae is not installed (a fresh R process cannot load it)")
  rscript <- file.path(R.home("bin"), "Rscript")
  env <- c(paste0("R_LIBS=", paste(.libPaths(), collapse = .Platform$path.sep)), env)
  out <- suppressWarnings(system2(rscript, c("-e", shQuote(code)), stdout = TRUE, stderr = TRUE,
                                  env = env))
  paste(out, collapse = "\n")
}

fake_core <- function(init) {
  dir <- tempfile("fakecore")
  dir.create(file.path(dir, "factvae"), recursive = TRUE)
  writeLines(init, file.path(dir, "factvae", "__init__.py"))
  dir
}

core_error <- "cat(tryCatch({factvae::SimulateMultiome(10); 'no error'}, error = conditionMessage))"

test_that("a missing Python is reported with how to install the core", {
  out <- run_r(paste0("options(factvae.python = '/nonexistent/bin/python'); ", core_error))
  expect_match(out, "The factvae Python core is not usable: /nonexistent/bin/python \\(from options\\(factvae.python\\)\\) does not exist")
  expect_match(out, "install_factvae\\(")
})

test_that("a core that is too old or does not import is reported with how to install it", {
  skip_if_no_core()
  python <- reticulate::py_config()$python
  old <- fake_core('__version__ = "0.0.9"')
  out <- run_r(core_error, c(paste0("RETICULATE_PYTHON=", python), paste0("PYTHONPATH=", old)))
  expect_match(out, "has factvae 0.0.9, older than the 0.1.0 this R package needs")
  expect_match(out, "install_factvae\\(")
  broken <- fake_core('raise ImportError("torch is missing")')
  out <- run_r(core_error, c(paste0("RETICULATE_PYTHON=", python), paste0("PYTHONPATH=", broken)))
  expect_match(out, "cannot import factvae \\(ImportError: torch is missing\\)")
})
