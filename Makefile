# Two commands do all the set-up on a fresh machine:
#   make demo   installs what it needs, ensures the engine and image, runs the demo
#   make test   the same set-up, then every test (no engine is a failure, not a skip)
#   make bench  the same set-up and wrk, then every benchmark row

# The distribution's python3 when it can make a venv, else the first python3 on PATH. Debian
# builds its python3 with PGO and LTO: the Python-bound paths here (a session's host half, a
# local run) took 15-20% less time on it than on a plain build of 3.11 on the same machine
# (benchmarks/README.md). `make clean` first to move an existing venv to another python.
PYTHON ?= $(shell /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null \
            && echo /usr/bin/python3 || echo python3)
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test unit fuzz bench setup engine image images browser git podman wrk lint clean

$(BIN)/pyhost: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/pyhost

engine: setup
	$(BIN)/pyhost engine up

image: engine
	$(BIN)/pyhost image build

# hxpy:py3.9, hxpy:py3.11, hxpy:py3.13: the images runs of those python_version use. Each is
# a no-op when current; the first time, a Debian base per suite is made (about a minute each).
images: engine
	$(BIN)/pyhost image build --python all

demo: image
	$(BIN)/python examples/demo.py

# Debian's chromium and chromium-driver: the console's tests drive a real browser.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver; }

# git, with its http-backend: git+https:// function sources, and the tests' server of them.
git:
	@command -v git >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends git; }

# Debian's podman: tests/integration/test_podman.py runs pyhost on Podman's Docker-compatible
# API, on a private `podman system service` it starts and removes (the engine is untouched).
podman:
	@command -v podman >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman; }

test: image images browser git podman
	$(BIN)/python -m pytest -q

unit: setup git
	$(BIN)/python -m pytest -q tests/unit

# Debian's wrk: the load generator of the serve rows (benchmarks/rows_serve.py); bench also
# needs the browser (the console rows follow a log in headless Chromium).
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends wrk; }

bench: image wrk browser
	$(BIN)/python benchmarks/run.py

# The wire fuzzed for longer: the CI's fuzz tests with 25 times the examples, randomized
# (HYPOTHESIS_PROFILE=fuzz, read by tests/faults/fuzz_support.py), so each run looks elsewhere.
fuzz: image
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q $(wildcard tests/faults/test_wire_fuzz_*.py)

lint: setup
	$(BIN)/ruff check pyhost container tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
