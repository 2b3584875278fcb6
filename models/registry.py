"""The registry of tasks by id.

A task module registers a *factory* (keyword arguments -> :class:`~models.task.Task`), so
that sized tasks (``bernoulli_bandit`` with ``num_arms=3``) are built on demand and
validated when they are constructed::

    from varibased.models import registry
    task = registry.make("gridworld")
    registry.register("my_task", make_my_task)   # a user's own task
    registry.make("mymod:make_task")             # a factory by import path (not registered)

A task given by import path (``package.module:factory``) is imported when it is made; the
command line records that path in a run directory and imports it only when the user names it
again (shared/RUNDIR.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from varibased.models.task import Task, TaskError

__all__ = ["register", "make", "names", "unregister", "is_import_path", "revision"]

_FACTORIES: dict[str, Callable[..., Task]] = {}
#: name -> how many times it was (re)registered or removed: caches keyed by it stay correct
_REVISIONS: dict[str, int] = {}

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
    if name in _BUILTIN and getattr(factory, "__module__", None) != _BUILTIN[name]:
        raise TaskError(f"task {name!r} is a built-in task id and cannot be replaced; register yours "
                        "under another name")
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
    _REVISIONS[name] = _REVISIONS.get(name, 0) + 1


def unregister(name: str) -> None:
    """Remove a registered task (used by tests and notebooks that define their own)."""
    if _FACTORIES.pop(name, None) is not None:
        _REVISIONS[name] = _REVISIONS.get(name, 0) + 1


def revision(name: str) -> int:
    """How many times ``name`` was registered or removed: part of the key of any cache of a
    task's values (references), so that ``register(..., overwrite=True)`` invalidates them."""
    return _REVISIONS.get(name, 0)


def is_import_path(name: str) -> bool:
    """Whether ``name`` is a factory's import path ``package.module:factory``, not an id."""
    return isinstance(name, str) and ":" in name


def _import_factory(path: str) -> Callable[..., Task]:
    """The factory named by ``package.module:factory`` (the module imported now).

    Raises:
        TaskError: a malformed path, a module that cannot be imported, or no such factory.
    """
    module_name, _, attribute = path.partition(":")
    if not (all(part.isidentifier() for part in module_name.split("."))
            and all(part.isidentifier() for part in attribute.split("."))):
        raise TaskError(f"task {path!r}: an import path must be package.module:factory "
                        "(e.g. mymod:make_task)")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any failure of the user's module, named
        raise TaskError(f"task {path!r}: cannot import module {module_name!r} "
                        f"({type(error).__name__}: {error}); is it on the import path (the current "
                        "directory is)?") from error
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise TaskError(f"task {path!r}: module {module_name!r} has no {attribute!r}")
    if not callable(factory):
        raise TaskError(f"task {path!r}: {attribute!r} is not callable (a factory returning a Task)")
    return factory


def _make_from_import_path(path: str, kwargs: dict) -> Task:
    factory = _import_factory(path)
    try:
        task = factory(**kwargs)
    except TaskError as error:
        raise TaskError(f"task {path!r}: {error}") from error
    except TypeError as error:
        raise TaskError(f"task {path!r}: bad arguments {kwargs}: {error}") from error
    except Exception as error:  # noqa: BLE001 - the user's factory failed, named
        raise TaskError(f"task {path!r}: the factory failed ({type(error).__name__}: {error})") from error
    if not isinstance(task, Task):
        raise TaskError(f"task {path!r}: the factory returned {type(task).__name__}, not a Task")
    return task


def _load_builtin(name: str) -> None:
    if name in _BUILTIN and name not in _FACTORIES:
        importlib.import_module(_BUILTIN[name])


def names() -> list[str]:
    """All task ids, built-in and registered."""
    for name in _BUILTIN:
        _load_builtin(name)
    return sorted(_FACTORIES)


def make(name: str, **kwargs) -> Task:
    """Build the task ``name`` (an id, or an import path ``package.module:factory``) with the
    factory's keyword arguments.

    Raises:
        TaskError: for an unknown name (listing the known ones), an import path that does not
            import or does not name a factory of a valid task, or invalid arguments.
    """
    if is_import_path(name):
        return _make_from_import_path(name, kwargs)
    _load_builtin(name)
    if name not in _FACTORIES:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as error:
        raise TaskError(f"task {name!r}: bad arguments {kwargs}: {error}") from error
