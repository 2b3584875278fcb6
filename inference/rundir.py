"""The run directory (see shared/RUNDIR.md): its files, its configuration, its logs, and the
checks made before anything is compiled.

A run directory holds::

    config.json          the resolved configuration (task, agent, budget, agent config), its
                         ``format`` and ``identity`` (sha256 of the identity fields); written
                         once, never rewritten on resume
    metrics.csv          one row per training iteration (append-only while the lock is held)
    evaluations.json     every evaluation: env steps, wall-clock, per-trial returns, score
                         (valid JSON: a missing figure is null)
    checkpoint.npz       the latest good state (atomic; see inference.checkpoint), with the
                         run's identity in its metadata
    learning_curve.png   return vs environment steps with the reference lines
    fault.json           only when training stopped on a non-finite value
    .lock                held by the one process that writes (:class:`RunLock`)

An agent's configuration is stored nested (:mod:`varibased.inference.configs`); a flat one
written by version 1 is translated on load, and two configurations are compared after that
translation.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import pathlib
import socket
import sys
import time
from typing import Any

import numpy as np

from varibased.inference import agents, checkpoint
from varibased.models import validation as check

__all__ = ["RunConfig", "RunError", "NonFiniteError", "RunLog", "RunLock", "check_run_dir", "load_run",
           "resume_or_fresh", "run_identity", "check_checkpoint_identity", "json_safe", "check_output_path",
           "CONFIG_FILE", "METRICS_FILE", "EVALUATIONS_FILE", "CHECKPOINT_FILE", "CURVE_FILE", "FAULT_FILE",
           "LOCK_FILE", "FORMAT", "IDENTITY_FIELDS"]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
EVALUATIONS_FILE = "evaluations.json"
CHECKPOINT_FILE = "checkpoint.npz"
CURVE_FILE = "learning_curve.png"
FAULT_FILE = "fault.json"
LOCK_FILE = ".lock"
#: config.json's format version (1: no identity; 2: ``format`` and ``identity`` fields).
FORMAT = 2
#: The fields of config.json that make a run's identity (the rest is its schedule).
IDENTITY_FIELDS = ("format", "task", "task_config", "agent", "agent_config", "seed")


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
        """The fields as JSON-able values (as config.json stores them, without identity)."""
        return dataclasses.asdict(self)

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


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN: a missing figure is null)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


class RunLog:
    """metrics.csv and evaluations.json of a run.

    On resume (``resume_iteration`` given) both logs must parse (else :class:`RunError`
    naming file and line; nothing is changed), and the rows and evaluations after the
    checkpoint's iteration (a crash between checkpoints) are moved to
    ``metrics.after-crash-<time>.csv`` / ``evaluations.after-crash-<time>.json`` and reported
    on stderr, never dropped. The rows kept are kept byte for byte.
    """

    def __init__(self, run_dir: pathlib.Path, resume_iteration: int | None, resume_steps: int | None):
        self.metrics_path = run_dir / METRICS_FILE
        self.evaluations_path = run_dir / EVALUATIONS_FILE
        self.rows: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        self.moved: list[pathlib.Path] = []
        if resume_iteration is None:
            self._write_metrics()
            self._write_evaluations()
            return
        header, lines, rows = read_metrics(self.metrics_path)
        evaluations = read_evaluations(self.evaluations_path)
        keep = [i for i, row in enumerate(rows) if int(row["iteration"]) <= resume_iteration]
        late_rows = [lines[i] for i in range(len(rows)) if i not in set(keep)]
        self.rows = [rows[i] for i in keep]
        self.evaluations = [e for e in evaluations if e["env_steps"] <= resume_steps]
        late_evaluations = [e for e in evaluations if e["env_steps"] > resume_steps]
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        if late_rows:
            moved = run_dir / f"metrics.after-crash-{stamp}.csv"
            _atomic_write(moved, header + "".join(late_rows))
            self.moved.append(moved)
            _atomic_write(self.metrics_path, header + "".join(lines[i] for i in keep))
        if late_evaluations:
            moved = run_dir / f"evaluations.after-crash-{stamp}.json"
            _atomic_write(moved, json.dumps(late_evaluations))
            self.moved.append(moved)
            self._write_evaluations()
        if self.moved:
            print(f"resuming from the checkpoint of iteration {resume_iteration}: "
                  f"{len(late_rows)} metrics row(s) and {len(late_evaluations)} evaluation(s) logged "
                  f"after it were moved to {', '.join(str(m) for m in self.moved)}", file=sys.stderr)

    def _write_metrics(self) -> None:
        if not self.rows:
            _atomic_write(self.metrics_path, "")
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]))
        writer.writeheader()
        writer.writerows(self.rows)
        _atomic_write(self.metrics_path, buffer.getvalue())

    def _write_evaluations(self) -> None:
        _atomic_write(self.evaluations_path, json.dumps(json_safe(self.evaluations), allow_nan=False))

    def add_row(self, row: dict[str, Any]) -> None:
        """Append one iteration's row to metrics.csv."""
        self.rows.append(row)
        if len(self.rows) == 1:
            self._write_metrics()
        else:
            buffer = io.StringIO()
            csv.DictWriter(buffer, fieldnames=list(self.rows[0])).writerow(row)
            with self.metrics_path.open("a", newline="") as handle:
                handle.write(buffer.getvalue())

    def add_evaluation(self, evaluation: dict[str, Any]) -> None:
        """Record one evaluation (non-finite figures become null) and rewrite evaluations.json."""
        self.evaluations.append(json_safe(evaluation))
        self._write_evaluations()


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, newline="")
    tmp.replace(path)


