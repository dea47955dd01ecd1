# einspace: the two commands of the README.
#   make demo   creates .venv, installs the project and runs the default search + report
#   make test   creates .venv (if missing), installs test extras, runs ruff, the import-linter
#               layer contracts (pyproject's [tool.importlinter]), mypy and pytest
# TORCH is installed before the package so that pip does not pull a CUDA build:
#   make demo TORCH=torch        (GPU users)
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= einspace-demo

.PHONY: demo test lint typecheck pytest chromium postgresql clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test,docs]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/einspace demo --out $(DEMO_OUT)

# The docs site (docs/, mkdocs.yml) in strict mode: a broken link, anchor or docstring fails.
# make test checks the same build in tests/test_docs.py.
.PHONY: docs
docs: $(VENV)/.installed-test
	$(BIN)/mkdocs build --strict --site-dir site

# Chromium lets the report test render index.html in a real browser; skipped where apt is absent.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium install failed; the browser test will be skipped"; \
	fi

# PostgreSQL lets the run-store tests start a private server on 127.0.0.1; skipped where apt is absent.
postgresql:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		&& command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "postgresql install failed; the PostgreSQL tests will be skipped"; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test chromium postgresql
	$(BIN)/pytest -n 2

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(DEMO_OUT) site
