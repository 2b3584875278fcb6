"""The registry of tasks by id.

A task module registers a *factory* (keyword arguments -> :class:`~models.task.Task`), so
that sized tasks (``bernoulli_bandit`` with ``num_arms=3``) are built on demand and
validated when they are constructed::

    from varibased.models import registry
    task = registry.make("gridworld")
    registry.register("my_task", make_my_task)   # a user's own task
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from varibased.models.task import Task, TaskError

__all__ = ["register", "make", "names", "unregister", "factory"]

_FACTORIES: dict[str, Callable[..., Task]] = {}

# Built-in tasks, imported lazily on first use: id -> module that registers it.
_BUILTIN = {
    "gridworld": "varibased.models.gridworld",
    "function_optimization": "varibased.models.function_optimization",
    "function_optimization_lengthscale": "varibased.models.function_optimization",
    "bernoulli_bandit": "varibased.models.bandit",
}


def register(name: str, factory: Callable[..., Task] | Task, *, overwrite: bool = False) -> None:
    """Register a task factory (or a ready :class:`Task`) under ``name``.

    The factory is called once with no arguments to validate the task now, so that a
    broken definition fails here with a clear message rather than at training time.

    Raises:
        TaskError: if the name is taken (and ``overwrite`` is false), or the task is invalid.
    """
    if not isinstance(name, str) or not name:
        raise TaskError(f"a task name must be a non-empty string, got {name!r}")
    if name in _FACTORIES and not overwrite:
        raise TaskError(f"task {name!r} is already registered (pass overwrite=True to replace it)")
    if isinstance(factory, Task):
        task = factory
        factory = lambda: task  # noqa: E731 - a constant factory
    if not callable(factory):
        raise TaskError(f"task {name!r}: the factory must be callable or a Task, got {factory!r}")
    task = factory()
    if not isinstance(task, Task):
        raise TaskError(f"task {name!r}: the factory returned {type(task).__name__}, not a Task")
    if task.name != name:
        raise TaskError(f"task registered as {name!r} calls itself {task.name!r}")
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    """Remove a registered task (used by tests and notebooks that define their own)."""
    _FACTORIES.pop(name, None)


def _load_builtin(name: str) -> None:
    if name in _BUILTIN and name not in _FACTORIES:
        importlib.import_module(_BUILTIN[name])


def names() -> list[str]:
    """All task ids, built-in and registered."""
    for name in _BUILTIN:
        _load_builtin(name)
    return sorted(_FACTORIES)


def make(name: str, **kwargs) -> Task:
    """Build the task ``name`` with the factory's keyword arguments.

    Raises:
        TaskError: for an unknown name (listing the known ones) or invalid arguments.
    """
    _load_builtin(name)
    if name not in _FACTORIES:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as error:
        raise TaskError(f"task {name!r}: bad arguments {kwargs}: {error}") from error


def factory(name: str) -> Callable[..., Task]:
    """The factory registered under ``name`` (a built-in is loaded first).

    Raises:
        TaskError: for an unknown name.
    """
    _load_builtin(name)
    if name not in _FACTORIES:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
    return _FACTORIES[name]
