"""Classical baseline agents of a task, by task name (e.g. GP-UCB for function optimization).

Tasks live in :mod:`varibased.models`, which must not import planning code; their classical
anchors are planning agents, so they are registered here, by the task's name::

    from varibased.planning import baselines
    baselines.register("my_task", lambda task: {"greedy": make_greedy_agent(task)})
    agents = baselines.baseline_agents(task)      # {} when none is registered

The built-in function-optimization task registers GP-UCB, EI and GP Thompson sampling
(:func:`varibased.planning.gp_agents.baseline_agents`, imported when first needed). Agents
are computed once per task object (building them may itself run trials).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from varibased.models.agent import Agent
from varibased.models.task import Task

__all__ = ["register", "has_baselines", "baseline_agents"]

BaselineFactory = Callable[[Task], dict[str, Agent]]

#: built-in task name -> "module:function" (imported lazily)
_BUILTIN = {"function_optimization": "varibased.planning.gp_agents:baseline_agents"}
_FACTORIES: dict[str, BaselineFactory] = {}
_CACHE: dict[int, tuple[Task, dict[str, Agent]]] = {}


def register(task_name: str, factory: BaselineFactory, *, overwrite: bool = False) -> None:
    """Register ``factory(task) -> {name: Agent}`` as the baselines of tasks named ``task_name``."""
    if not callable(factory):
        raise TypeError(f"baselines of {task_name!r}: the factory must be callable, got {factory!r}")
    if not overwrite and (task_name in _FACTORIES or task_name in _BUILTIN):
        raise ValueError(f"baselines of {task_name!r} are already registered; pass overwrite=True")
    _FACTORIES[task_name] = factory
    _CACHE.clear()


def _factory(task_name: str) -> BaselineFactory | None:
    if task_name in _FACTORIES:
        return _FACTORIES[task_name]
    if task_name in _BUILTIN:
        module, function = _BUILTIN[task_name].split(":")
        return getattr(importlib.import_module(module), function)
    return None


def has_baselines(task: Task) -> bool:
    """Whether classical baselines are registered for ``task``'s name."""
    return task.name in _FACTORIES or task.name in _BUILTIN


def baseline_agents(task: Task) -> dict[str, Agent]:
    """The registered baselines of ``task`` (``{}`` when none), computed once per task object."""
    factory = _factory(task.name)
    if factory is None:
        return {}
    cached = _CACHE.get(id(task))
    if cached is None or cached[0] is not task:
        cached = (task, dict(factory(task)))
        _CACHE[id(task)] = cached
    return dict(cached[1])
