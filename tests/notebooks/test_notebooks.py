"""Every notebook runs top to bottom in its smoke budget (``VARIBASED_SMOKE=1``).

The notebooks are jupytext percent-format ``.py`` files (notebooks/README.md); each is
converted to a notebook and executed with nbclient in the ``python3`` kernel, in a fresh
temporary working directory (so no run directory lands in the repository). A cell that
raises fails the test with the cell's traceback.

One persistent JAX compilation cache per test session (a fresh temporary directory) lets
notebooks that compile the same program (e.g. the same smoke-size EM iteration in 01, 04
and 06) share it; nothing is reused across sessions.
"""

from __future__ import annotations

import os
import pathlib

import pytest

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
TIMEOUT_PER_CELL = 600


def test_notebooks_found():
    assert len(NOTEBOOKS) == 6, NOTEBOOKS


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_compilation_cache")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch, jax_cache):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    notebook = jupytext.read(NOTEBOOK_DIR / name)
    monkeypatch.setenv("VARIBASED_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # headless
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(jax_cache))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(NOTEBOOK_DIR), str(NOTEBOOK_DIR.parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("VARIBASED_RESULTS", raising=False)
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_PER_CELL, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{name} failed in smoke mode:\n{error}", pytrace=False)
