PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: install
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check proxy tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
