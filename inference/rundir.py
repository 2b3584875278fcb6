"""The run directory (see shared/RUNDIR.md): its files, its configuration, its logs, and the
checks made before anything is compiled.

A run directory holds::

    config.json          the resolved configuration (task, agent, agent config, seed, and the
                         schedule it was created with), its ``format`` and ``identity`` (sha256
                         of the identity fields); written once, never rewritten on resume
    schedule.json        the schedule (target steps, evaluation points, eval trials and seed,
                         checkpoint cadence) and its history (:mod:`~.schedule`)
    references.json      the references that normalize the scores (from the disk cache)
    metrics.csv          one row per training iteration (append-only while the lock is held)
    evaluations.json     every evaluation: env steps, wall-clock, per-trial returns, score
                         (valid JSON: a missing figure is null)
    checkpoint.npz       the latest good state (atomic; see inference.checkpoint), with the
                         run's identity in its metadata
    learning_curve.png   return vs environment steps with the reference lines
    trial.png            one held-out trial; diagnostics.png: training diagnostics
                         (inference.pictures, at the end and at checkpoints)
    fault.json           only when training stopped on a non-finite value
    .lock                held by the one process that writes (:class:`RunLock`)

An agent's configuration is stored nested (:mod:`varibased.inference.configs`); a flat one
written by version 1 is translated on load, and two configurations are compared after that
translation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import pathlib
import sys
from typing import Any

import numpy as np

from varibased.inference import agents, checkpoint, schedule
from varibased.inference.runfiles import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CURVE_FILE,
    EVALUATIONS_FILE,
    FAULT_FILE,
    FORMAT,
    IDENTITY_FIELDS,
    LOCK_FILE,
    METRICS_FILE,
    REFERENCES_FILE,
    NonFiniteError,
    RunError,
)
from varibased.inference.runlock import RunLock, _held_by_other, check_output_path
from varibased.inference.runlog import RunLog, json_safe, read_evaluations, read_metrics
from varibased.models import validation as check

__all__ = ["RunConfig", "RunError", "NonFiniteError", "RunLog", "RunLock", "check_run_dir", "load_run",
           "resume_or_fresh", "run_identity", "saved_schedule", "run_finished", "finished_summary",
           "check_checkpoint_identity", "json_safe", "check_output_path",
           "CONFIG_FILE", "METRICS_FILE", "EVALUATIONS_FILE", "CHECKPOINT_FILE", "CURVE_FILE", "FAULT_FILE",
           "REFERENCES_FILE", "LOCK_FILE", "FORMAT", "IDENTITY_FIELDS"]

@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What a training run does, besides the agent's own configuration.

    Attributes:
        task: task id.
        agent: agent id (``varibased`` or ``rl2``).
        num_env_steps: budget of real environment steps (the run stops at the first
            iteration boundary at or past it).
        seed: training seed.
        eval_every: evaluate every this many environment steps (0: only at the end); used
            when ``eval_at`` is None.
        eval_at: the evaluation points (env steps; see :mod:`~varibased.inference.schedule`),
            or None for those of ``eval_every``.
        eval_trials: held-out trials per evaluation.
        eval_seed: seed of the held-out tasks and keys.
        checkpoint_every: checkpoint every this many iterations (and at the end).
        agent_config: the agent's resolved configuration (a JSON-able dict).
        task_config: keyword arguments of the task factory.
    """

    task: str
    agent: str
    num_env_steps: int
    seed: int = 0
    eval_every: int = 0
    eval_trials: int = 512
    eval_seed: int = 10_000
    checkpoint_every: int = 10
    agent_config: dict = dataclasses.field(default_factory=dict)
    task_config: dict = dataclasses.field(default_factory=dict)
    eval_at: tuple | None = None

    def __post_init__(self) -> None:
        if self.eval_at is not None:
            check.set_fields(self, eval_at=tuple(schedule.check_eval_at(self.eval_at)))
        for name in ("task", "agent"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"RunConfig.{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("agent_config", "task_config"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"RunConfig.{name} must be a dict, got {getattr(self, name)!r}")
            check.set_fields(self, **{name: _plain_json(f"RunConfig.{name}", getattr(self, name))})
        if isinstance(self.eval_trials, int | np.integer) and not isinstance(self.eval_trials, bool) \
                and self.eval_trials == 1:
            raise ValueError("RunConfig.eval_trials must be >= 2 (a standard error needs two trials), got 1")
        check.set_fields(
            self,
            num_env_steps=check.positive_int("RunConfig", "num_env_steps", self.num_env_steps),
            eval_trials=check.positive_int("RunConfig", "eval_trials", self.eval_trials),
            checkpoint_every=check.positive_int("RunConfig", "checkpoint_every", self.checkpoint_every),
            eval_every=check.nonnegative_int("RunConfig", "eval_every", self.eval_every),
            seed=check.nonnegative_int("RunConfig", "seed", self.seed, maximum=2**32 - 1),
            eval_seed=check.nonnegative_int("RunConfig", "eval_seed", self.eval_seed, maximum=2**32 - 1),
        )

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON-able values (as config.json stores them, without identity; the
        evaluation points live in schedule.json)."""
        out = dataclasses.asdict(self)
        del out["eval_at"]
        return out

    def to_saved_json(self) -> dict[str, Any]:
        """config.json of a new run: the fields, ``format`` and ``identity``."""
        saved = {**json.loads(json.dumps(self.to_json())), "format": FORMAT}
        return {**saved, "identity": run_identity(saved)}


def _plain_json(name: str, value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers (and tuples as lists); a ValueError naming
    ``name`` if it holds anything JSON cannot store (or a non-finite float)."""
    def plain(x):
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                raise ValueError(f"{name} must have string keys, got {sorted(map(repr, x))}")
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return type(x)(plain(v) for v in x)
        if isinstance(x, np.bool_):
            return bool(x)
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.floating):
            return float(x)
        if x is None or isinstance(x, str | bool | int | float):
            if isinstance(x, float) and not math.isfinite(x):
                raise ValueError(f"{name} holds a non-finite number {x!r}")
            return x
        raise ValueError(f"{name} holds {x!r} of type {type(x).__name__}, which JSON cannot store")

    return plain(value)


