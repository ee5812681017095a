# streamdag: `make demo` and `make test` do all set-up themselves (idempotent, quick when done).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The example runtime plug-in (docs/runtimes.md), installed so its entry point is found.
EXAMPLE_RUNTIME := examples/keywords_runtime
# The web view's end-to-end test drives Debian's headless Chromium.
CHROMIUM := /usr/bin/chromium
PYTEST_ARGS ?=
DOCS ?= 200
KEEP ?=

.PHONY: setup jars test test-fast lint format bench demo clean proto

setup: $(STAMP) jars

$(STAMP): pyproject.toml $(EXAMPLE_RUNTIME)/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install -q --disable-pip-version-check -e $(EXAMPLE_RUNTIME)
	@touch $@

# Apache Kafka's jars for the local broker, fetched and checked as `streamdag broker start`
# does for a pip user (into ~/.cache/streamdag/kafka/<version>); quick when they are there.
jars: $(STAMP)
	@command -v java >/dev/null || { echo "error: java not found: install Java 17+"; exit 1; }
	@$(BIN)/streamdag broker install >/dev/null

$(CHROMIUM):
	@echo "installing Debian's chromium (the web view's browser test needs it)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Each of the two test processes starts its own broker on a free port (tests/conftest.py)
# and stops it whatever the outcome; a file's tests stay in one process, so a module's
# fixtures (a 3-node cluster) are made once. Files are handed out in the order
# tests/conftest.py gives them (the longest first). Most tests wait on Kafka, so two
# processes share the 2 cores well.
TEST_PROCESSES ?= 2
test: setup $(CHROMIUM)
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The unit tests: no broker, no long waits (tests marked `kafka` or `slow` are left out).
test-fast: setup
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) -m "not kafka and not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run.py

# `make demo DOCS=1000` sends more notes; `make demo KEEP=1` leaves everything running until
# Ctrl-C. The models train on first use into examples/medical_records/models (ignored).
demo: setup
	$(BIN)/streamdag demo --docs $(DOCS) $(if $(filter-out 0 no false,$(KEEP)),--keep)

proto: setup
	$(BIN)/python src/streamdag/protocol/generate.py

clean:
	rm -rf .streamdag build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
