# lr-workbook: two commands to start (see README): `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Where MNIST lives; downloaded here on first use unless you point it elsewhere.
export LRTOOLS_DATA ?= $(CURDIR)/data
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with .ci/nbval-sanitize.cfg --nbval-cell-timeout 600

.PHONY: help install data lab test test-unit test-notebooks test-torch test-browser notebooks student lint bench ko \
	book gpu-check clean

help:
	@echo "make lab        start JupyterLab on notebooks/ (creates .venv on first use)"
	@echo "make test       unit tests + every notebook under nbval in quick mode"
	@echo "make notebooks  re-run every notebook on full MNIST and store the outputs"
	@echo "make lint       ruff on lrtools/, tests/ and the notebooks"
	@echo "make bench      speed benchmark (python -m benchmarks.bench)"
	@echo "make student   student copies of the notebooks in build/student/ (Korean: build/student/ko/)"
	@echo "make ko        the Korean edition: notebooks/ko/*.ipynb from notebooks/*.ipynb + notebooks/ko/translations/"
	@echo "make test-browser  JupyterLab in headless Chromium: Run All on 01_steplr, the 04 explorer, Korean 00, first launch, the book"
	@echo "make test-torch TORCH=2.9.1 TORCHVISION=0.24.1  make test in .venv-torch-2.9.1 on that torch"
	@echo "make book       static HTML book of the notebooks' stored outputs in build/book/"
	@echo "make gpu-check  on a CUDA machine: bench + notebooks 00, 01, 07 on the GPU (build/gpu-check.json)"

# Re-runs only when pyproject.toml changes. PIP_EXTRA: more requirements in the same pip run
# (make test-torch pins torch and torchvision with it).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[lab,dev,classroom]" $(PIP_EXTRA)
	@touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	@$(PY) -c "from lrtools.data import ensure_mnist, resolve_data_root as r; print('MNIST ok in', ensure_mnist(r()))"

# JupyterLab opens on the first notebook (as Binder does), and binder/overrides.json (no "Would you
# like to get notified about official Jupyter news?" prompt) is installed as the venv's settings
# overrides; binder/postBuild installs the same file on Binder.
LAB_FIRST := 00_setup_and_baseline.ipynb
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_OVERRIDES): binder/overrides.json $(STAMP)
	install -D -m 644 binder/overrides.json $@

lab: data $(LAB_OVERRIDES)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks --LabApp.default_url=/lab/tree/$(LAB_FIRST)

# The docstring examples of lrtools run as doctests (--doctest-modules lrtools).
test: data
	LRTOOLS_QUICK=1 TQDM_DISABLE=1 $(PY) -m pytest tests lrtools notebooks --ignore=tests/browser \
		--doctest-modules $(NBVAL)

test-unit: data
	TQDM_DISABLE=1 $(PY) -m pytest tests lrtools --ignore=tests/browser --doctest-modules

test-notebooks: data
	LRTOOLS_QUICK=1 TQDM_DISABLE=1 $(PY) -m pytest notebooks $(NBVAL)

# `make test` again in a second venv, .venv-torch-$(TORCH), on another torch (CI: the oldest
# pyproject.toml allows): make test-torch TORCH=2.9.1 TORCHVISION=0.24.1
TORCH_VENV = .venv-torch-$(TORCH)
TORCH_MAKE = $(MAKE) --no-print-directory VENV=$(TORCH_VENV) \
	PIP_EXTRA="torch==$(TORCH) torchvision==$(TORCHVISION)"
test-torch:
	@test -n "$(TORCH)" -a -n "$(TORCHVISION)" || { echo "usage: make test-torch TORCH=2.9.1 TORCHVISION=0.24.1"; exit 2; }
	+$(TORCH_MAKE) install
	$(TORCH_VENV)/bin/python -c "import torch, torchvision as tv; v = [m.__version__.split('+')[0] for m in (torch, tv)]; \
		print('torch', *v); assert v == ['$(TORCH)', '$(TORCHVISION)'], v"
	+$(TORCH_MAKE) test

notebooks: data
	LRTOOLS_QUICK=0 TQDM_DISABLE=1 $(PY) .ci/execute_notebooks.py notebooks/*.ipynb
	$(PY) -m tools.translate build

lint: $(STAMP)
	$(PY) -m ruff check lrtools tests notebooks .ci benchmarks tools book

test-browser: data $(LAB_OVERRIDES)
	@(command -v chromium && fc-list :lang=ko | grep -q .) >/dev/null 2>&1 \
		|| (apt-get update && apt-get install -y chromium fonts-nanum)  # fonts-nanum: Hangul for the Korean test
	$(PY) -m pytest tests/browser

student: $(STAMP)
	$(PY) -m tools.classroom notebooks build/student
	$(PY) -m tools.classroom notebooks/ko build/student/ko

# The Korean edition (한국어판): every markdown cell and translated comment from the catalogue,
# code and stored outputs from the English notebook. `python -m tools.translate check` lists what
# is missing or stale.
ko: $(STAMP)
	$(PY) -m tools.translate build

bench: data
	$(PY) -m benchmarks.bench $(BENCH_ARGS)

# On a CUDA machine (under 8 min): bench + notebooks 00, 01, 07 (08) on the GPU, LR tables
# compared with the stored ones; build/gpu-check.json. CPU dry run: GPU_CHECK_ARGS="--device cpu --quick"
gpu-check: data
	$(PY) -m tools.gpu_check $(GPU_CHECK_ARGS)

# The notebooks' stored outputs as a static HTML site (never re-executed), warnings as errors.
# The book extra is installed into the venv when it is missing.
book: $(STAMP)
	@$(PY) -c "import sphinx, myst_nb, sphinx_book_theme" 2>/dev/null \
		|| $(PY) -m pip install --quiet --disable-pip-version-check -e ".[book]"
	$(PY) -m sphinx -W --keep-going -E -b html book build/book
	@echo "book: build/book/index.html"

clean:
	rm -rf build .pytest_cache .ruff_cache book/notebooks book/benchmarks
