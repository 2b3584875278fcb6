"""The command line's help on configuration fields, and the checks of its task and ``--set``
arguments that need the library (kept out of :mod:`varibased.inference.cli`, which imports the
library only when a command runs).

* :func:`fields_table`: every field of an agent's configuration, by dotted path, with its
  default (for a task, where it has its own) and a one-line description
  (:func:`varibased.inference.configs.describe`); ``varibased config`` prints it and
  ``varibased train --help`` lists it for every agent.
* :func:`evaluation_overrides`: ``evaluate --set`` takes planner fields only.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

__all__ = ["fields_table", "train_epilog", "FieldsHelp", "evaluation_overrides"]


def _one_line(text: str, limit: int = 90) -> str:
    """A docstring fragment as plain text on one short line (roles and backquotes dropped)."""
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text).replace("``", "")
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:(") + " …"


def fields_table(agent: str, task: str | None = None) -> str:
    """Every configuration field of ``agent`` (dotted path, default, one-line description),
    with the defaults of ``task`` where it has its own (:data:`~.configs.TASK_DEFAULTS`)."""
    from varibased.inference import agents, configs

    rows = configs.describe(agents.make_config(agent, task or ""))
    width = max(len(path) for path, _, _ in rows)
    values = [repr(value) for _, value, _ in rows]
    value_width = min(max(len(v) for v in values), 24)
    where = f"defaults for {task}" if task else "defaults; a task may have its own: varibased config --task T"
    lines = [f"{agent} ({agents.config_class(agent).__name__}; {where}):"]
    lines += [f"  {path:<{width}}  {value:<{value_width}}  {_one_line(doc)}"
              for (path, _, doc), value in zip(rows, values, strict=True)]
    return "\n".join(lines)


def train_epilog() -> str:
    """The configuration fields of every agent, for ``varibased train --help``."""
    from varibased.inference import agents

    return "\n\n".join(["Config fields (--set PATH=VALUE; flat names of version 1 work too):",
                        *(fields_table(agent) for agent in agents.AGENTS)])


class FieldsHelp(argparse.Action):
    """``-h/--help`` that also lists the configuration fields (built only when asked for: it
    imports the agents' configuration classes)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.epilog = train_epilog()
        parser.print_help()
        parser.exit()


def evaluation_overrides(agent: str, sets: dict[str, Any]) -> dict[str, Any]:
    """``evaluate --set`` changes by dotted path: planner fields only (the other fields shape or
    train the network, which a trained run's checkpoint fixes).

    Raises:
        ValueError: an unknown field, or one that is not the planner's (named).
    """
    from varibased.inference import agents, configs

    config_cls = agents.config_class(agent)
    out = {}
    for key, value in sets.items():
        path = configs.canonical_path(agent, config_cls, key)
        if not path.startswith("planner."):
            planner = sorted(p for p in configs.field_paths(config_cls) if p.startswith("planner."))
            accepted = f"planner fields: {', '.join(planner)}" if planner else f"{agent} has no planner"
            raise ValueError(f"evaluate --set {key}: {path} is fixed by training (it would change the "
                             f"trained network); train a new run with it. evaluate --set takes {accepted}")
        out[path] = value
    return out
