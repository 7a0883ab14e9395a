#!/usr/bin/env bash
# R side of CI, run from the repository root with the venv at .venv and the R packages
# installed: (a) man/ and NAMESPACE match roxygen2's output, (b) testthat on the installed
# package, including the real-data tests, ending with the line "R: N passed, N failed",
# (c) R CMD build and R CMD check --no-manual, failing on any ERROR or WARNING.
set -euo pipefail
root=$PWD
[ -f "$root/DESCRIPTION" ] && [ -x "$root/.venv/bin/python" ] || {
  echo "r-tests: run from the repository root, after the venv exists at .venv" >&2
  exit 2
}
export RETICULATE_PYTHON=$root/.venv/bin/python
# R loads libgomp at start-up, before torch can set it up: with spinning OpenMP threads, torch
# runs many times slower whenever another process competes for the cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== (a) roxygen2 documentation is up to date"
mkdir "$work/docs"
cp -R DESCRIPTION NAMESPACE R man "$work/docs/"
Rscript -e 'roxygen2::roxygenise(commandArgs(TRUE)[1])' "$work/docs" >/dev/null 2>&1
if ! diff -r -q man "$work/docs/man" || ! diff -q NAMESPACE "$work/docs/NAMESPACE"; then
  echo "r-tests: man/ or NAMESPACE is stale; run Rscript -e 'roxygen2::roxygenise()'" >&2
  exit 1
fi

echo "== (b) testthat on the installed package"
mkdir "$work/lib"
R CMD INSTALL --no-test-load -l "$work/lib" . >"$work/install.log" 2>&1 || {
  cat "$work/install.log" >&2
  exit 1
}
# Full tests train on the real data once; R CMD check below runs without them. The counts line
# is printed again at the very end.
FACTVAE_FULL_TESTS=true R_LIBS="$work/lib" Rscript -e '
  library(testthat)
  results <- as.data.frame(test_dir("tests/testthat", package = "factvae",
                                    load_package = "installed", stop_on_failure = FALSE,
                                    reporter = SummaryReporter$new(show_praise = FALSE)))
  failed <- sum(results$failed > 0 | results$error)
  skipped <- sum(results$skipped & !(results$failed > 0 | results$error))
  bad <- results[basename(results$file) == "test-inputs.R", ]
  cat(sprintf("bad-input corpus (R): %d checks of malformed inputs in %d tests, %d tests failed\n",
              sum(bad$nb), nrow(bad), sum(bad$failed > 0 | bad$error)))
  cat(sprintf("R tests skipped: %d\n", skipped))
  cat(sprintf("R: %d passed, %d failed\n", nrow(results) - failed - skipped, failed))
  quit(status = if (failed > 0) 1 else 0)
' | tee "$work/testthat.log"
summary=$(grep -E '^R: [0-9]+ passed, [0-9]+ failed$' "$work/testthat.log")

echo "== (c) R CMD build and R CMD check"
# R CMD build copies the whole folder before applying .Rbuildignore: stage a copy without the
# venv and VCS data (.Rbuildignore then removes the Python tree and build files).
mkdir "$work/src"
tar -C "$root" --exclude=./.venv --exclude=./.git --exclude=./.Rlib --exclude='./*.Rcheck' \
  -cf - . | tar -C "$work/src" -xf -
(
  cd "$work"
  R CMD build src >build.log 2>&1 || { cat build.log >&2; exit 1; }
  tarball=$(ls factvae_*.tar.gz)
  # The vignette trains a model: build it once in the check, without also running its code.
  _R_CHECK_FORCE_SUGGESTS_=false _R_CHECK_VIGNETTES_SKIP_RUN_MAYBE_=true \
    R CMD check --no-manual "$tarball" >check.log 2>&1 || true
  grep -E -A3 '\.\.\. (NOTE|WARNING|ERROR)' factvae.Rcheck/00check.log || true
  status=$(grep -E '^Status:' factvae.Rcheck/00check.log || echo "Status: check did not finish")
  echo "R CMD check $status"
  if grep -qE 'ERROR|WARNING|did not finish' <<<"$status"; then
    echo "r-tests: R CMD check reported problems; its log:" >&2
    tail -n 60 check.log >&2
    exit 1
  fi
)
echo "$summary"
