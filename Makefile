# Every target sets up .venv from plain python3 when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow test-gpu bench lint notebooks lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# JupyterLab and widgets (the `lab` extra) in .venv, then Lab on the project: its notebooks run
# on .venv's python. On a remote machine: make lab LAB_ARGS="--no-browser --ip=0.0.0.0"
LAB_STAMP := $(VENV)/.installed-lab
LAB_ARGS  ?=
# Jupyter refuses root unless told; containers often run as root
ROOT_ARG  := $(if $(filter 0,$(shell id -u)),--allow-root)

$(LAB_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,lab]'
	touch $(LAB_STAMP)

lab: $(LAB_STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) $(ROOT_ARG) $(LAB_ARGS) notebooks/01_prepare.ipynb

demo: $(STAMP)
	$(BIN)/python -m sleepdetect run params/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# on a machine with a CUDA device: mixed precision, and DDP when two GPUs are visible
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

bench: $(STAMP)
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/metric.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/train.py --full
	$(BIN)/python bench/infer.py --full
	$(BIN)/python bench/growth.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench notebooks
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py

clean:
	rm -rf outputs data/synthetic .pytest_cache
