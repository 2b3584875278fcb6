"""Agents by id: each is a module with a frozen config class and
``make_trainer(task, config) -> Trainer``. Modules load lazily (``varibased`` pulls in the
planner and the belief, ``rl2`` only S5 and PPO). Configurations are composed and addressed
by dotted paths (:mod:`varibased.inference.configs`)."""

from __future__ import annotations

import importlib
from typing import Any

from varibased.inference import configs
from varibased.inference.trainer import Trainer
from varibased.models.task import Task

__all__ = ["AGENTS", "make_config", "make_trainer", "config_fields", "config_from_json",
           "config_to_json", "config_class", "check_budget"]

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


def config_class(agent: str) -> type:
    """The configuration class of an agent (``EMConfig``, ``RL2Config``)."""
    return _resolve(agent)[1]


def config_fields(agent: str) -> list[str]:
    """The dotted configuration paths of an agent (for ``--set`` and error messages)."""
    return configs.field_paths(config_class(agent))


def make_config(agent: str, task_name: str, overrides: dict[str, Any] | None = None, base: Any = None):
    """The agent's configuration for a task: its per-task defaults with ``overrides`` (dotted
    paths such as ``belief.kl_weight``, or the flat names of version 1 such as ``kl_weight``).
    With ``base`` (a resumed run's saved configuration), the overrides apply to it instead, so
    a later change of the defaults does not stop an older run from resuming.

    Raises:
        ValueError: unknown agent, unknown field, or an invalid value (named).
    """
    if base is None:
        return configs.make_config(agent, config_class(agent), task_name, overrides)
    return configs.replace(base, {configs.canonical_path(agent, config_class(agent), key): value
                                  for key, value in (overrides or {}).items()})


def config_to_json(config: Any) -> dict[str, Any]:
    """The nested JSON form of an agent's configuration, as run directories store it."""
    return configs.to_json(config)


def config_from_json(agent: str, saved: dict[str, Any]):
    """The agent's configuration from its saved JSON form (nested, or the flat version 1)."""
    return configs.from_json(agent, config_class(agent), saved)


def make_trainer(agent: str, task: Task, config: Any) -> Trainer:
    """The :class:`~varibased.inference.trainer.Trainer` of ``agent`` on ``task``."""
    module, _ = _resolve(agent)
    return module.make_trainer(task, config)


def check_budget(agent: str, task: Task, config: Any, num_envs: int) -> None:
    """Refuse (ValueError, with the estimate) a configuration whose work over ``num_envs``
    environments is out of bounds, before any work (agents without a planner: nothing)."""
    module, _ = _resolve(agent)
    if hasattr(module, "check_budget"):
        module.check_budget(task, config, num_envs)
