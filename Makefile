# Two commands for a newcomer: `make run` (the local stack) and `make test` (every test).
# Both bootstrap what they need: a virtualenv in .venv and Azurite through `npm ci`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench chaos clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

.PHONY: bootstrap
bootstrap: $(STAMP) node_modules/.package-lock.json

run: bootstrap
	$(PY) -m devstack.run

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: bootstrap
	$(VENV)/bin/mypy

test: bootstrap lint typecheck
	$(PY) -m pytest

# make bench [SIZE=large]: every benchmark prints its table; docs/benchmarks.md records the run.
bench: bootstrap
	$(PY) -m bench $(SIZE)

# The chaos run and the fuzzers at full size (5,000 examples each); -s shows the chaos run's counts.
chaos: bootstrap
	$(PY) -m pytest -m chaos --chaos-size=large -s tests/chaos tests/fuzz

clean:
	rm -rf $(VENV) node_modules .devstack .pytest_cache .mypy_cache .ruff_cache
