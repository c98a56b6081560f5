# lr-workbook: two commands to start (see README): `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Where MNIST lives; downloaded here on first use unless you point it elsewhere.
export LRTOOLS_DATA ?= $(CURDIR)/data
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with .ci/nbval-sanitize.cfg --nbval-cell-timeout 600

.PHONY: help install data lab test test-unit test-notebooks test-browser notebooks student lint bench clean

help:
	@echo "make lab        start JupyterLab on notebooks/ (creates .venv on first use)"
	@echo "make test       unit tests + every notebook under nbval in quick mode"
	@echo "make notebooks  re-run every notebook on full MNIST and store the outputs"
	@echo "make lint       ruff on lrtools/, tests/ and the notebooks"
	@echo "make bench      speed benchmark (python -m lrtools.bench)"
	@echo "make student   student copies of the notebooks in build/student/"
	@echo "make test-browser  JupyterLab in headless Chromium: Run All on 01_steplr"

# Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[lab,dev]"
	@touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	@$(PY) -c "from lrtools.data import ensure_mnist, resolve_data_root as r; print('MNIST ok in', ensure_mnist(r()))"

lab: data
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks

test: data
	LRTOOLS_QUICK=1 TQDM_DISABLE=1 $(PY) -m pytest tests notebooks --ignore=tests/browser $(NBVAL)

test-unit: data
	TQDM_DISABLE=1 $(PY) -m pytest tests --ignore=tests/browser

test-notebooks: data
	LRTOOLS_QUICK=1 TQDM_DISABLE=1 $(PY) -m pytest notebooks $(NBVAL)

notebooks: data
	LRTOOLS_QUICK=0 TQDM_DISABLE=1 $(PY) .ci/execute_notebooks.py notebooks/*.ipynb

lint: $(STAMP)
	$(PY) -m ruff check lrtools tests notebooks .ci

test-browser: data
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(PY) -m pytest tests/browser

student: $(STAMP)
	$(PY) -m lrtools.classroom notebooks build/student

bench: data
	$(PY) -m lrtools.bench $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache .ruff_cache
