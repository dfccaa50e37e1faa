# The lab's two commands are `make lab` and `make test`; each installs what it
# needs into .venv on first use (only Python 3.11+ is required on the machine).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

.PHONY: help setup lab test test-ui test-redis7 test-fast bench notebooks lint clean

help:
	@echo "make lab        install on first use, then open JupyterLab on notebooks/"
	@echo "make test       run every test and validate every notebook (pytest --nbval)"
	@echo "make test-ui    Run All of every notebook in JupyterLab, in headless Chromium"
	@echo "make test-redis7  the tests and every notebook against Redis 7.0 (Debian)"
	@echo "make bench      run the benchmarks (prints ratios measured in one run)"
	@echo "make notebooks  re-execute the notebooks in place (after editing them)"
	@echo "make lint       ruff + mypy"
	@echo "make clean      remove .venv and caches"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	  "labkit needs Python 3.11 or newer; run: make PYTHON=python3.12 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[lab,test,ui,bench,dev]"
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
	$(BIN)/python -m pytest tests notebooks $(NBVAL)
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

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -x -q

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

notebooks: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py notebooks/[0-9]*.ipynb

lint: $(STAMP)
	$(BIN)/ruff check labkit tests tests_ui benchmarks tools
	$(BIN)/mypy labkit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
