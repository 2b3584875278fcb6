"""The schedule of a run (``schedule.json``, see shared/RUNDIR.md): what may change between
invocations of the same run, as opposed to its identity (config.json).

A schedule holds the target ``num_env_steps``, the evaluation points ``eval_at`` (env-step
points; an evaluation happens at the first iteration boundary at or after each point, and
both numbers are recorded in evaluations.json), ``eval_trials``, ``eval_seed`` and
``checkpoint_every`` (iterations), and a ``history`` of every change with its time. A resume
keeps the saved schedule except for what is given again; a default cadence derived from
``--steps`` is recorded as points, never re-derived.

:func:`log_grid` is the log-spaced evaluation grid shared by agents (e.g.
``log_grid(10_000, steps, 8)``).
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from varibased.inference.runfiles import RunError

__all__ = ["SCHEDULE_FILE", "FIELDS", "DEFAULTS", "log_grid", "default_eval_at", "eval_at_from_every",
           "check_eval_at", "resolve", "from_run_config", "describe_changes", "read_schedule",
           "legacy_schedule", "write_schedule", "changed_fields", "with_history"]

SCHEDULE_FILE = "schedule.json"
#: The fields of a schedule (besides its ``history``).
FIELDS = ("num_env_steps", "eval_at", "eval_trials", "eval_seed", "checkpoint_every")
#: Values of a new run's schedule when not given (``eval_at``: :func:`default_eval_at`).
DEFAULTS = {"num_env_steps": 100_000, "eval_trials": 512, "eval_seed": 10_000, "checkpoint_every": 10}
#: The default cadence evaluates about this many times (plus once at 0 and once at the end).
DEFAULT_EVALUATIONS = 10


def log_grid(start: int, stop: int, per_decade: int) -> list[int]:
    """Sorted unique ints log-spaced from ``start`` up to ``stop`` (both included),
    ``per_decade`` points per factor of ten.

    Raises:
        ValueError: ``start < 1``, ``stop < start`` or ``per_decade < 1``.
    """
    for name, value in (("start", start), ("stop", stop), ("per_decade", per_decade)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"log_grid: {name} must be a positive int, got {value!r}")
    if stop < start:
        raise ValueError(f"log_grid: stop ({stop}) must be >= start ({start})")
    count = math.floor(math.log10(stop / start) * per_decade + 1e-9)
    points = {int(round(start * 10 ** (i / per_decade))) for i in range(count + 1)}
    return sorted(p for p in points | {int(stop)} if p <= stop)


def default_eval_at(steps: int, per_iteration: int, evaluations: int = DEFAULT_EVALUATIONS) -> list[int]:
    """The default evaluation points of a ``steps`` budget: 0 and about ``evaluations``
    points, never closer than one iteration (``per_iteration`` env steps) and on iteration
    boundaries; the final evaluation at the end of the budget is always made besides."""
    iterations = math.ceil(steps / per_iteration)
    every = max(1, math.ceil(iterations / evaluations))
    return [k * every * per_iteration for k in range(iterations) if k * every * per_iteration < steps]


def eval_at_from_every(eval_every: int, steps: int, per_iteration: int) -> list[int]:
    """``--eval-every`` as points: ``0, E, 2E, ...`` below ``steps`` (0: none, only the final
    evaluation), keeping one point per iteration (the first that falls in it)."""
    if not eval_every:
        return []
    points, boundaries = [], set()
    for point in range(0, steps, eval_every):
        boundary = math.ceil(point / per_iteration)
        if boundary not in boundaries:
            boundaries.add(boundary)
            points.append(point)
    return points


def check_eval_at(points: Any) -> list[int]:
    """``points`` as a sorted list of unique non-negative ints; a ValueError naming the bad one."""
    if isinstance(points, str | bytes) or not isinstance(points, Sequence | np.ndarray):
        raise ValueError(f"eval_at must be a list of env-step points, got {points!r}")
    for p in points:
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 0:
            raise ValueError(f"eval_at must hold non-negative ints (env steps), got {p!r}")
    return sorted({int(p) for p in points})


def resolve(saved: dict[str, Any] | None, given: dict[str, Any], per_iteration: int) -> dict[str, Any]:
    """The schedule of this invocation: ``saved`` (None for a new run: :data:`DEFAULTS`)
    with the values in ``given`` (only the flags actually given) on top.

    ``given`` may hold ``eval_every`` instead of ``eval_at`` (recorded as points). Without
    either, a new run gets :func:`default_eval_at` of its budget and a resumed run keeps its
    points.
    """
    base = {k: saved[k] for k in FIELDS} if saved is not None else dict(DEFAULTS)
    out = {**base, **{k: v for k, v in given.items() if k in FIELDS and v is not None}}
    if given.get("eval_at") is not None:
        out["eval_at"] = check_eval_at(given["eval_at"])
    elif given.get("eval_every") is not None:
        out["eval_at"] = eval_at_from_every(given["eval_every"], out["num_env_steps"], per_iteration)
    elif saved is None:
        out["eval_at"] = default_eval_at(out["num_env_steps"], per_iteration)
    return {k: out[k] for k in FIELDS}


def from_run_config(config: Any, per_iteration: int) -> dict[str, Any]:
    """The schedule a :class:`~varibased.inference.rundir.RunConfig` asks for (its ``eval_at``,
    else the points of its ``eval_every``)."""
    eval_at = list(config.eval_at) if config.eval_at is not None else eval_at_from_every(
        config.eval_every, config.num_env_steps, per_iteration)
    return {"num_env_steps": config.num_env_steps, "eval_at": eval_at, "eval_trials": config.eval_trials,
            "eval_seed": config.eval_seed, "checkpoint_every": config.checkpoint_every}


def legacy_schedule(saved_config: dict[str, Any], per_iteration: int) -> dict[str, Any]:
    """The schedule of a run written before schedule.json existed, from its config.json
    (``eval_every`` became points; a missing field takes the old default)."""
    steps = saved_config.get("num_env_steps", DEFAULTS["num_env_steps"])
    out = {k: saved_config.get(k, DEFAULTS[k]) for k in FIELDS if k != "eval_at"}
    out["eval_at"] = eval_at_from_every(saved_config.get("eval_every", 0) or 0, steps, per_iteration)
    return {k: out[k] for k in FIELDS}


def read_schedule(run_dir: str | pathlib.Path) -> dict[str, Any] | None:
    """The saved schedule of a run directory (with its history), or None without one.

    Raises:
        RunError: schedule.json does not parse or lacks a field (named); nothing is changed.
    """
    path = pathlib.Path(run_dir) / SCHEDULE_FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is corrupt ({error}); repair or remove it by hand (nothing was changed)") \
            from error
    missing = [k for k in FIELDS if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise RunError(f"{path} lacks {', '.join(missing)}; repair or remove it by hand "
                       "(nothing was changed)")
    try:
        saved["eval_at"] = check_eval_at(saved["eval_at"])
    except ValueError as error:
        raise RunError(f"{path}: {error}") from error
    saved.setdefault("history", [])
    return saved


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``new`` that differ from ``old`` (all of them when ``old`` is None)."""
    return {k: new[k] for k in FIELDS if old is None or old.get(k) != new[k]}


def with_history(old: dict[str, Any] | None, new: dict[str, Any], note: str | None = None) -> dict[str, Any]:
    """``new`` with ``old``'s history and, when something changed, one entry appended
    (``{"time", "set": {field: value}}``, and ``note`` if given)."""
    history = list(old.get("history", [])) if old is not None else []
    changes = changed_fields(old, new)
    if changes or note:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "set": changes}
        history.append({**entry, **({"note": note} if note else {})})
    return {**{k: new[k] for k in FIELDS}, "history": history}


def write_schedule(run_dir: str | pathlib.Path, schedule: dict[str, Any]) -> None:
    """Write schedule.json atomically (temp file, rename)."""
    path = pathlib.Path(run_dir) / SCHEDULE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(schedule, indent=2))
    tmp.replace(path)


def describe_changes(changes: dict[str, Any]) -> str:
    """One line naming changed schedule fields (eval_at by count and range)."""
    def value(k, v):
        if k == "eval_at":
            return f"{len(v)} point(s)" + (f" {v[0]}..{v[-1]}" if v else "")
        return str(v)

    return ", ".join(f"{k} {value(k, v)}" for k, v in changes.items())
