# Everyday commands; each installs what it needs first (only when pyproject.toml
# changed since the last install).

PYTHON ?= python3
VENV := .venv
# Settings default DEBUG to off (production); these commands are for development.
export DEBUG ?= 1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint check bench clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Order-only on the interpreter: creating the venv is not a reason to reinstall,
# a missing or older stamp is.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The whole system on http://127.0.0.1:8000 (PORT=... to change); Ctrl-C stops it.
run: install
	$(PY) -m stack run

# Pytest next to a Redis of its own if none answers; make test ARGS="-k rooms -x"
test: install
	node --test tests/js/
	$(PY) -m stack test $(ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# What CI checks before the tests: lint, mypy --strict, no missing migration.
check: lint
	$(VENV)/bin/mypy
	$(PY) manage.py makemigrations --check --dry-run

bench: install
	$(PY) -m bench

# Generated files only: the venv and the database (db.sqlite3) stay.
clean:
	rm -rf .pytest_cache .ruff_cache .stack staticfiles test-output
	rm -f test-db.sqlite3* .celerybeat-schedule*
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
