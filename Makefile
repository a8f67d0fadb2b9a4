# Two commands for a newcomer: `make run` (the local stack) and `make test` (every test).
# Both bootstrap what they need: a virtualenv in .venv and Azurite through `npm ci`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-any-date lint typecheck unit bench chaos clean package conformance test-313

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

.PHONY: bootstrap
bootstrap: $(STAMP) node_modules/.package-lock.json

# Debian's chromium renders the status page in tests/e2e/test_status_page.py. Installed with apt-get
# when missing and we are root; otherwise this says why, writes it to $(CHROMIUM_NOTE), and that test
# skips with the same reason.
CHROMIUM := /usr/bin/chromium
CHROMIUM_NOTE := .artifacts/chromium-missing.txt
.PHONY: chromium
chromium:
	@rm -f $(CHROMIUM_NOTE)
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	why=""; \
	if [ "$$(id -u)" != 0 ]; then why="not root, cannot apt-get install chromium"; \
	elif ! command -v apt-get >/dev/null 2>&1; then why="no apt-get on this machine"; \
	else \
	  echo "Installing Debian's chromium with apt-get (for tests/e2e/test_status_page.py)"; \
	  out=$$( { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } 2>&1 ); \
	  tail=$$(printf '%s' "$$out" | tail -n 3 | tr '\n' ' '); \
	  [ -x $(CHROMIUM) ] || why="apt-get could not install chromium at $(CHROMIUM)$${tail:+: $$tail}"; \
	fi; \
	if [ -n "$$why" ]; then \
	  mkdir -p $(dir $(CHROMIUM_NOTE)) && printf '%s\n' "$$why" > $(CHROMIUM_NOTE); \
	  echo "*** chromium missing: $$why"; \
	  echo "*** tests/e2e/test_status_page.py will be skipped"; \
	fi

# Debian's faketime moves the system clock for a command and every process it starts (Azurite, both
# emulators, the host); test-any-date uses it. Installed with apt-get when missing and we are root;
# otherwise this says why and fails. (Not named FAKETIME: that is libfaketime's own variable, and make
# would export our value of it to every command run under faketime.)
FAKETIME_BIN := /usr/bin/faketime
.PHONY: faketime
faketime:
	@if [ -x $(FAKETIME_BIN) ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "*** faketime missing: install Debian's faketime package (needs root and apt-get)"; exit 1; \
	fi; \
	echo "Installing Debian's faketime with apt-get (for make test-any-date)"; \
	{ DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime; } >/dev/null 2>&1 || true; \
	[ -x $(FAKETIME_BIN) ] || { echo "*** apt-get could not install faketime"; exit 1; }

run: bootstrap
	$(PY) -m devstack.run

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: bootstrap
	$(VENV)/bin/mypy

test: bootstrap chromium lint typecheck
	$(PY) -m pytest

# The suite must pass on any date: the end-to-end tests again under a system clock moved 400 days ahead
# and a week back, for every process they start. Bootstrapping happens first on the real clock (TLS
# certificates and package indexes are checked against it). The offsets run side by side (each run's stack
# is on free loopback ports, Azurite in memory), each into its own log, printed when both have ended.
ANY_DATE_OFFSETS ?= +400d -7d
test-any-date: bootstrap chromium faketime
	@mkdir -p .artifacts; pids=""; \
	for offset in $(ANY_DATE_OFFSETS); do \
	  ( echo "== tests/e2e with the clock moved $$offset: $$($(FAKETIME_BIN) -f "$$offset" date -u '+%Y-%m-%d %H:%M UTC')"; \
	    $(FAKETIME_BIN) -f "$$offset" $(PY) -m pytest -p no:cacheprovider tests/e2e ) > .artifacts/any-date$$offset.log 2>&1 & \
	  pids="$$pids $$!"; \
	done; \
	failed=0; for pid in $$pids; do wait $$pid || failed=1; done; \
	for offset in $(ANY_DATE_OFFSETS); do cat .artifacts/any-date$$offset.log; done; \
	exit $$failed

# The conformance run: every function of function_app.py through the real Python worker library
# (azure-functions-runtime, which the 3.13+ worker loads in-process) beside the dev host, on Azurite and both
# emulators (tests/runtime/). Its own Python 3.13 virtualenv, inside .venv/ (ignored, removed by clean),
# made from pyenv's 3.13 or python3.13 on PATH, or PYTHON313=/path/to/python3.13.
VENV313 := $(VENV)/py313
STAMP313 := $(VENV313)/.installed
PYTHON313 ?= $(shell for p in $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13 2>/dev/null \
	| sort -rV) "$$(command -v python3.13)"; do "$$p" -c '' 2>/dev/null && echo "$$p" && break; done)

$(STAMP313): requirements.txt requirements-dev.txt tests/runtime/requirements.txt
	@test -n "$(PYTHON313)" || { echo "*** no Python 3.13: install one (pyenv install 3.13) or set PYTHON313"; exit 1; }
	test -x $(VENV313)/bin/python || $(PYTHON313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/runtime/requirements.txt
	touch $@

conformance: $(STAMP313) node_modules/.package-lock.json
	CONFORMANCE_REQUIRED=1 $(VENV313)/bin/python -m pytest -p no:cacheprovider tests/runtime

# Every test (pytest's part of make test) on Python 3.13, in the same virtualenv: azure-functions 2.x there
# (1.x below 3.13, requirements.txt), and tests/runtime runs instead of skipping. ruff and mypy are not repeated.
test-313: $(STAMP313) node_modules/.package-lock.json chromium
	CONFORMANCE_REQUIRED=1 $(VENV313)/bin/python -m pytest -p no:cacheprovider

# The deploy zip, as `func azure functionapp publish` builds it (the tree minus .funcignore).
package: bootstrap
	$(PY) -m devstack.package --out .artifacts/app.zip

# make bench [SIZE=large]: every benchmark prints its table; docs/benchmarks.md records the run.
bench: bootstrap
	$(PY) -m bench $(SIZE)

# The chaos run and the fuzzers at full size (5,000 examples each); -s shows the chaos run's counts.
# CONNECTOR=dataverse runs the chaos against the Dataverse connector and emulator (default rest).
chaos: CONNECTOR ?= rest
chaos: bootstrap
	$(PY) -m pytest -m chaos --chaos-size=large --chaos-connector=$(CONNECTOR) -s tests/chaos tests/fuzz

clean:
	rm -rf $(VENV) node_modules .devstack .pytest_cache .mypy_cache .ruff_cache