def read_metrics(path: pathlib.Path) -> tuple[str, list[str], list[dict[str, str]]]:
    """``(header line, row lines, rows)`` of a metrics.csv, checked line by line.

    Raises:
        RunError: a line that does not parse (cut mid-row, cut in the header, a non-integer or
            out-of-order iteration), naming the file and the line.
    """
    if not path.exists():
        return "", [], []
    with path.open(newline="") as handle:
        text = handle.read()
    if not text:
        return "", [], []
    lines = text.splitlines(keepends=True)
    advice = "; repair or remove it by hand (nothing was changed)"
    if not lines[-1].endswith("\n"):
        raise RunError(f"{path} line {len(lines)} is cut short (no end of line: a truncated log){advice}")
    header = next(csv.reader([lines[0]]))
    if not header or header[0] != "iteration":
        raise RunError(f"{path} line 1 is not a metrics header (iteration, ...): "
                       f"{lines[0].strip()!r}{advice}")
    rows, previous = [], 0
    for number, line in enumerate(lines[1:], start=2):
        values = next(csv.reader([line]), [])
        if len(values) != len(header) or any(v == "" for v in values):
            raise RunError(f"{path} line {number} has {len(values)} field(s) ({line.strip()!r}), the header "
                           f"{len(header)}: a damaged or truncated log{advice}")
        try:
            iteration = int(values[0])
        except ValueError:
            iteration = None
        if iteration != previous + 1:
            raise RunError(f"{path} line {number}: iteration {values[0]!r} does not follow "
                           f"{previous}{advice}")
        previous = iteration
        rows.append(dict(zip(header, values, strict=True)))
    return lines[0], lines[1:], rows


def read_evaluations(path: pathlib.Path) -> list[dict[str, Any]]:
    """The evaluations of an evaluations.json, checked.

    Raises:
        RunError: not JSON (naming the line), or not a list of evaluations with ``env_steps``.
    """
    if not path.exists():
        return []
    try:
        evaluations = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunError(f"{path} line {error.lineno} does not parse ({error.msg}): a damaged or truncated "
                       "log; repair or remove it by hand (nothing was changed)") from error
    except UnicodeDecodeError as error:
        raise RunError(f"{path} is not text ({error}); nothing was changed") from error
    if not isinstance(evaluations, list) or not all(
            isinstance(e, dict) and isinstance(e.get("env_steps"), int) for e in evaluations):
        raise RunError(f"{path} is not a list of evaluations with env_steps; nothing was changed")
    return evaluations


