"""The run directory (see shared/RUNDIR.md): its files, its configuration, its logs, and the
checks made before anything is compiled.

A run directory holds::

    config.json          the resolved configuration (task, agent, budget, agent config)
    metrics.csv          one row per training iteration
    evaluations.json     every evaluation: env steps, wall-clock, per-trial returns, score
    checkpoint.npz       the latest good state (atomic; see inference.checkpoint)
    learning_curve.png   return vs environment steps with the reference lines
    trial.png            one held-out trial: paths and beliefs (inference.trial_pictures)
    diagnostics.png      loss terms, planner ESS, target entropy, value vs return
    trial.png            one held-out trial; diagnostics.png: training diagnostics
                         (inference.pictures, at the end and at checkpoints)
    fault.json           only when training stopped on a non-finite value

An agent's configuration is stored nested (:mod:`varibased.inference.configs`); a flat one
written by version 1 is translated on load, and two configurations are compared after that
translation.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import pathlib
from typing import Any

from varibased.inference import agents, checkpoint
from varibased.models import validation as check

__all__ = ["RunConfig", "RunError", "NonFiniteError", "RunLog", "check_run_dir", "load_run",
           "resume_or_fresh", "CONFIG_FILE", "METRICS_FILE", "EVALUATIONS_FILE", "CHECKPOINT_FILE",
           "CURVE_FILE", "FAULT_FILE"]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
EVALUATIONS_FILE = "evaluations.json"
CHECKPOINT_FILE = "checkpoint.npz"
CURVE_FILE = "learning_curve.png"
FAULT_FILE = "fault.json"


class RunError(RuntimeError):
    """A run cannot start or continue (bad directory, mismatched resume)."""


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or parameter; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What a training run does, besides the agent's own configuration.

    Attributes:
        task: task id.
        agent: agent id (``varibased`` or ``rl2``).
        num_env_steps: budget of real environment steps (the run stops at the first
            iteration boundary at or past it).
        seed: training seed.
        eval_every: evaluate every this many environment steps (0: only at the end).
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

    def __post_init__(self) -> None:
        for name in ("task", "agent"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"RunConfig.{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("agent_config", "task_config"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"RunConfig.{name} must be a dict, got {getattr(self, name)!r}")
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
        return dataclasses.asdict(self)


class RunLog:
    """metrics.csv and evaluations.json of a run, truncated to the checkpoint on resume."""

    def __init__(self, run_dir: pathlib.Path, resume_iteration: int | None, resume_steps: int | None):
        self.metrics_path = run_dir / METRICS_FILE
        self.evaluations_path = run_dir / EVALUATIONS_FILE
        self.rows: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        if resume_iteration is not None:
            if self.metrics_path.exists():
                with self.metrics_path.open() as handle:
                    self.rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= resume_iteration]
            if self.evaluations_path.exists():
                self.evaluations = [e for e in json.loads(self.evaluations_path.read_text())
                                    if e["env_steps"] <= resume_steps]
        self._write_metrics()
        self._write_evaluations()

    def _write_metrics(self) -> None:
        if not self.rows:
            self.metrics_path.write_text("")
            return
        tmp = self.metrics_path.with_suffix(".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.metrics_path)

    def _write_evaluations(self) -> None:
        tmp = self.evaluations_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.evaluations))
        tmp.replace(self.evaluations_path)

    def add_row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) == 1:
            self._write_metrics()
        else:
            with self.metrics_path.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=list(self.rows[0])).writerow(row)

    def add_evaluation(self, evaluation: dict[str, Any]) -> None:
        self.evaluations.append(evaluation)
        self._write_evaluations()


def check_run_dir(run_dir: str | pathlib.Path, config: RunConfig, resume: bool, *,
                  check_checkpoint: bool = True) -> None:
    """Check, before anything is compiled, that ``run_dir`` can hold (or continue) this run.

    Raises:
        RunError: the directory is a file, holds another run (without ``resume``), has no
            run or a run of another config (with ``resume``), or its checkpoint is unreadable.
    """
    run_dir = pathlib.Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} is a file, not a run directory; choose another --out")
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(
                f"{run_dir} already holds files (another run?); pass --resume to continue it "
                "or choose another --out; nothing was overwritten"
            )
        return
    if not config_path.exists():
        raise RunError(f"cannot resume: {config_path} does not exist")
    differing = _differing_fields(load_run(run_dir), config)
    if differing:
        raise RunError(f"cannot resume {run_dir}: its config differs in " + "; ".join(differing))
    ckpt_path = run_dir / CHECKPOINT_FILE
    if check_checkpoint and ckpt_path.exists():
        try:
            checkpoint.read_metadata(ckpt_path)
        except checkpoint.CheckpointError as error:
            raise RunError(f"cannot resume: {error}") from error


def _differing_fields(saved: dict[str, Any], config: RunConfig) -> list[str]:
    """What differs between a saved run config and ``config`` (the budget may change). The
    agent configurations are compared after translation (flat names of version 1, legacy
    values of fields added later)."""
    mine = json.loads(json.dumps(config.to_json()))  # as saved: tuples become lists
    out = [f"{k} (saved {saved.get(k)!r}, now {mine[k]!r})" for k in mine
           if k not in ("num_env_steps", "agent_config") and saved.get(k) != mine[k]]
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
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            return path, False
        if (path / CONFIG_FILE).exists():
            try:
                check_run_dir(path, config, resume=True)
            except RunError:
                continue
            return path, True
    raise AssertionError("unreachable")


def load_run(run_dir: str | pathlib.Path) -> dict[str, Any]:
    """The saved config of a run directory (raises :class:`RunError` when absent)."""
    path = pathlib.Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise RunError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is corrupt (not JSON: {error})") from error
    if not isinstance(saved, dict) or not {"task", "agent", "agent_config"} <= set(saved):
        raise RunError(f"{path} is not a varibased run config (needs task, agent, agent_config)")
    return saved
