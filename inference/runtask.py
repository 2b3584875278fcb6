"""The task of a run: a registered id, or a user's own factory by import path
``package.module:factory`` (shared/RUNDIR.md, "Custom tasks").

A run records its task as given (the import path for a custom task). A run directory never
makes the library import code on its own: evaluating a run of a custom task needs the path
named again (:func:`task_of_run`).
"""

from __future__ import annotations

import os
import pathlib
import sys

from varibased.inference.runfiles import RunError
from varibased.models import registry
from varibased.models.task import Task, TaskError

__all__ = ["make_task", "task_of_run", "import_from_current_directory"]


def make_task(task_name: str, **task_config) -> Task:
    """The task ``task_name`` (an id or an import path), checked now.

    Raises:
        RunError: an unknown id, a path that does not import or name a factory of a valid task.
    """
    try:
        return registry.make(task_name, **task_config)
    except TaskError as error:
        raise RunError(str(error)) from error


def task_of_run(recorded: str, named: str | None, config_path: str | pathlib.Path) -> str:
    """The task to evaluate a run on: its recorded task, which must be named again (``named``)
    where it is a custom task by import path.

    Raises:
        RunError: a custom task not named again (the message gives the recorded path), or
            another task named.
    """
    if named is None:
        if registry.is_import_path(recorded):
            raise RunError(f"{config_path}: this run's task is the custom task {recorded!r}; its module is "
                           f"imported only when you name it again: evaluate with --task {recorded}")
        return recorded
    if named != recorded:
        raise RunError(f"task {named!r} is not this run's task {recorded!r} ({config_path})")
    return named


def import_from_current_directory(task_name: str) -> None:
    """For a task given by import path: put the current directory on the import path, as
    ``python -m`` does (the command line calls this; ids need nothing)."""
    if registry.is_import_path(task_name) and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
