# curvnb: `make book` executes every chapter (quick profile) and builds the HTML book;
# `make test` runs the test suite. Both set up .venv on first use.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.curvnb-installed
PROFILE ?= quick
TEST_WORKERS ?= 2

.PHONY: setup book test browser bench coverage sweep clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo "setting up $(VENV) (pinned requirements + curvnb in editable mode) ..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -r requirements.txt
	@$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

book: setup
	@$(VENV)/bin/curvnb book --profile $(PROFILE)

# The default sweep (issue 26): the five studies, quick profile, over chapter seeds $(SWEEP_SEEDS), then the
# book with the pooled verdicts (Seed robustness page, scorecard). Completed tasks are not rerun.
SWEEP_SEEDS ?= 1 2 3
SWEEP_PARALLEL ?= 2
SWEEP_CHAPTERS := huh2020 orvieto2021 jastrzebski2020 duersch2024 buffelli2024
sweep: setup
	@$(VENV)/bin/curvnb sweep $(SWEEP_CHAPTERS) --seeds $(SWEEP_SEEDS) --max-parallel $(SWEEP_PARALLEL)
	@$(VENV)/bin/curvnb build

# Headless Chromium for the rendered-book check (Debian packages; needs root or sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing chromium and chromium-driver ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: setup browser
	@# two pytest-xdist workers (the cores of a 2-core CI runner): the modules that execute chapters share
	@# one of them (xdist_group "book", tests/conftest.py), the rest is spread over both; the 15 slowest
	@# tests are listed at the end: where the suite's minutes go. One thread per process: the two workers
	@# (and the chapter kernels they start) already fill the two cores; more threads only contend.
	@OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15

bench: setup
	@# --no-deps: the extras would otherwise pull torchvision and move torch off the pinned version.
	@{ $(PY) -m pip install -q -c requirements.txt --no-deps -r benchmarks/requirements.txt && \
	   $(PY) -m pip install -q -c requirements.txt einops einconv linear_operator opt_einsum unfoldNd; } || \
	   echo "benchmark extras unavailable; those comparisons will be skipped"
	@# one thread: round-robin ratios are comparable across machines; results go to benchmarks/results/
	@OMP_NUM_THREADS=1 $(PY) benchmarks/curvature.py
	@OMP_NUM_THREADS=1 $(PY) benchmarks/exact_gauss_newton.py
	@OMP_NUM_THREADS=1 $(PY) benchmarks/natural_gradient.py
	@OMP_NUM_THREADS=1 $(PY) benchmarks/stacked_units.py

# Coverage of every bootstrapped claim's interval at its quick-profile unit count, by simulation on the
# book's own units (needs `make book` first); writes benchmarks/results/coverage.{json,md}, which the tests check.
coverage: setup
	@OMP_NUM_THREADS=1 $(PY) -m curvnb.claims.coverage

clean:
	rm -rf _build
