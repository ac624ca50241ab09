# The two commands of the README: `make demo` and `make test`. Everything they
# need is installed into .venv from PyPI, pinned by constraints.txt.
# Install output goes to stderr: `make demo` may be spawned by an MCP client, and
# on stdio nothing but the protocol may reach stdout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_USER ?= alice

.PHONY: demo test lint typecheck unit bench install clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("rowgate needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	@echo "installing rowgate and its dependencies into $(VENV) ..." >&2
	@$(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip >&2
	@$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' >&2
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@$(BIN)/rowgate demo --user $(DEMO_USER)

lint: $(STAMP)
	$(BIN)/ruff check server schemas tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

# Point lookup and 50-row list: raw asyncpg, role tx, rowgate in-process, stdio and Streamable
# HTTP (bearer token per call; 1 and 8 sessions). More calls: make bench BENCH_ARGS="--calls 5000"
bench: $(STAMP)
	$(BIN)/python -m bench.select_rows $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
