"""Every notebook runs top to bottom in its smoke budget (``VARIBASED_SMOKE=1``).

The notebooks are jupytext percent-format ``.py`` files (notebooks/README.md); each is
converted to a notebook and executed with nbclient in the ``python3`` kernel, in a fresh
temporary working directory (so no run directory lands in the repository). A cell that
raises fails the test with the cell's traceback.

The execution is ``notebooks/execute.py``'s (the one ``make notebooks`` runs at the default
budget): each test also checks the executed ``.ipynb`` it writes, that its code cells have
outputs and that the figures were saved as PNG files.

One persistent JAX compilation cache per test session (a fresh temporary directory) lets
notebooks that compile the same program (e.g. the same smoke-size EM iteration in 01, 04
and 06) share it; nothing is reused across sessions.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
TIMEOUT_PER_CELL = 600


def _executor():
    spec = importlib.util.spec_from_file_location("varibased_notebooks_execute", NOTEBOOK_DIR / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_found():
    assert len(NOTEBOOKS) == 6, NOTEBOOKS


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_compilation_cache")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch, jax_cache):
    pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    executor = _executor()
    for key, value in executor.kernel_environment(smoke=True).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(jax_cache))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    monkeypatch.delenv("VARIBASED_RESULTS", raising=False)
    monkeypatch.delenv("VARIBASED_FIGURES", raising=False)
    out = tmp_path / "executed"
    try:
        path = executor.execute(name, out, workdir=tmp_path, timeout=TIMEOUT_PER_CELL)
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{name} failed in smoke mode:\n{error}", pytrace=False)
    # The executed notebook a reader opens: every code cell ran, and they show outputs.
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code), name
    with_outputs = [cell for cell in code if cell.outputs]
    assert len(with_outputs) >= len(code) // 2, f"{name}: {len(with_outputs)}/{len(code)} cells with outputs"
    images = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    figures = sorted((tmp_path / "runs" / "figures").glob("*/*.png"))
    # Every figure is saved as a PNG (notebooks/figures.py) and shown inline.
    assert figures and len(images) >= len(figures), (name, len(images), figures)
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 5_000, figure
