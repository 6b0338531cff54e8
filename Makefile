# The README's two commands: `make run` (set up + main job) and `make test` (set up + all checks).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench browser postgres

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/dse optimize

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# Debian's headless Chromium and its driver, for the report's browser test (never a
# downloaded browser build); installed only when missing (CI runs as root).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

# Debian's PostgreSQL server (initdb, pg_ctl), for the storage tests that start a real
# server; installed only when missing (CI runs as root).
postgres:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		apt-get update && apt-get install -y --no-install-recommends postgresql; \
	fi

test: lint browser postgres
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m benchmarks.run_all
