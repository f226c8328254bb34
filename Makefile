# rarenet — every target creates/refreshes the venv it needs, so a fresh machine
# with only Python 3.11 is enough.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run demo test check bench lint venv clean ext screenshots cli-reference

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The service on the embedded SQLite store (./rarenet.db), collecting this host's
# sockets, with signals printed on the console; Ctrl-C stops it cleanly.
run: $(STAMP)
	$(VENV)/bin/rarenet serve --local

# A simulated fleet with attacks replayed through the real server and the rule
# (scratch store in .run/demo); signals within a minute.
demo: $(STAMP)
	$(VENV)/bin/rarenet demo --workdir .run/demo

# Tests drive a real headless Chromium: .ci/debian-deps installs it when missing.
# Three workers on two cores (pytest-xdist), each running whole modules (their fixtures
# build once): many tests wait on real servers' timeouts, and a third worker fills that time.
TEST_WORKERS ?= 3
test: $(STAMP)
	bash .ci/debian-deps
	$(PY) -m pytest -W error -n $(TEST_WORKERS) --dist loadfile

# The inner loop: lint, then every test not marked slow (real servers, fleets, browsers,
# NATS clusters and their timeouts run in `make test`, which CI runs).
check: lint
	$(PY) -m pytest -W error -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# The README's console screenshots (docs/screenshots/*.png), from the browser test.
screenshots: $(STAMP)
	bash .ci/debian-deps
	SCREENSHOTS_INTO_DOCS=1 $(PY) -m pytest -W error -q tests/console/test_console_browser.py -k every_page_loads_clean

bench: $(STAMP)
	$(PY) -m pytest -W error -s tests/benchmarks -p no:cacheprovider -o testpaths=tests/benchmarks -o python_files='bench_*.py'

lint: $(STAMP)
	$(VENV)/bin/ruff check rarenet/__init__.py rarenet/__main__.py baseline extension tests
	$(VENV)/bin/ruff format --check rarenet/__init__.py rarenet/__main__.py baseline extension tests
	$(VENV)/bin/mypy
	$(PY) -m rarenet.baseline.cli.reference --check docs/cli.md
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layout.py  # the tour (docs/design.md) names every module

# docs/cli.md from every command's --help (lint fails when it is stale).
cli-reference: $(STAMP)
	$(PY) -m rarenet.baseline.cli.reference docs/cli.md

# The osquery extension as one executable file (zipapp with its pure-Python
# dependencies): osqueryi --extension dist/rarenet.ext (docs/extension.md).
ext: $(STAMP)
	$(PY) -m rarenet.extension.zipapp dist/rarenet.ext

clean:
	rm -rf $(VENV) .run
