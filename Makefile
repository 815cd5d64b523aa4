# The two commands: `make run` serves meterworks, `make test` runs every check CI runs.

VENV := .venv
BIN := $(VENV)/bin
# Re-install only when pyproject.toml changes (the package itself is installed editable).
STAMP := $(VENV)/.installed-pyproject
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=
# bench/ may not exist yet in a checkout; ruff refuses a missing path.
LINT_PATHS := src tests $(wildcard bench)

.PHONY: run test lint poppler wrk bench clean

run: $(STAMP)
	@echo
	@echo "meterworks is starting on http://$(HOST):$(PORT)"
	@echo "To get an API key, run in another terminal:"
	@echo '    $(BIN)/meterworks keys create --org "My company"'
	@echo "(the key is the last line it prints; send it as 'Authorization: Bearer <key>')"
	@echo
	$(BIN)/meterworks serve --host $(HOST) --port $(PORT)

test: lint poppler
	METERWORKS_REQUIRE_POSTGRES=1 scripts/with-postgres.sh $(BIN)/pytest $(PYTEST_ARGS)

# The invoice PDF tests read PDFs with pdftotext and pdftoppm (Debian: poppler-utils).
poppler:
	@if ! command -v pdftotext >/dev/null 2>&1 || ! command -v pdftoppm >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update && apt-get install -y poppler-utils; \
		else echo "the PDF tests need pdftotext and pdftoppm (poppler-utils)" >&2; exit 1; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

bench: $(STAMP) wrk
	scripts/with-postgres.sh --durable $(BIN)/python -m bench

# The single-usage and read benchmarks load the server with wrk (Debian: wrk); without it they
# fall back to Python clients, which saturate before the server does.
wrk:
	@if ! command -v wrk >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update && apt-get install -y wrk; \
		else echo "install wrk for the benchmarks' load (they fall back to Python clients)" >&2; fi; \
	fi

$(BIN)/python:
	@set -e; \
	if command -v python3.11 >/dev/null 2>&1; then py=python3.11; \
	elif python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then py=python3; \
	else echo "meterworks needs Python 3.11 or newer (python3.11 or python3)" >&2; exit 1; fi; \
	echo "creating $(VENV) with $$($$py --version)"; \
	$$py -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -type f \( -name '*.db' -o -name '*.db-wal' -o -name '*.db-shm' -o -name '*.db-writers.lock' \) \
		-exec rm -f {} +
