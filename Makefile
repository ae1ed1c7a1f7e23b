# Everyday commands; each installs what it needs first (only when the lock file
# changed since the last install). `make run` installs what running needs
# (requirements/run.txt); the tests, linters and the bench install the test set
# (requirements/test.txt, which CI installs too). Both are pip-compile's locks of
# pyproject.toml: `make lock` after changing a dependency there.

PYTHON ?= python3
VENV := .venv
# Settings default DEBUG to off (production); these commands are for development.
export DEBUG ?= 1
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# npm's own record of what `npm ci` installed (package-lock.json: the AG-UI client and
# axe-core, which only the tests run).
NODE_STAMP := node_modules/.package-lock.json

.PHONY: install install-run run test test-fast chaos lint check bench lock clean

install: $(TEST_STAMP) $(NODE_STAMP)
install-run: $(RUN_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Order-only on the interpreter: creating the venv is not a reason to reinstall,
# a missing or older stamp is. The install is quiet, so it says what it does first.
$(RUN_STAMP): requirements/run.txt pyproject.toml | $(PY)
	@echo "installing what running needs into $(VENV) (requirements/run.txt; the first time takes a minute)"
	$(PIP) install --quiet -r requirements/run.txt
	$(PIP) install --quiet --no-deps -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): requirements/test.txt pyproject.toml | $(PY)
	@echo "installing the test set into $(VENV) (requirements/test.txt: Playwright, mypy, ...; the first time takes a few minutes)"
	$(PIP) install --quiet -r requirements/test.txt
	$(PIP) install --quiet --no-deps -e .
	touch $(TEST_STAMP) $(RUN_STAMP)

$(NODE_STAMP): package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The whole system on http://127.0.0.1:8000 (PORT=... to change; the links in mail
# and webhooks follow it unless SITE_URL is set); Ctrl-C stops it.
run: install-run
	$(PY) -m stack run

# Pytest next to a Redis of its own if none answers; make test ARGS="-k rooms -x".
# On TEST_PROCESSES processes (pytest-xdist; each has its own test database and Redis
# names; TEST_PROCESSES=0 runs in this one): the tests of a module that share its
# workers and Chromium stay together in one (`--dist loadgroup`, tests/plugins/stack.py),
# the rest are spread one by one.
TEST_PROCESSES ?= 2

# Everything but the chaos run (below), which CI runs after it.
test: install
	node --test tests/js/
	$(PY) -m stack test -n $(TEST_PROCESSES) --dist loadgroup -m "not chaos" $(ARGS)

# Two minutes of the chaos run (bench/README.md) with a fixed seed: the real system,
# its own PostgreSQL and Redis, processes SIGKILLed every few seconds, then every
# invariant checked. CI runs it after `make test`; `python -m bench.chaos --minutes 10
# --seed N` is the long run.
chaos: install
	$(PY) -m stack test -m chaos tests/bench/test_chaos_run.py $(ARGS)

# The quick tier, for the edit-test cycle: every test that starts no server process
# (not marked e2e or browser) and takes no seconds of its own (not marked slow: the
# API fuzzing, Python subprocesses, stdio MCP servers), on two processes (pytest-xdist;
# each has its own test database and Redis names); `make test` runs these and the
# rest, as CI does.
test-fast: install
	node --test tests/js/
	$(PY) -m stack test -m "not e2e and not browser and not slow" -n 2 $(ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# What CI checks before the tests: lint, mypy --strict, no missing migration.
check: lint
	$(VENV)/bin/mypy
	$(PY) manage.py makemigrations --check --dry-run

bench: install
	$(PY) -m bench

# pip-compile (pip-tools) pins the dependencies of pyproject.toml, keeping the pins
# it already has unless they no longer fit, each with its hashes (pip then installs
# nothing whose archive differs from the one locked).
lock:
	$(PIP) install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url \
		--no-emit-find-links --annotation-style line --generate-hashes \
		--output-file requirements/run.txt pyproject.toml
	$(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url \
		--no-emit-find-links --annotation-style line --generate-hashes --extra test \
		--output-file requirements/test.txt pyproject.toml

# Generated files only: the venv and the database (db.sqlite3) stay.
clean:
	rm -rf .pytest_cache .ruff_cache .stack staticfiles test-output
	rm -f test-db.sqlite3* .celerybeat-schedule*
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
