# Failures while Python holds the session end in an R error that names the cause, and the
# session goes on: Python and the package still work afterwards.

test_that("an exception inside a callback between Python and R is an R error with its cause", {
  skip_if_no_core()
  builtins <- reticulate::import_builtins()
  # Python calls an R function that calls Python, which raises
  failing <- function(x) reticulate::py_eval("1 / 0")
  expect_error(.py_call(builtins$list(builtins$map(failing, list(1, 2)))), "division by zero")
  # Python calls an R function that fails
  expect_error(.py_call(builtins$list(builtins$map(function(x) stop("no such gene"), list(1)))),
               "no such gene")
  expect_identical(.py_call(builtins$sum(list(1L, 2L))), 3L)
  expect_true(isTRUE(FactVAEAvailable()))
})

test_that("a device that is not there is an R error that names it", {
  skip_if_no_core()
  object <- SimulateMultiome(n.cells = 200, seed = 3)
  gpu <- reticulate::import("torch")$cuda$is_available()
  device <- if (gpu) "cuda:99" else "cuda"  # no 100th GPU either
  expect_error(suppressWarnings(RunFactVAE(object, annotation = SeuratObject::Misc(object, "annotation"),
                                           n.latent = 5, n.hvg = 100, max.epochs = 1,
                                           device = device, verbose = FALSE)),
               if (gpu) "invalid device ordinal|CUDA" else "no CUDA GPU")
  expect_true(isTRUE(FactVAEAvailable()))
})

test_that("each way Python reports a failed allocation is read as running out of memory", {
  expect_true(.out_of_memory("MemoryError", "Unable to allocate 3.2 GiB for an array"))
  expect_true(.out_of_memory("RuntimeError", "DefaultCPUAllocator: can't allocate memory"))
  expect_true(.out_of_memory("RuntimeError", "CUDA out of memory. Tried to allocate 2 GiB"))
  expect_true(.out_of_memory("RuntimeError", "std::bad_alloc"))
  expect_true(.out_of_memory("RuntimeError", "can't start new thread"))
  expect_false(.out_of_memory("RuntimeError", "mat1 and mat2 shapes cannot be multiplied"))
  expect_false(.out_of_memory("ValueError", "cannot start: no cells"))
})

test_that("a fit that needs more memory than the session may use is an R error, the session lives", {
  skip_unless_full_tests()  # two fits in a child session, about 30 s
  skip_if_not_installed("callr")
  skip_if_no_core()
  skip_if_not(file.exists("/proc/self/status"), "needs Linux's /proc to size the limit")
  outcome <- callr::r(function() {
    library(factvae)
    fit <- function(object) {
      suppressWarnings(RunFactVAE(object, annotation = SeuratObject::Misc(object, "annotation"),
                                  n.latent = 5, n.hvg = 100, max.epochs = 2, verbose = FALSE))
    }
    invisible(fit(SimulateMultiome(n.cells = 200, seed = 3)))  # Python modules loaded now
    big <- SimulateMultiome(n.cells = 3000, seed = 3)
    # RLIMIT_AS (what ulimit -v sets) 16 MB above what the session uses: the fit of 3000 cells
    # cannot get the memory it needs. Only the soft limit moves, so it can be put back.
    resource <- reticulate::import("resource")
    status <- readLines("/proc/self/status")
    used <- as.numeric(gsub("[^0-9]", "", grep("^VmSize", status, value = TRUE))) * 1024
    old <- resource$getrlimit(resource$RLIMIT_AS)
    limit <- reticulate::import_builtins()$int(used + 16 * 2^20)
    resource$setrlimit(resource$RLIMIT_AS, reticulate::tuple(limit, old[[2]]))
    message <- tryCatch({
      fit(big)
      "no error"
    }, error = conditionMessage)
    resource$setrlimit(resource$RLIMIT_AS, old)
    list(message = message, unchanged = ncol(big) == 3000L,
         alive = isTRUE(FactVAEAvailable()) && ncol(SimulateMultiome(n.cells = 50)) == 50L)
  })
  expect_match(outcome$message, "memory|allocate")
  expect_true(outcome$unchanged)
  expect_true(outcome$alive)
})
