# `make demo` and `make test` each set up .venv if needed, install what they need, and run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test compile lint typecheck check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per extra set; reinstalled when pyproject.toml changes.
$(STAMP)-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[tf,datasets,report]'
	touch $@

$(STAMP)-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Byte-compiled once here: where PYTHONDONTWRITEBYTECODE is set (as in many images), every
# quantlens process, and every worker it starts, would otherwise compile its modules anew.
compile: | $(BIN)/python
	$(BIN)/python -m compileall -q src

demo: $(STAMP)-demo compile
	$(BIN)/quantlens demo

test: $(STAMP)-dev compile
	$(BIN)/python -m pytest -q

lint: $(STAMP)-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)-dev
	$(BIN)/mypy src/quantlens

check: lint typecheck test

clean:
	rm -rf $(VENV) quantlens-demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