def run_identity(saved: dict[str, Any]) -> str:
    """The identity of a run: its stored ``identity``, else the sha256 of its identity fields
    as stored (:data:`IDENTITY_FIELDS`; a config without ``format`` is format 1)."""
    if isinstance(saved.get("identity"), str):
        return saved["identity"]
    fields = {k: saved.get(k, 1 if k == "format" else None) for k in IDENTITY_FIELDS}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def check_checkpoint_identity(path: pathlib.Path, saved: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Refuse a checkpoint whose identity is not the run's (a checkpoint of another seed or
    config swapped in). A checkpoint without identity is accepted only in a run whose
    config.json has none (written before identities existed)."""
    from varibased.inference.checkpoint import CheckpointError

    theirs = metadata.get("identity")
    if theirs is None:
        if "identity" in saved:
            raise CheckpointError(f"{path} carries no run identity, but this run has one: a checkpoint "
                                  "from another run directory?")
        return
    ours = run_identity(saved)
    if theirs != ours:
        raise CheckpointError(f"{path} belongs to another run (identity {str(theirs)[:12]}..., this run's "
                              f"{ours[:12]}...): a checkpoint of another seed or config; nothing was changed")


def checkpoint_position(path: pathlib.Path, metadata: dict[str, Any]) -> tuple[int, int, float]:
    """``(iteration, env_steps, wall_seconds)`` from a checkpoint's metadata, type-checked."""
    from varibased.inference.checkpoint import CheckpointError

    values = [metadata.get(k) for k in ("iteration", "env_steps", "wall_seconds")]
    ints_ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values[:2])
    wall_ok = isinstance(values[2], int | float) and not isinstance(values[2], bool) \
        and math.isfinite(values[2])
    if not (ints_ok and wall_ok):
        raise CheckpointError(f"{path}: its metadata needs non-negative int iteration and env_steps and a "
                              f"finite wall_seconds, got {values}")
    return values[0], values[1], float(values[2])


