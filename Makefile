# The two commands of the README: `make run` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench load load-ui clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/payswitch serve

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check switch actors persistence tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

load: $(STAMP)
	$(BIN)/python -m bench.load $(LOAD_ARGS)

load-ui: $(STAMP)
	$(BIN)/python -m bench.load --ui $(LOAD_ARGS)

clean:
	rm -rf $(VENV) data bench/out
