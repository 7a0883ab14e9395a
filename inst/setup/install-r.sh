#!/usr/bin/env bash
# Installs the factvae R package from SOURCE_DIR with R CMD INSTALL and records the Python of
# VENV_DIR as the one it uses (in tools::R_user_dir("factvae", "config"), where
# factvae::install_factvae() records it too), then checks that library(factvae) finds the
# Python core from another folder with no environment variable set.
# Usage: install-r.sh SOURCE_DIR [VENV_DIR] [LIBRARY]
#   VENV_DIR  default SOURCE_DIR/.venv (made by setup-python.sh)
#   LIBRARY   default the first folder of R_LIBS_USER (R's per-user library, created if missing;
#             an R_LIBS_USER already set is respected); another library is searched only when
#             R_LIBS or .libPaths() name it.
# R_USER_CONFIG_DIR moves the record, as it moves everything tools::R_user_dir() gives.
# Idempotent: each run reinstalls the package and rewrites the record.
set -euo pipefail
src=$(cd "${1:?usage: install-r.sh SOURCE_DIR [VENV_DIR] [LIBRARY]}" && pwd)
venv=${2:-$src/.venv}
python="$(cd "$venv" 2>/dev/null && pwd)/bin/python" || python="$venv/bin/python"
if [ ! -x "$python" ]; then
  echo "install-r: no Python at $python; make it with: bash inst/setup/setup-python.sh $src" >&2
  exit 1
fi
default_library() {
  Rscript --no-init-file -e 'cat(path.expand(strsplit(Sys.getenv("R_LIBS_USER"), ":")[[1]][1]))'
}
library=${3:-$(default_library)}
if [ -z "$library" ]; then
  echo "install-r: R_LIBS_USER is empty: give a library folder as the third argument" >&2
  exit 1
fi
mkdir -p "$library"
library=$(cd "$library" && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# R CMD INSTALL of the source folder installs the package's own folders only (R/, man/, inst/,
# ...): the venv and the Python tree are not copied.
if ! R CMD INSTALL -l "$library" "$src" >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-r: R CMD INSTALL failed (its output above)" >&2
  exit 1
fi
# The library goes first in R_LIBS so that the package just installed is the one that runs.
export R_LIBS="$library${R_LIBS:+:$R_LIBS}"
Rscript --no-init-file -e 'factvae:::.record_python(commandArgs(TRUE)[1])' "$python"
# The check a new user's session does: another folder, no RETICULATE_PYTHON, no option set.
(
  cd /
  env -u RETICULATE_PYTHON Rscript -e '
    suppressPackageStartupMessages(library(factvae))
    available <- FactVAEAvailable()
    if (!available) stop(attr(available, "reason"), call. = FALSE)
    core <- factvae:::.factvae_core()
    cat(sprintf("install-r: factvae %s installed in %s; it uses Python %s (factvae %s)\n",
                utils::packageVersion("factvae"), commandArgs(TRUE)[1], core$python,
                core$version))
  ' "$library"
)
