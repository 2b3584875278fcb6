"""Figures of the notebooks: saved as PNG files, shown inline in Jupyter.

``show(name)`` saves the current figure as ``runs/figures/<notebook>/<name>.png`` (relative to
the working directory; ``runs/`` is ignored by git; ``VARIBASED_FIGURES`` moves it) and then
shows it where that means something (Jupyter's inline backend, an interactive window); run
as a script under a non-interactive backend (``MPLBACKEND=Agg``), it prints the path and
closes the figure instead of calling a ``plt.show()`` that does nothing.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib
import matplotlib.pyplot as plt

__all__ = ["Figures"]

_NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}


class Figures:
    """The figures of one notebook (``Figures("01_quickstart").show("learning_curve")``)."""

    def __init__(self, notebook: str):
        root = pathlib.Path(os.environ.get("VARIBASED_FIGURES", "runs/figures"))
        self.directory = root / notebook
        self.directory.mkdir(parents=True, exist_ok=True)

    def show(self, name: str, fig=None) -> pathlib.Path:
        """Save ``fig`` (default: the current figure) as ``<name>.png``, then show or close it."""
        fig = plt.gcf() if fig is None else fig
        path = self.directory / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        print(f"figure: {path}")
        backend = matplotlib.get_backend().lower()
        if "inline" in backend or backend not in _NON_INTERACTIVE:
            plt.show()
        else:
            plt.close(fig)
        return path
