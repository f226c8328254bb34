# rarenet — every target creates/refreshes the venv it needs, so a fresh machine
# with only Python 3.11 is enough.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint venv clean demo-data

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Until `rarenet serve` exists: simulate a small fleet, ingest it into the
# embedded SQLite store (./rarenet.db), print the store summary, then replay the
# same logs through the 15-minute rule and show every signal and the scores.
run: $(STAMP)
	$(VENV)/bin/rarenet simulate --hosts 30 --days 3 --attacks --out .run/fleet.log
	$(VENV)/bin/rarenet ingest .run/fleet.log
	$(VENV)/bin/rarenet status
	$(VENV)/bin/rarenet backtest .run/fleet.log --labels .run/fleet.labels.jsonl

test: $(STAMP)
	$(PY) -m pytest -W error

bench: $(STAMP)
	$(PY) -m pytest -W error -s tests/benchmarks -p no:cacheprovider -o testpaths=tests/benchmarks -o python_files='bench_*.py'

lint: $(STAMP)
	$(VENV)/bin/ruff check baseline extension tests
	$(VENV)/bin/ruff format --check baseline extension tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .run
