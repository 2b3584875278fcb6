"""Pictures of a run directory: what the agent did, what it believes, how training went.

Every training run writes, beside ``metrics.csv`` and ``evaluations.json``::

    learning_curve.png   greedy held-out return vs environment steps, mean ± 2 s.e. band
                         (labelled), with the reference agents as lines
    trial.png            one held-out trial of the greedy agent (see :func:`plot_trial`)
    diagnostics.png      loss terms, planner ESS and resampling rate, target entropy, the
                         value estimate against the realized return (:func:`plot_diagnostics`)

:func:`write_run_pictures` is the one call the training loop makes (at the end, and at
checkpoints at most once per ``min_interval`` seconds); it never raises: a picture that
fails is reported with a warning and training goes on. ``VARIBASED_RUN_PICTURES=curve`` keeps
only ``learning_curve.png`` (``none``: no picture), e.g. to spare the test suite the
compilation of the trial of ``trial.png`` in every tiny run. :func:`plot_runs` overlays several
runs (e.g. VariBASeD and RL^2) on the normalized score against environment steps and
against wall-clock (``varibased plot RUN [RUN ...] --out FILE.png``).

Every figure is a bare :class:`matplotlib.figure.Figure` (no pyplot state): headless, and a
notebook's inline backend is left alone.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import time
import warnings
from typing import Any

import numpy as np

from varibased.inference.trial_pictures import TRIAL_FILE, figure, plot_trial, save, trial_kind
from varibased.models.task import Task

__all__ = ["write_run_pictures", "plot_learning_curve", "plot_diagnostics", "plot_trial", "plot_runs",
           "read_metrics", "read_evaluations", "trial_kind"]

CURVE_FILE = "learning_curve.png"
DIAGNOSTICS_FILE = "diagnostics.png"

_REFERENCE_STYLES = {"random": (":", "k"), "posterior_sampling": ("-.", "k"),
                     "bayes_optimal": ("--", "k"), "oracle": (":", "tab:gray")}


def read_metrics(run_dir: str | pathlib.Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as floats (``[]`` when absent or empty)."""
    path = pathlib.Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        return [{k: _float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _float(value: str | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_evaluations(run_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """The evaluations of a run's ``evaluations.json`` (``[]`` when absent)."""
    path = pathlib.Path(run_dir) / "evaluations.json"
    return json.loads(path.read_text()) if path.exists() else []


# ---------------------------------------------------------------------------- the hook
_last_written: dict[str, float] = {}


def write_run_pictures(run_dir: str | pathlib.Path, task: Task, trainer: Any, state: Any,
                       refs: dict[str, Any], *, agent_name: str = "agent", final: bool = True,
                       min_interval: float = 60.0, seed: int = 2024) -> list[pathlib.Path]:
    """Write ``learning_curve.png``, ``diagnostics.png`` and ``trial.png`` into ``run_dir``.

    Reads ``metrics.csv`` and ``evaluations.json`` from the directory. Never raises: each
    picture that fails is reported with a :class:`RuntimeWarning` (plotting must not kill a
    training run).

    Args:
        run_dir: the run directory.
        task: the task trained on.
        trainer: the :class:`~varibased.inference.trainer.Trainer`.
        state: its training state (the greedy agent of ``trainer.agent(state, True)`` plays
            the trial of ``trial.png``).
        refs: the references of :func:`varibased.planning.references.references`.
        agent_name: label of the agent (``varibased``, ``rl2``).
        final: ``False`` at a checkpoint: the pictures are then refreshed only when at least
            ``min_interval`` seconds passed since the last ones of this directory (or since
            the first checkpoint), so that they cost little in a long run.
        seed: seed of the held-out trial shown.

    Returns:
        The paths written (see ``VARIBASED_RUN_PICTURES`` in the module docstring).
    """
    which = os.environ.get("VARIBASED_RUN_PICTURES", "all").strip().lower()
    if which in ("none", "0", "off"):
        return []
    run_dir = pathlib.Path(run_dir)
    now, key = time.monotonic(), str(run_dir.resolve())
    if not final:
        if key not in _last_written:
            _last_written[key] = now
            return []
        if now - _last_written[key] < min_interval:
            return []
    _last_written[key] = now
    written = []
    rows, evaluations = read_metrics(run_dir), read_evaluations(run_dir)
    jobs = [(CURVE_FILE, lambda: plot_learning_curve(run_dir / CURVE_FILE, evaluations, refs,
                                                     task.name, agent_name)),
            (DIAGNOSTICS_FILE, lambda: plot_diagnostics(run_dir / DIAGNOSTICS_FILE, rows, evaluations,
                                                        title=f"{agent_name} on {task.name}")),
            (TRIAL_FILE, lambda: plot_trial(run_dir / TRIAL_FILE, task, trainer, state, seed=seed,
                                            title=f"{agent_name} on {task.name}"))]
    if which == "curve":
        jobs = jobs[:1]
    for name, job in jobs:
        try:
            written.append(job())
        except Exception as error:  # noqa: BLE001 -- a picture must never stop training
            warnings.warn(f"could not write {run_dir / name}: {type(error).__name__}: {error}",
                          RuntimeWarning, stacklevel=2)
    return written


# ---------------------------------------------------------------------------- learning curve
def plot_learning_curve(path: str | pathlib.Path, evaluations: list[dict[str, Any]], refs: dict[str, Any],
                        task_name: str, agent_name: str) -> pathlib.Path:
    """Mean greedy held-out return vs environment steps: the ±2 s.e. band labelled, the
    reference agents as horizontal lines."""
    fig = figure(6.4, 4.2)
    ax = fig.subplots()
    steps = np.array([e["env_steps"] for e in evaluations])
    means = np.array([e["mean_return"] for e in evaluations])
    ses = np.array([e["se"] for e in evaluations])
    trials = len(evaluations[-1]["returns"]) if evaluations and "returns" in evaluations[-1] else None
    ax.plot(steps, means, "o-", color="tab:blue", label=f"{agent_name} (mean)")
    ax.fill_between(steps, means - 2 * ses, means + 2 * ses, color="tab:blue", alpha=0.2,
                    label="± 2 s.e." + (f" ({trials} held-out trials)" if trials else ""))
    for name, (style, color) in _REFERENCE_STYLES.items():
        if name in refs:
            ax.axhline(refs[name]["mean"], ls=style, color=color, lw=1, label=name)
    reference = refs.get("reference", {})
    if reference and reference.get("agent") not in _REFERENCE_STYLES:
        ax.axhline(reference["mean"], ls="--", color="tab:red", lw=1, label=f"R_ref ({reference['agent']})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return per trial (greedy, held-out)")
    ax.set_title(f"{agent_name} on {task_name}")
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, lw=0.3)
    return save(fig, pathlib.Path(path))


# ---------------------------------------------------------------------------- diagnostics
_PANELS = [
    ("loss terms", "loss", lambda k: "loss" in k),
    ("planner: effective sample size", "ESS (particles)", lambda k: k == "planner_ess"),
    ("policy entropy", "entropy (nats)", lambda k: k in ("target_entropy", "entropy")),
    ("value estimate vs realized return", "return per trial", lambda k: k in ("value_estimate", "return")),
]
_LABELS = {"target_entropy": "planner target entropy", "entropy": "policy entropy",
           "value_estimate": "value estimate V(h_0) (planner root)",
           "return": "realized return (training trials)", "loss": "loss (mean of the updates)",
           "loss_last": "loss (last update)", "planner_ess": "planner ESS",
           "resample_rate": "resampling rate"}
_AXIS = {"iteration", "env_steps", "wall_seconds"}


def plot_diagnostics(path: str | pathlib.Path, rows: list[dict[str, float]],
                     evaluations: list[dict[str, Any]] | None = None, *, title: str = "") -> pathlib.Path:
    """Training diagnostics against environment steps, one panel per group of metrics.

    Panels (each drawn when the run logs its metrics): the loss terms; the planner's ESS
    with its resampling rate (right axis); the entropy of the planner's target (VariBASeD)
    or of the policy (RL^2); the value estimate at the root of the first planning call
    against the realized return of the training trials (and the greedy held-out return of
    ``evaluations``, ± 2 s.e.); any other metric in a last panel.

    Args:
        path: the PNG to write.
        rows: rows of ``metrics.csv`` (:func:`read_metrics`).
        evaluations: the run's evaluations (optional).
    """
    if not rows:
        raise ValueError("no metrics rows to plot (metrics.csv is empty)")
    keys = [k for k in rows[0] if k not in _AXIS]
    steps = np.array([r["env_steps"] for r in rows])
    panels = []
    used = {"resample_rate"}
    for name, ylabel, match in _PANELS:
        members = [k for k in keys if match(k)]
        used.update(members)
        if members:
            panels.append((name, ylabel, members))
    others = [k for k in keys if k not in used]
    if others:
        panels.append(("other metrics", "value", others))
    ncols = 2 if len(panels) in (2, 4) else min(3, len(panels))
    marker = "o" if len(rows) <= 30 else None
    nrows = math.ceil(len(panels) / ncols)
    fig = figure(4.6 * ncols, 3.4 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (name, ylabel, members) in zip(axes, panels, strict=False):
        for k in members:
            ax.plot(steps, [r[k] for r in rows], label=_LABELS.get(k, k), lw=1.2, marker=marker, ms=3)
        if name.startswith("planner") and "resample_rate" in keys:
            twin = ax.twinx()
            twin.plot(steps, [r["resample_rate"] for r in rows], color="tab:red", lw=1, ls="--",
                      label=_LABELS["resample_rate"])
            twin.set_ylabel("resampling rate (fraction of steps)", color="tab:red")
            twin.set_ylim(0, 1.05)
            twin.legend(fontsize=7, loc="lower right")
        if name.startswith("value") and evaluations:
            e_steps = np.array([e["env_steps"] for e in evaluations])
            means = np.array([e["mean_return"] for e in evaluations])
            ses = np.array([e["se"] for e in evaluations])
            ax.errorbar(e_steps, means, yerr=2 * ses, fmt="o", ms=3, color="k", capsize=2,
                        label="greedy held-out return (± 2 s.e.)")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.grid(True, lw=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(f"training diagnostics: {title}")
    return save(fig, pathlib.Path(path))


# ---------------------------------------------------------------------------- one trial
def plot_runs(run_dirs: list[str | pathlib.Path], out: str | pathlib.Path) -> pathlib.Path:
    """Overlay runs on the normalized score (random 0, R_ref 1), mean ± 2 s.e. of the greedy
    held-out evaluations, against environment steps and against wall-clock (without
    compilation).

    Raises:
        varibased.inference.rundir.RunError: a directory is not a run, or has no evaluation.
    """
    from varibased.inference.rundir import RunError, load_run

    if not run_dirs:
        raise RunError("no run directory given")
    runs = []
    for run_dir in run_dirs:
        run_dir = pathlib.Path(run_dir)
        if not run_dir.is_dir():
            raise RunError(f"{run_dir} is not a run directory (not a directory)")
        saved = load_run(run_dir)
        try:
            evaluations = read_evaluations(run_dir)
        except json.JSONDecodeError as error:
            raise RunError(f"{run_dir / 'evaluations.json'} is corrupt: {error}") from error
        if not evaluations:
            raise RunError(f"{run_dir} has no evaluations yet (evaluations.json empty or absent)")
        runs.append((run_dir, saved, evaluations))
    fig = figure(11, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    for i, (run_dir, saved, evaluations) in enumerate(runs):
        color = f"C{i % 10}"
        label = f"{saved['agent']} on {saved['task']} ({run_dir.name})"
        score = np.array([e["normalized_score"] for e in evaluations], float)
        se = np.array([e.get("normalized_score_se", math.nan) for e in evaluations], float)
        for ax, axis in zip(axes, ("env_steps", "wall_seconds"), strict=True):
            x = np.array([e[axis] for e in evaluations], float)
            ax.plot(x, score, "o-", ms=3, color=color, label=label)
            ax.fill_between(x, score - 2 * se, score + 2 * se, color=color, alpha=0.15)
    for ax, xlabel in zip(axes, ("environment steps", "wall-clock seconds (training, without compilation)"),
                          strict=True):
        ax.axhline(0, color="k", ls=":", lw=1)
        ax.axhline(1, color="k", ls="--", lw=1)
        ax.set_xlabel(xlabel)
        ax.grid(True, lw=0.3)
    axes[0].set_ylabel("normalized score (random 0, R_ref 1)")
    axes[0].set_title("against environment steps", fontsize=10)
    axes[1].set_title("against wall-clock", fontsize=10)
    axes[0].plot([], [], color="gray", lw=6, alpha=0.3, label="± 2 s.e. (held-out trials)")
    axes[0].plot([], [], "k--", lw=1, label="R_ref (1)")
    axes[0].plot([], [], "k:", lw=1, label="random (0)")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("greedy held-out evaluations")
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save(fig, out)