def _entries(run_dir: pathlib.Path) -> list[pathlib.Path]:
    """The files of a run directory, its lock files aside."""
    return [p for p in run_dir.iterdir() if not p.name.startswith(LOCK_FILE)]


def check_run_dir(run_dir: str | pathlib.Path, config: RunConfig, resume: bool, *,
                  check_checkpoint: bool = True) -> None:
    """Check, before anything is compiled, that ``run_dir`` can hold (or continue) this run.

    A resume needs config.json of the same config, a checkpoint.npz whose header and identity
    are this run's, and logs that parse.

    Raises:
        RunError: the path cannot be a directory, another live process holds the run's lock,
            the directory holds another run (without ``resume``), has no run, no checkpoint,
            a run of another config or a damaged log (with ``resume``), or its checkpoint is
            unreadable or of another run.
    """
    run_dir = pathlib.Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} is a file, not a run directory; choose another --out")
    check_output_path(run_dir, "--out", directory=True)
    if run_dir.exists():
        _held_by_other(run_dir)
    if not resume:
        if run_dir.exists() and _entries(run_dir):
            raise RunError(
                f"{run_dir} already holds files (another run?); pass --resume to continue it "
                "or choose another --out; nothing was overwritten"
            )
        return
    if not config_path.exists():
        raise RunError(f"cannot resume: {config_path} does not exist")
    saved = load_run(run_dir)
    differing = _differing_fields(saved, config)
    if differing:
        raise RunError(f"cannot resume {run_dir}: its config differs in " + "; ".join(differing))
    ckpt_path = run_dir / CHECKPOINT_FILE
    if check_checkpoint:
        require_checkpoint(ckpt_path)
    read_metrics(run_dir / METRICS_FILE)
    read_evaluations(run_dir / EVALUATIONS_FILE)
    schedule.read_schedule(run_dir)
    if check_checkpoint:
        try:
            metadata = checkpoint.read_metadata(ckpt_path)
            check_checkpoint_identity(ckpt_path, saved, metadata)
            checkpoint_position(ckpt_path, metadata)
        except checkpoint.CheckpointError as error:
            raise RunError(f"cannot resume: {error}") from error


def require_checkpoint(ckpt_path: pathlib.Path) -> None:
    """A resume needs a checkpoint: raise :class:`RunError` (nothing changed) without one."""
    if not ckpt_path.exists():
        raise RunError(f"cannot resume: {ckpt_path} does not exist (the run stopped before its first "
                       "checkpoint?); start a new run in another --out; nothing was changed")


#: Fields of RunConfig that are the run's schedule (schedule.json), not its identity.
_SCHEDULE_FIELDS = ("num_env_steps", "eval_every", "eval_trials", "eval_seed", "checkpoint_every")


def _differing_fields(saved: dict[str, Any], config: RunConfig) -> list[str]:
    """What differs between a saved run config and ``config`` (the schedule may change). The
    agent configurations are compared after translation (flat names of version 1, legacy
    values of fields added later)."""
    mine = json.loads(json.dumps(config.to_json()))  # as saved: tuples become lists
    out = [f"{k} (saved {saved.get(k)!r}, now {mine[k]!r})" for k in mine
           if k not in _SCHEDULE_FIELDS and k != "agent_config" and saved.get(k) != mine[k]]
    if saved.get("agent") == config.agent and config.agent in agents.AGENTS:
        try:
            theirs = agents.config_from_json(config.agent, saved["agent_config"])
        except (ValueError, TypeError) as error:
            raise RunError(f"the saved agent config cannot be read: {error}") from error
        ours = agents.config_from_json(config.agent, mine["agent_config"])
        if theirs != ours:
            a, b = agents.config_to_json(theirs), agents.config_to_json(ours)
            out += [f"agent_config.{k} (saved {a.get(k)!r}, now {b.get(k)!r})"
                    for k in b if a.get(k) != b.get(k)]
    elif saved.get("agent_config") != mine["agent_config"]:
        out.append("agent_config")
    return out


