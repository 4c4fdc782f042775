# The two commands of the README: `make run` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-peers bench-tools load load-ui clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/payswitch serve

test: lint browser
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The dashboard's browser test drives Debian's Chromium: installed when missing and this
# machine can (root, apt-get); otherwise that one test is skipped, and says so.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "chromium is missing and cannot be installed here: the browser test is skipped"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check switch actors persistence tests bench
	$(BIN)/mypy

bench: $(STAMP) bench-tools
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

# payswitch beside the bare HTTP stack and PostgreSQL 15, in one run (bench/peers.py).
bench-peers: $(STAMP) bench-tools
	$(BIN)/python -m bench.peers $(BENCH_ARGS)

# wrk, and PostgreSQL's server with pgbench, from Debian's packages when missing and this
# machine can (root, apt-get).
bench-tools:
	@missing=""; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v pgbench >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing:$$missing (install them: apt-get install$$missing)"; exit 1; fi; fi

load: $(STAMP)
	$(BIN)/python -m bench.load $(LOAD_ARGS)

load-ui: $(STAMP)
	$(BIN)/python -m bench.load --ui $(LOAD_ARGS)

clean:
	rm -rf $(VENV) data bench/out