class RunLock:
    """The lock of a run directory: the file ``.lock`` with the holder's pid, host and start
    time, created atomically (a hard link of a complete file). One process writes a run.

    A lock left by a dead process on this host is taken over, with a message on stderr; a
    lock of a live process, or of another host, is refused with :class:`RunError` naming
    the holder. Re-entrant within one process (``run`` holds it around ``train``)."""

    _held: dict[pathlib.Path, int] = {}

    def __init__(self, run_dir: str | pathlib.Path):
        self.path = pathlib.Path(run_dir).absolute() / LOCK_FILE

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (creating the run directory), or raise :class:`RunError`."""
        if self.path in RunLock._held:
            RunLock._held[self.path] += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(mine))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    RunLock._held[self.path] = 1
                    return
                except FileExistsError:
                    holder = lock_holder(self.path.parent)
                    if holder is None or not _is_stale(holder):
                        raise RunError(_held_message(self.path, holder)) from None
                    # A dead holder on this host: move its lock aside (only one taker wins).
                    stale = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
                    try:
                        os.replace(self.path, stale)
                    except FileNotFoundError:
                        continue
                    stale.unlink(missing_ok=True)
                    print(f"taking over the stale lock of {self.path.parent}: pid {holder.get('pid')} on "
                          f"{holder.get('host')} (since {holder.get('started')}) is no longer running",
                          file=sys.stderr)
            raise RunError(_held_message(self.path, lock_holder(self.path.parent)))
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        """Give the lock back (the outermost release of this process removes ``.lock``)."""
        count = RunLock._held.get(self.path, 0)
        if count > 1:
            RunLock._held[self.path] = count - 1
            return
        RunLock._held.pop(self.path, None)
        holder = lock_holder(self.path.parent)
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)


def lock_holder(run_dir: pathlib.Path) -> dict[str, Any] | None:
    """The holder recorded in ``run_dir/.lock`` (``{}`` if unreadable), or None without a lock."""
    path = pathlib.Path(run_dir) / LOCK_FILE
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_stale(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _held_message(path: pathlib.Path, holder: dict[str, Any] | None) -> str:
    if not holder:
        return (f"{path.parent} is locked ({path} exists but does not say by whom); if no process writes "
                f"this run, remove {path}")
    return (f"{path.parent} is locked by pid {holder.get('pid')} on {holder.get('host')} (since "
            f"{holder.get('started')}): another process is writing this run; wait for it or choose "
            "another --out")


def _held_by_other(run_dir: pathlib.Path) -> None:
    """Raise :class:`RunError` if another live process holds ``run_dir``'s lock."""
    path = (pathlib.Path(run_dir).absolute() / LOCK_FILE)
    if path in RunLock._held:
        return
    holder = lock_holder(run_dir)
    if holder is not None and not _is_stale(holder):
        raise RunError(_held_message(path, holder))


def check_output_path(path: str | pathlib.Path, what: str, *, directory: bool) -> pathlib.Path:
    """Check that ``path`` can be written as a ``directory`` (or a file) before any work.

    Raises:
        RunError: a dangling symlink, an existing path of the other kind, or a parent that is
            not a directory (e.g. a regular file) or not writable.
    """
    path = pathlib.Path(path)
    if path.is_symlink() and not path.exists():
        raise RunError(f"{what} {path} is a dangling symlink (to {os.readlink(path)})")
    if path.exists():
        if directory and not path.is_dir():
            raise RunError(f"{what} {path} is a file, not a directory")
        if not directory and path.is_dir():
            raise RunError(f"{what} {path} is a directory, not a file")
        if not os.access(path if directory else path.parent, os.W_OK):
            raise RunError(f"{what} {path} is not writable")
        return path
    parent = path.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if parent.is_symlink() and not parent.exists():
        raise RunError(f"{what} {path}: {parent} is a dangling symlink")
    if not parent.is_dir():
        raise RunError(f"{what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"{what} {path}: {parent} is not writable")
    return path


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
        if not path.exists() or (path.is_dir() and not _entries(path)):
            return path, False
        if (path / CONFIG_FILE).exists():
            try:
                check_run_dir(path, config, resume=True)
            except RunError:
                continue
            return path, True
    raise AssertionError("unreachable")


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
