# Everything a fresh machine needs is set up by these targets: only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/bin/uv
PYTEST_WORKERS ?= auto

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test lint layers typecheck check migrations-check bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.synced ## create the environment from the lock file

# `make run PORT=8080` (or HOTLINE_PORT) serves on another port. The demo centre's accounts have
# published passwords: DEMO=auto seeds it only on the embedded server; DEMO=1 also on a
# configured DATABASE_URL; DEMO=0 never.
PORT ?=
DEMO ?= auto

run: install ## migrate and serve on http://127.0.0.1:8000 (the demo centre on the embedded server)
	$(VENV)/bin/hotline serve --migrate --demo "$(DEMO)"$(if $(PORT), --port "$(PORT)")

test: install ## the whole suite (embedded PostgreSQL unless TEST_DATABASE_URL is set)
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

migrations-check: install ## models and migrations agree; migrations reverse cleanly
	$(VENV)/bin/python -m scripts.migrations_check

layers: install ## import contracts between layers (pyproject.toml [tool.importlinter])
	$(VENV)/bin/lint-imports

check: lint layers typecheck migrations-check test ## everything CI checks

bench: install ## benchmarks (slow; not part of the test suite)
	@ls bench/*.py >/dev/null 2>&1 && for b in bench/*.py; do $(VENV)/bin/python $$b || exit 1; done || echo "no benchmarks yet"

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
