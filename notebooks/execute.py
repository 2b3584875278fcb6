"""Execute the jupytext notebooks into ``.ipynb`` files with their outputs.

    python notebooks/execute.py [--smoke] [--out runs/notebooks] [NAME ...]

Each percent-format ``.py`` notebook is converted with jupytext, executed top to bottom with
nbclient in the ``python3`` kernel (working directory: ``--workdir``, the repository root by
default, so run directories and figures land under its ignored ``runs/``), and written as
``<out>/<name>.ipynb`` with every cell's outputs, also when a cell fails (the error is then
in the notebook and the exit status is 1). ``make notebooks`` runs all six at their default
budget; ``tests/notebooks/test_notebooks.py`` uses :func:`execute` in smoke mode.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))


def kernel_environment(smoke: bool) -> dict[str, str]:
    """Environment variables the kernel needs: the smoke flag, the notebooks' helpers and the
    repository on ``PYTHONPATH``, a headless inline backend."""
    env = {"MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "PYTHONPATH": os.pathsep.join([str(NOTEBOOK_DIR), str(NOTEBOOK_DIR.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    if smoke:
        env["VARIBASED_SMOKE"] = "1"
    return env


def execute(name: str, out_dir: str | pathlib.Path, *, workdir: str | pathlib.Path,
            timeout: int = 1800) -> pathlib.Path:
    """Execute ``notebooks/<name>`` into ``<out_dir>/<stem>.ipynb`` (written also on failure).

    The kernel inherits this process's environment (see :func:`kernel_environment`).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (the notebook is still written).
    """
    import jupytext
    import nbclient
    import nbformat

    notebook = jupytext.read(NOTEBOOK_DIR / name)
    out = pathlib.Path(out_dir) / (pathlib.Path(name).stem + ".ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    finally:
        nbformat.write(notebook, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"notebooks (default: all of {', '.join(NOTEBOOKS)})")
    parser.add_argument("--out", default="runs/notebooks", help="folder of the executed .ipynb files")
    parser.add_argument("--workdir", default=str(NOTEBOOK_DIR.parent), help="the kernels' working directory")
    parser.add_argument("--smoke", action="store_true", help="VARIBASED_SMOKE=1: seconds-long budgets")
    args = parser.parse_args(argv)
    names = [n if n.endswith(".py") else f"{n}.py" for n in args.names] or NOTEBOOKS
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        print(f"error: unknown notebooks {unknown}; known: {NOTEBOOKS}", file=sys.stderr)
        return 2
    os.environ.update(kernel_environment(args.smoke))
    failed = []
    for name in names:
        start = time.perf_counter()
        try:
            path = execute(name, args.out, workdir=args.workdir)
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s -> {path}", flush=True)
        except Exception as error:  # noqa: BLE001 -- report every notebook, then fail
            failed.append(name)
            print(f"{name}: FAILED after {time.perf_counter() - start:.0f} s ({type(error).__name__}); "
                  f"the notebook with the error is in {args.out}", flush=True)
    print(f"executed notebooks (with outputs): {pathlib.Path(args.out).resolve()}/*.ipynb; "
          f"figures: {pathlib.Path(args.workdir).resolve() / 'runs' / 'figures'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
