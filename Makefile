# The two commands a fresh Debian machine needs:  `make demo`  and  `make test`.
# Both install what they need first (Debian R packages, a venv with the pinned CPU torch)
# and are idempotent.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
export RETICULATE_PYTHON := $(abspath $(PYTHON))

.PHONY: setup setup-system setup-python install demo test test-fast lint test-python test-r bench

setup: setup-system setup-python

setup-system:
	bash inst/setup/setup-system.sh

setup-python:
	bash inst/setup/setup-python.sh . $(VENV)

# The R package into your R library (R_LIBS_USER, or the one it already names), with the venv's
# Python recorded, so that library(factvae) works in any R session, from any folder.
install: setup
	bash inst/setup/install-r.sh . $(VENV)

demo: install
	$(VENV)/bin/factvae demo --out demo-output/python
	Rscript inst/scripts/demo.R demo-output/report

test: setup lint test-r test-python

# ruff's lint rules and formatting, and mypy on the public API modules (pyproject.toml lists them)
lint:
	$(VENV)/bin/ruff check python tests/python benchmarks
	$(VENV)/bin/ruff format --check python tests/python benchmarks
	$(VENV)/bin/mypy

# The edit-test loop (about 2 minutes here): lint and the Python tests not marked slow.
test-fast: setup lint
	$(VENV)/bin/pytest tests/python -m "not slow"

test-python:
	$(VENV)/bin/pytest tests/python

test-r:
	bash .ci/r-tests.sh

# All benchmarks (hours on 2 cores; each script's docstring gives its time); each writes JSON and
# Markdown to benchmarks/results.
bench: setup
	$(PYTHON) benchmarks/real_scale.py --seeds 0 1 2
	$(PYTHON) benchmarks/lsi_threads.py --repeats 3
	$(PYTHON) benchmarks/likelihood.py
	$(PYTHON) benchmarks/links.py
	$(PYTHON) benchmarks/links_quality.py --seeds 0 1 2
	$(PYTHON) benchmarks/links_crispri.py
	$(PYTHON) benchmarks/links_within_lines.py
	$(PYTHON) benchmarks/batches.py --seeds 0 1 2 --jobs 3
	$(PYTHON) benchmarks/batches.py --seeds 0 1 --jobs 2 --imbalanced --no-mapping \
		--name batches_imbalanced
	$(PYTHON) benchmarks/batches.py --seeds 0 1 --shift-sd 2.0 --name batches_strong
	$(PYTHON) benchmarks/new_cells.py --seeds 0 1
	$(PYTHON) benchmarks/scale.py --sizes snare 10000x50000 50000x150000:reps 100000x200000:reps
	$(PYTHON) benchmarks/scale.py --name scale_peaks \
		--sizes 5000x25000:reps 5000x50000:reps 5000x100000:reps 5000x200000:reps
	$(PYTHON) benchmarks/scale.py --name scale_cells \
		--sizes 5000x50000:reps 10000x50000:reps 20000x50000:reps 40000x50000:reps
	$(PYTHON) benchmarks/snare_seeds.py --seeds 0 1 2 3 4
	$(PYTHON) benchmarks/snare_seeds.py --seeds 0 1 2 3 4 --preset paper
