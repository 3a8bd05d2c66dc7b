# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
# `make test` is the fast tier (no Ray cluster, no GPU, no detection of the whole library: 74 s of pytest in a fresh clone
# on 2 cores, 2026-12-07); `make test-all` runs every tier
# (what CI runs, after `make lint`).
# Each creates .venv, installs the pinned requirements, installs ffmpeg when missing and fetches the
# model; each step is skipped when already in place.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OPENCV4 := opencv-python-headless==4.12.0.88
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup venv ffmpeg model test test-all soak lint demo bench clean

setup: venv ffmpeg model

venv: $(VENV)/.installed

# This machine's pip configuration lists index folders that may not exist; pip warns once per package
# ("Location ... is ignored"). Harmless: those lines are dropped, every other message is kept.
PIP_FILTER := 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(PIP_FILTER)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt $(PIP_FILTER)
	# OpenCV 4.x is the independent reference for the darknet loader; it and OpenCV 5 both
	# provide `cv2`, so it lives in its own folder that only tests/opencv4_reference.py sees.
	$(PY) -m pip install -q --upgrade --no-deps --target $(VENV)/opencv4 $(OPENCV4) $(PIP_FILTER)
	$(PY) -m pip install -q --no-deps -e . $(PIP_FILTER)
	touch $@

ffmpeg:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || \
	  { echo "installing ffmpeg (Debian package)"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ffmpeg >/dev/null; }

model: venv
	$(PY) -m clockwork.cli fetch-model

test: setup
	$(PY) -m pytest -m "not slow and not needs_cuda" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# A ten-minute soak of the Serve app (CI runs the same test for two minutes in test-all).
soak: setup
	CLOCKWORK_SOAK_S=600 $(PY) -m pytest tests/test_soak.py -s $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: setup
	$(PY) scripts/demo.py

bench: setup
	$(PY) -m bench.cpu

clean:
	rm -rf $(VENV) var out samples .pytest_cache
