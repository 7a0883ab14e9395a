# Finding, checking and calling the Python core. The core is imported once per R session and
# kept here; a failed attempt is not cached, so fixing the set-up and calling again works.
.core <- new.env(parent = emptyenv())

# The core must be at least this R package's own version: both are released together from one
# source, and the version is written once (DESCRIPTION is tested against the Python package).
.min_core_version <- function() as.character(utils::packageVersion("factvae"))

#' Is the factvae Python core available?
#'
#' Finds Python as described in [factvae-package] and checks that the
#' `factvae` Python package imports and is recent enough. Never errors.
#'
#' @return `TRUE` or `FALSE`; when `FALSE`, the reason is attached as the
#'   attribute `"reason"`.
#' @export
#' @examples
#' FactVAEAvailable()
FactVAEAvailable <- function() {
  reason <- tryCatch({
    .factvae_core()
    NULL
  }, error = conditionMessage)
  structure(is.null(reason), reason = reason)
}

#' Install the factvae Python core
#'
#' Creates (or refreshes) a Python virtual environment holding the `factvae`
#' Python package and records it, so that later R sessions find it. The work is
#' done by the shell script `setup/setup-python.sh` shipped with this package:
#' it installs the CPU build of PyTorch first, then `factvae` from its source
#' folder. Restart R afterwards if Python was already started in this session.
#'
#' @param source Folder of the factvae source (the repository, holding
#'   `pyproject.toml` and `python/factvae`). By default, the checkout that
#'   contains the working directory.
#' @param venv Folder of the virtual environment to create; by default
#'   `.venv` inside `source`.
#' @param python The Python used to create the environment (3.9 or later).
#'
#' @return The path of the environment's Python interpreter, invisibly.
#' @export
#' @examples
#' \dontrun{
#' install_factvae("~/src/factvae")
#' }
install_factvae <- function(source = NULL, venv = NULL, python = "python3") {
  source <- source %||% .find_checkout()
  if (is.null(source) || !file.exists(file.path(source, "pyproject.toml"))) {
    stop("install_factvae() needs the factvae source folder (the one holding pyproject.toml); ",
         "give it as source = \"path/to/factvae\".", call. = FALSE)
  }
  source <- normalizePath(source)
  venv <- venv %||% file.path(source, ".venv")
  script <- system.file("setup", "setup-python.sh", package = "factvae", mustWork = TRUE)
  # R's LD_LIBRARY_PATH could make the new interpreter load another libpython: clear it.
  status <- system2("bash", shQuote(c(script, source, venv)),
                    env = c(paste0("FACTVAE_BASE_PYTHON=", shQuote(python)), "LD_LIBRARY_PATH="))
  if (!identical(status, 0L)) {
    stop("Creating the factvae Python environment failed (", script, " exited with status ",
         status, "); see its output above.", call. = FALSE)
  }
  interpreter <- file.path(normalizePath(venv), "bin", "python")
  .record_python(interpreter)
  if (reticulate::py_available(initialize = FALSE)) {
    message("Restart R to use the new environment (Python is already running in this session).")
  }
  invisible(interpreter)
}

# The imported core: list(module, bridge, version, python). Errors with install instructions.
.factvae_core <- function() {
  if (is.null(.core$module)) {
    loaded <- .load_core()
    list2env(loaded, envir = .core)
  }
  .core
}

.load_core <- function() {
  if (!reticulate::py_available(initialize = FALSE)) {
    chosen <- .choose_python()
    if (is.null(chosen)) {
      .core_missing("no Python environment with factvae was found")
    }
    if (!file.exists(chosen$python)) {
      .core_missing(sprintf("%s (from %s) does not exist", chosen$python, chosen$source))
    }
    # Through the variable rather than use_python(): reticulate reads it before it looks for a
    # project file, and a factvae checkout's pyproject.toml would make it warn about Poetry.
    Sys.setenv(RETICULATE_PYTHON = chosen$python)
  }
  python <- tryCatch(reticulate::py_config()$python,
                     error = function(e) .core_missing(conditionMessage(e)))
  .import_torch_deepbind()
  reticulate::py_clear_last_error()
  module <- tryCatch(reticulate::import("factvae"), error = function(e) {
    .core_missing(sprintf("Python %s cannot import factvae (%s)", python, .python_message(e)))
  })
  version <- as.character(reticulate::py_get_attr(module, "__version__"))
  .check_core_version(version, python)
  bridge <- tryCatch(reticulate::import("factvae.r_bridge"), error = function(e) {
    .core_missing(sprintf("Python %s has factvae %s without its R bridge (%s)",
                          python, version, .python_message(e)))
  })
  # reticulate 1.28's Ctrl-C handler can crash the session (see install_interrupt_handler)
  bridge$install_interrupt_handler()
  bridge$import_training_modules()
  list(module = module, bridge = bridge, version = version, python = python)
}

# R has already loaded its own BLAS, and its sgemm_ would stand in for the MKL one that torch
# links (the dynamic linker takes the first definition loaded), making training several times
# slower. RTLD_DEEPBIND makes torch's libraries bind their own symbols first (Linux only).
.import_torch_deepbind <- function() {
  code <- "
import os, sys
if sys.platform.startswith('linux') and hasattr(os, 'RTLD_DEEPBIND') and 'torch' not in sys.modules:
    import numpy, scipy.sparse
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import torch
    except ImportError:
        pass
    finally:
        sys.setdlopenflags(flags)
"
  reticulate::py_run_string(code, local = TRUE)
  invisible()
}

