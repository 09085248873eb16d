# One workflow: CI (.ci/run) calls `make test`; people call the same targets.
# Python 3.11 where present (what CI and the README assume), else the default python3 (>= 3.10).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-quality install browser postgres rdata clean

install: $(STAMP)

# torch first, pinned: 2.13.0 is the CPU build on this machine's disk; an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11 (or python3 >= 3.10) on PATH"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

demo: install
	$(BIN)/luodi quickstart

# Lint first: STYLE.md asks for ruff- and mypy-clean code, and CI runs this target. `browser` lets the report
# test run in headless Chromium, `postgres` the store tests run on PostgreSQL too.
test: install lint browser postgres rdata
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

# Debian's chromium for the report's browser test: installed when missing and we are root with apt-get (CI);
# otherwise nothing fails and that test skips, saying why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the report's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
			|| echo "chromium could not be installed: the browser test will skip"; \
	else echo "chromium is not installed (needs root and apt-get): the browser test will skip"; fi

# Debian's PostgreSQL server for the store tests on PostgreSQL (tests/postgres.py starts a throwaway one): installed
# when missing and we are root with apt-get (CI); otherwise nothing fails and those tests skip, saying why.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing postgresql for the store tests on PostgreSQL"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
			|| echo "postgresql could not be installed: the PostgreSQL store tests will skip"; \
	else echo "postgresql is not installed (needs root and apt-get): the PostgreSQL store tests will skip"; fi

# Debian's r-cran-janeaustenr (and R) for the text defaults test on Jane Austen's novels: installed when missing and
# we are root with apt-get (CI); otherwise nothing fails and that test skips, saying why.
rdata:
	@if command -v Rscript >/dev/null 2>&1 && Rscript -e 'library(janeaustenr)' >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing r-cran-janeaustenr for the text defaults test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-cran-janeaustenr >/dev/null \
			|| echo "r-cran-janeaustenr could not be installed: the Austen defaults test will skip"; \
	else echo "r-cran-janeaustenr is not installed (needs root and apt-get): the Austen defaults test will skip"; fi

test-fast: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/mypy

# The vision benchmark compares with Keras 3 (the `bench` extra), installed here rather than for every test run.
bench: install postgres
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/vision.py
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/runtime_levers.py
	$(BIN)/python benchmarks/report_cost.py
	$(BIN)/python benchmarks/serve_overhead.py
	$(BIN)/python benchmarks/serve_batching.py
	$(BIN)/python benchmarks/serve_binary.py
	$(BIN)/python benchmarks/serve_workers.py
	$(BIN)/python benchmarks/text_models.py
	$(BIN)/python benchmarks/cpu_precision.py
	$(BIN)/python benchmarks/store.py

# Model quality (benchmarks/quality.py, about 15-25 minutes): two of its datasets ship in Debian's R data packages,
# installed here when missing and we are root with apt-get.
bench-quality: install
	@if ! Rscript -e 'library(dslabs); library(janeaustenr)' >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-cran-dslabs r-cran-janeaustenr >/dev/null; \
		else echo "benchmarks/quality.py needs: apt-get install -y r-cran-dslabs r-cran-janeaustenr"; exit 2; fi; fi
	$(BIN)/python benchmarks/quality.py

clean:
	rm -rf $(VENV) .luodi build *.egg-info src/*.egg-info

# Regenerate the config reference from the field descriptions in src/luodi/config/ (a test checks it).
docs/config.md: $(wildcard src/luodi/config/*.py)
	$(BIN)/python -m luodi.config > $@

# The README's picture of a report: a quickstart-like breast-cancer run, screenshot by headless Chromium.
docs/report.png: install browser
	$(BIN)/python docs/report_screenshot.py $@
