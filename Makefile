# The two set-up commands: `make demo` and `make test`. Both create .venv with Python 3
# and install torch==2.13.0 (the CPU wheel) before anything that depends on torch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LINT_PATHS := src tests scripts $(wildcard benchmarks)

.PHONY: demo test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/shoptransfer demo

test: $(VENV)/.installed-dev lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports  # the one-way layers contract in pyproject.toml

format: $(VENV)/.installed-dev
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
