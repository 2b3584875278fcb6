"""Agents by id: each is a module with a frozen config class (``Config.for_task``) and
``make_trainer(task, config) -> Trainer``. Modules load lazily (``varibased`` pulls in the
planner and the belief, ``rl2`` only S5 and PPO)."""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

from varibased.inference.trainer import Trainer
from varibased.models.task import Task

__all__ = ["AGENTS", "make_config", "make_trainer", "config_fields"]

#: agent id -> (module, config class name)
AGENTS = {
    "varibased": ("varibased.inference.em", "EMConfig"),
    "rl2": ("varibased.inference.rl2", "RL2Config"),
}


def _resolve(agent: str):
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; known agents: {', '.join(AGENTS)}")
    module_name, config_name = AGENTS[agent]
    module = importlib.import_module(module_name)
    return module, getattr(module, config_name)


def config_fields(agent: str) -> list[str]:
    """The configuration fields of an agent (for ``--set`` and error messages)."""
    _, config_cls = _resolve(agent)
    return [f.name for f in dataclasses.fields(config_cls)]


def config_defaults(agent: str) -> dict[str, Any]:
    """The class defaults of an agent's configuration fields (JSON-able, as saved in runs)."""
    _, config_cls = _resolve(agent)
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)
                if f.default is not dataclasses.MISSING}
    return json.loads(json.dumps(defaults))


def make_config(agent: str, task_name: str, overrides: dict[str, Any] | None = None):
    """The agent's configuration for a task: its per-task defaults with ``overrides``.

    Raises:
        ValueError: unknown agent, unknown field, or an invalid value (named).
    """
    _, config_cls = _resolve(agent)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(config_fields(agent)))
    if unknown:
        raise ValueError(
            f"{config_cls.__name__} has no field(s) {unknown}; fields: {', '.join(config_fields(agent))}"
        )
    return config_cls.for_task(task_name, **overrides)


def make_trainer(agent: str, task: Task, config: Any) -> Trainer:
    """The :class:`~inference.trainer.Trainer` of ``agent`` on ``task``."""
    module, _ = _resolve(agent)
    return module.make_trainer(task, config)


def config_from_json(agent: str, saved: dict[str, Any]):
    """The agent's configuration from its saved JSON form (as run directories store it)."""
    _, config_cls = _resolve(agent)
    return config_cls(**saved)