.check_core_version <- function(version, python) {
  if (package_version(version) < .min_core_version()) {
    .core_missing(sprintf("Python %s has factvae %s, older than the %s this R package needs",
                          python, version, .min_core_version()))
  }
  invisible(version)
}

.core_missing <- function(reason) {
  stop("The factvae Python core is not usable: ", reason, ".\n",
       "To fix it, run `make install` in the factvae source folder (it makes the Python ",
       "environment .venv, installs this R package and records that Python in ",
       .recorded_python_file(), "), or factvae::install_factvae(\"path/to/factvae\") from R; ",
       "then restart R. To use a Python that already has factvae >= ", .min_core_version(),
       ", set options(factvae.python = \"/path/to/bin/python\") or RETICULATE_PYTHON ",
       "before Python starts in the R session (restart R if it has).", call. = FALSE)
}

# The first Python that is set, most explicit first; an explicit setting is never skipped.
.choose_python <- function() {
  candidates <- list(
    "options(factvae.python)" = getOption("factvae.python"),
    "RETICULATE_PYTHON" = Sys.getenv("RETICULATE_PYTHON"),
    "the record of `make install` or install_factvae()" = .recorded_python(),
    "the source checkout" = .checkout_python()
  )
  for (source in names(candidates)) {
    path <- candidates[[source]]
    if (length(path) == 1 && nzchar(path)) {
      path <- path.expand(path)
      # A virtual environment folder stands for its interpreter.
      if (dir.exists(path)) path <- file.path(path, "bin", "python")
      return(list(python = path, source = source))
    }
  }
  NULL
}

# Where `make install` (inst/setup/install-r.sh) and install_factvae() record the Python to use:
# a one-line file in the user's R configuration folder (R_USER_CONFIG_DIR moves it).
.recorded_python_file <- function() {
  file.path(tools::R_user_dir("factvae", which = "config"), "python")
}

.record_python <- function(python) {
  file <- .recorded_python_file()
  dir.create(dirname(file), recursive = TRUE, showWarnings = FALSE)
  writeLines(python, file)
  invisible(file)
}

.recorded_python <- function() {
  file <- .recorded_python_file()
  if (file.exists(file)) readLines(file, n = 1, warn = FALSE) else NULL
}

.checkout_python <- function() {
  checkout <- .find_checkout()
  python <- if (is.null(checkout)) "" else file.path(checkout, ".venv", "bin", "python")
  if (file.exists(python)) python else NULL
}

# The factvae source checkout holding the working directory, if any.
.find_checkout <- function(from = getwd()) {
  dir <- normalizePath(from, mustWork = FALSE)
  repeat {
    if (file.exists(file.path(dir, "pyproject.toml")) &&
        dir.exists(file.path(dir, "python", "factvae"))) {
      return(dir)
    }
    parent <- dirname(dir)
    if (identical(parent, dir)) return(NULL)
    dir <- parent
  }
}

# Runs Python code and turns a Python exception into an R error carrying its message: the
# core's FactVAEInputError messages are written for users and are shown alone. The core's own
# warnings become R warnings. Ctrl-C during the call becomes a `factvae_interrupt` error that
# says where training stopped (reticulate hands R the interrupt, not Python's message).
.py_call <- function(expr) {
  bridge <- .factvae_core()$bridge
  bridge$start_warning_capture()
  on.exit(for (message in unique(bridge$stop_warning_capture())) warning(message, call. = FALSE))
  reticulate::py_clear_last_error()
  tryCatch(expr, interrupt = function(e) {
    .interrupted(bridge$take_interrupt_report())
  }, error = function(e) {
    py <- reticulate::py_last_error()
    if (is.null(py)) stop(e)
    if (identical(py$type, "FactVAEInputError")) {
      stop(py$value, call. = FALSE)
    }
    if (identical(py$type, "TrainingInterrupted")) {
      .interrupted(bridge$take_interrupt_report())
    }
    if (.out_of_memory(py$type, py$value)) {
      stop("factvae (Python) ran out of memory: ", py$type, ": ", py$value, "\nThe work ",
           "needs more memory than this R session may use: free some, or use fewer cells, ",
           "peaks or a smaller batch.size. The session and its objects are unchanged.",
           call. = FALSE)
    }
    stop("factvae (Python) failed: ", py$type, ": ", py$value,
         "\nreticulate::py_last_error() shows the Python traceback.", call. = FALSE)
  })
}

# Whether a Python error is a failed allocation: numpy's MemoryError, the message of
# PyTorch's CPU allocator, CUDA's or C++'s (which PyTorch raises as RuntimeError), or
# Python's when it cannot allocate a new thread's stack (seen under a memory limit).
.out_of_memory <- function(type, value) {
  identical(type, "MemoryError") ||
    grepl(paste("can't allocate memory|Cannot allocate memory|out of memory|bad_alloc",
                "can't start new thread", sep = "|"), value)
}

# An error that is also an interrupt, so handlers of either catch it. Functions return a new
# object, so the one the user passed is as it was.
.interrupted <- function(report) {
  message <- paste0("Interrupted (Ctrl-C). ", if (!is.null(report)) paste0(report, " "),
                    "Nothing was added to the object; it is unchanged.")
  stop(structure(class = c("factvae_interrupt", "interrupt", "error", "condition"),
                 list(message = message, call = NULL)))
}

.python_message <- function(e) {
  py <- reticulate::py_last_error()
  if (is.null(py)) conditionMessage(e) else paste0(py$type, ": ", py$value)
}
