# Two commands that work on a fresh machine with only Python >= 3.11 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# setuptools' notice that a folder named like the package takes precedence over
	@# the install: in a checkout that folder is the package, as intended
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

## make run: set up and start the ACS (embedded PostgreSQL unless ACS_DATABASE_URL is set)
run: $(STAMP)
	$(BIN)/acs serve

## make test: set up and run the whole suite
test: $(STAMP)
	$(BIN)/pytest -q

## make screenshots: the web UI's main pages into docs/screenshots (needs /usr/bin/chromium)
screenshots: $(STAMP)
	ACS_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/e2e/test_ui_screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check acs cpe_simulator tests schemas bench
	$(BIN)/mypy --strict acs/cwmp

## make bench: every performance target in one run (BENCH_ARGS=--quick for a smoke run)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
