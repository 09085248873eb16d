# One workflow: CI (.ci/run) calls `make test`; people call the same targets.
# Python 3.11 where present (what CI and the README assume), else the default python3 (>= 3.10).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench install clean

install: $(STAMP)

# torch first, pinned: 2.13.0 is the CPU build on this machine's disk; an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11 (or python3 >= 3.10) on PATH"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/luodi quickstart

# Lint first: STYLE.md asks for ruff- and mypy-clean code, and CI runs this target.
test: install lint
	$(BIN)/python -m pytest -q --durations=15

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# The vision benchmark compares with Keras 3 (the `bench` extra), installed here rather than for every test run.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/vision.py
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/runtime_levers.py
	$(BIN)/python benchmarks/text_models.py

clean:
	rm -rf $(VENV) .luodi build *.egg-info src/*.egg-info

# Regenerate the config reference from the field descriptions in src/luodi/config.py (a test checks it).
docs/config.md: src/luodi/config.py
	$(BIN)/python -m luodi.config > $@
