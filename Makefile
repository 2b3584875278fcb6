# varibased: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export MPLBACKEND := Agg
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export XDG_CACHE_HOME := $(CURDIR)/.cache

# A Python >= 3.12: on PATH, else pyenv's installed versions.
PYTHON_CANDIDATES := python3.13 python3.12 python3 \
	$(sort $(wildcard $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)/versions/3.1[2-9]*/bin/python3))
FIND_PYTHON = for p in $(PYTHON_CANDIDATES); do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	    echo $$p; break; fi; done

.PHONY: demo test lint clean venv notebooks lab

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@py=$$($(FIND_PYTHON)); \
	if [ -z "$$py" ]; then \
	  echo "error: varibased needs Python >= 3.12 (arviz 1.x requires it); none found on PATH" >&2; \
	  echo "       or under \$$(pyenv root)/versions/. Install one, e.g. 'pyenv install 3.12'." >&2; \
	  exit 1; fi; \
	echo "using $$py ($$($$py --version))"; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
	  rm -rf $(VENV) && $$py -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# The `notebook` extra (jupyterlab, ipywidgets, jupytext), once per pyproject change.
$(VENV)/.notebook: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[dev,notebook]'
	@touch $@

# All six notebooks at their default budget (tens of minutes on a 2-core CPU), executed into
# .ipynb files with their outputs under runs/notebooks/ (ignored); figures under runs/figures/.
# NOTEBOOK_ARGS="--smoke 01_quickstart" runs a subset in the smoke budget.
notebooks: $(VENV)/.notebook
	$(PY) notebooks/execute.py --out runs/notebooks $(NOTEBOOK_ARGS)

# Jupyter Lab on the notebooks: jupytext opens the percent-format .py files as notebooks
# (right click > Open With > Notebook); outputs stay out of git.
lab: $(VENV)/.notebook
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

demo: venv
	$(PY) -m varibased.inference.cli demo

test: venv
	$(PY) -m ruff check .
	VARIBASED_SMOKE=1 VARIBASED_RUN_PICTURES=curve $(PY) -m pytest -q tests
	JAX_CHECK_TRACER_LEAKS=1 $(PY) -m pytest -q -m tracer_leaks tests
	JAX_ENABLE_X64=1 $(PY) -m pytest -q -m x64 tests

lint: venv
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .cache runs
