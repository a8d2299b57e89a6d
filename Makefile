# Every target sets up .venv from plain python3 when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow bench lint notebooks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sleepdetect run params/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/metric.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/infer.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench notebooks
	$(BIN)/ruff format --check src tests bench

notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py

clean:
	rm -rf outputs data/synthetic .pytest_cache