def resume_or_fresh(run_dir: str | pathlib.Path, config: RunConfig) -> tuple[pathlib.Path, bool]:
    """Where a notebook-style re-run should train: ``(run_dir, True)`` to continue a run of
    the same config there, ``(run_dir, False)`` when it is empty or absent, and otherwise a
    fresh sibling ``run_dir-2``, ``-3``, ... (the other run is never touched)."""
    base = pathlib.Path(run_dir)
    for n in itertools.count(1):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        if not path.exists() or (path.is_dir() and not _entries(path)):
            return path, False
        if (path / CONFIG_FILE).exists():
            try:
                check_run_dir(path, config, resume=True)
            except RunError:
                continue
            return path, True
    raise AssertionError("unreachable")


def saved_schedule(run_dir: str | pathlib.Path, per_iteration: int) -> dict[str, Any]:
    """The run's schedule.json, or the one derived from config.json of a run written before
    schedule.json existed (:func:`~varibased.inference.schedule.legacy_schedule`)."""
    saved = schedule.read_schedule(run_dir)
    return saved if saved is not None else schedule.legacy_schedule(load_run(run_dir), per_iteration)


def run_finished(run_dir: str | pathlib.Path, num_env_steps: int, per_iteration: int) -> bool:
    """Whether the run's checkpoint is at (or past) the end of a ``num_env_steps`` budget and
    its last evaluation is of that checkpoint: nothing is left to do."""
    ckpt_path = pathlib.Path(run_dir) / CHECKPOINT_FILE
    iteration, env_steps, _ = checkpoint_position(ckpt_path, checkpoint.read_metadata(ckpt_path))
    evaluations = read_evaluations(pathlib.Path(run_dir) / EVALUATIONS_FILE)
    return iteration >= math.ceil(num_env_steps / per_iteration) and bool(evaluations) \
        and evaluations[-1]["env_steps"] == env_steps


def finished_summary(run_dir: pathlib.Path, num_env_steps: int, evaluations: list[dict[str, Any]],
                     iteration: int, env_steps: int, wall: float) -> dict[str, Any]:
    """The summary of a finished run resumed with nothing left to do (said on stderr), shaped
    as :func:`~varibased.inference.runner.train`'s."""
    score = evaluations[-1].get("normalized_score")
    print(f"nothing to do: {run_dir} is finished ({env_steps} env steps, target {num_env_steps}; "
          f"final normalized score {'-' if score is None else f'{score:.3f}'}); pass a larger --steps "
          "to continue it", file=sys.stderr, flush=True)
    return {"iterations": iteration, "env_steps": env_steps, "wall_seconds": wall, "compile_seconds": 0.0,
            "env_steps_per_s": env_steps / wall if wall > 0 else float("nan"),
            "final_normalized_score": score, "evaluations": evaluations, "nothing_to_do": True}


def load_run(run_dir: str | pathlib.Path) -> dict[str, Any]:
    """The saved config of a run directory, with its fields' types checked (the task and the
    agent config themselves are checked where they are built).

    Raises:
        RunError: no config.json, not JSON, or a field missing or of the wrong type (named).
    """
    path = pathlib.Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise RunError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is corrupt (not JSON: {error})") from error
    if not isinstance(saved, dict) or not {"task", "agent", "agent_config"} <= set(saved):
        raise RunError(f"{path} is not a varibased run config (needs task, agent, agent_config)")
    problems = [f"{k} must be a non-empty string, got {saved[k]!r}" for k in ("task", "agent")
                if not isinstance(saved[k], str) or not saved[k]]
    problems += [f"{k} must be a JSON object, got {saved[k]!r}" for k in ("agent_config", "task_config")
                 if not isinstance(saved.get(k, {}), dict)]
    seed = saved.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        problems.append(f"seed must be an int in [0, 2**32), got {seed!r}" if "seed" in saved
                        else "seed is missing")
    if "identity" in saved and not isinstance(saved["identity"], str):
        problems.append(f"identity must be a string, got {saved['identity']!r}")
    if problems:
        raise RunError(f"{path}: " + "; ".join(problems))
    return saved
