"""Driving a :class:`~inference.trainer.Trainer`: the evaluation protocol, the run directory,
checkpoints, resume, fault handling, progress and plots.

A run directory holds::

    config.json          the resolved configuration (task, agent, budget, agent config)
    metrics.csv          one row per training iteration
    evaluations.json     every evaluation: env steps, wall-clock, per-trial returns, score
    checkpoint.npz       the latest good state (atomic; see inference.checkpoint)
    learning_curve.png   return vs environment steps with the reference lines
    fault.json           only when training stopped on a non-finite value

Evaluation protocol (DESIGN.md, Measures): every ``eval_every`` real environment steps the
agent acts greedily on ``eval_trials`` held-out trials whose tasks and keys are fixed by
``eval_seed``; wall-clock is reported with and without compilation.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from varibased.inference import agents, checkpoint, snapshots
from varibased.inference.trainer import Trainer
from varibased.models.task import Task
from varibased.planning.references import normalized_scores
from varibased.planning.rollout import run_trials

__all__ = ["RunConfig", "RunError", "NonFiniteError", "train", "evaluate_state", "load_run",
           "check_run_dir", "resume_or_fresh"]

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
        for name in ("num_env_steps", "eval_trials", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be a non-negative integer, got {self.eval_every!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite_tree(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def evaluate_state(task: Task, trainer: Trainer, state: Any, num_trials: int, eval_seed: int) -> np.ndarray:
    """Per-trial returns ``[num_trials]`` of the greedy agent of ``state`` on held-out trials."""
    returns = _evaluator(task, trainer, num_trials, eval_seed)(state)
    return np.asarray(returns, np.float64)


def _evaluator(task: Task, trainer: Trainer, num_trials: int, eval_seed: int):
    key = jax.random.key(eval_seed)

    def run(state):
        return run_trials(key, task, trainer.agent(state, True), num_trials).transitions.reward.sum(-1)

    return jax.jit(run)


class _Log:
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


def check_run_dir(run_dir: str | pathlib.Path, config: RunConfig, resume: bool) -> None:
    """Check, before anything is compiled, that ``run_dir`` can hold (or continue) this run.

    Raises:
        RunError: the directory is a file, holds another run (without ``resume``), has no
            run or a run of another config (with ``resume``), or its checkpoint is unreadable.
    """
    run_dir = pathlib.Path(run_dir)
    _check_run_dir(run_dir, config, resume)
    ckpt_path = run_dir / CHECKPOINT_FILE
    if resume and ckpt_path.exists():
        try:
            checkpoint.read_metadata(ckpt_path)
        except checkpoint.CheckpointError as error:
            raise RunError(f"cannot resume: {error}") from error


def _check_run_dir(run_dir: pathlib.Path, config: RunConfig, resume: bool) -> None:
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
    saved = load_run(run_dir)
    mine = json.loads(json.dumps(config.to_json()))  # as saved: tuples become lists
    if isinstance(saved.get("agent_config"), dict) and saved.get("agent") == mine["agent"] \
            and config.agent in agents.AGENTS:
        # Fields added to the agent's configuration after the run was saved: the run was
        # trained with their (backward-compatible) defaults, so resume when they still are.
        defaults = agents.config_defaults(config.agent)
        added = {k: defaults[k] for k in set(mine["agent_config"]) - set(saved["agent_config"])
                 if k in defaults}
        saved = {**saved, "agent_config": {**added, **saved["agent_config"]}}
    differing = [k for k in mine if k != "num_env_steps" and saved.get(k) != mine[k]]
    if differing:
        raise RunError(
            f"cannot resume {run_dir}: its config differs in {', '.join(differing)} "
            f"(saved {[saved.get(k) for k in differing]}, now {[mine[k] for k in differing]})"
        )


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


def train(
    run_dir: str | pathlib.Path,
    config: RunConfig,
    task: Task,
    trainer: Trainer,
    refs: dict[str, Any],
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, evaluate and checkpoint into ``run_dir``; returns the run's summary.

    Raises:
        RunError: the directory holds another run (without ``resume``), or the resumed run's
            config differs.
        NonFiniteError: a loss or parameter went non-finite (the last good checkpoint and a
            ``fault.json`` report are kept).
    """
    run_dir = pathlib.Path(run_dir)
    _check_run_dir(run_dir, config, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = jax.jit(trainer.init)(jax.random.key(config.seed))
    iteration, env_steps, wall_offset = 0, 0, 0.0
    ckpt_path = run_dir / CHECKPOINT_FILE
    if resume and ckpt_path.exists():
        state, meta = checkpoint.load(ckpt_path, state)
        iteration, env_steps, wall_offset = meta["iteration"], meta["env_steps"], meta["wall_seconds"]
    (run_dir / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2))
    log = _Log(run_dir, iteration if resume else None, env_steps if resume else None)

    compile_start = time.perf_counter()
    step_fn = jax.jit(trainer.iteration).lower(state).compile()
    finite_fn = jax.jit(_finite_tree)
    evaluate = _evaluator(task, trainer, config.eval_trials, config.eval_seed)
    evaluate_compiled = evaluate.lower(state).compile()
    compile_seconds = time.perf_counter() - compile_start

    per_iteration = trainer.env_steps_per_iteration
    total_iterations = math.ceil(config.num_env_steps / per_iteration)
    eval_every_iterations = max(1, config.eval_every // per_iteration) if config.eval_every else 0

    def save(state, iteration, env_steps, wall):
        checkpoint.save(ckpt_path, state, {
            "iteration": iteration, "env_steps": env_steps, "wall_seconds": wall,
            "config": config.to_json(),
        })

    def run_evaluation(state, env_steps, wall):
        start = time.perf_counter()
        returns = np.asarray(evaluate_compiled(state), np.float64)
        snapshots.save_params_snapshot(run_dir, trainer, state, iteration, env_steps)
        score, score_se = normalized_scores(returns, refs)
        log.add_evaluation({
            "iteration": iteration, "env_steps": env_steps, "wall_seconds": wall,
            "wall_seconds_with_compile": wall + compile_seconds,
            "mean_return": float(returns.mean()),
            "se": float(returns.std(ddof=1) / math.sqrt(len(returns))),
            "normalized_score": score, "normalized_score_se": score_se,
            "eval_seconds": time.perf_counter() - start, "returns": returns.tolist(),
        })
        return score

    bar = _progress(total_iterations, iteration, progress, config)
    start = time.perf_counter()
    last_score = None
    if iteration == 0 and eval_every_iterations:
        last_score = run_evaluation(state, 0, 0.0)
    try:
        while iteration < total_iterations:
            new_state, metrics = step_fn(state)
            metrics = {k: float(v) for k, v in metrics.items()}
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            if bad or not bool(finite_fn(new_state)):
                _report_fault(run_dir, iteration + 1, metrics, bad, new_state)
                what = "metrics " + ", ".join(bad) if bad else "parameters"
                raise NonFiniteError(
                    f"iteration {iteration + 1}: non-finite {what}; stopped, the last good "
                    f"checkpoint ({ckpt_path}) and {run_dir / FAULT_FILE} are kept"
                )
            state = new_state
            iteration += 1
            env_steps += per_iteration
            wall = wall_offset + time.perf_counter() - start
            log.add_row({"iteration": iteration, "env_steps": env_steps,
                         "wall_seconds": round(wall, 4), **metrics})
            due = eval_every_iterations and iteration % eval_every_iterations == 0
            if due and iteration < total_iterations:
                last_score = run_evaluation(state, env_steps, wall)
            if iteration % config.checkpoint_every == 0:
                save(state, iteration, env_steps, wall)
            bar.update(1)
            bar.set_postfix(steps=env_steps, ret=f"{metrics.get('return', float('nan')):.2f}",
                            loss=f"{metrics.get('loss', float('nan')):.3g}",
                            sps=f"{(env_steps - 0) / max(wall, 1e-9):.0f}",
                            score="-" if last_score is None else f"{last_score:.2f}")
    finally:
        bar.close()
    wall = wall_offset + time.perf_counter() - start
    final_score = run_evaluation(state, env_steps, wall)
    save(state, iteration, env_steps, wall)
    summary = {
        "iterations": iteration, "env_steps": env_steps, "wall_seconds": wall,
        "compile_seconds": compile_seconds,
        "env_steps_per_s": env_steps / wall if wall > 0 else float("nan"),
        "final_normalized_score": final_score, "evaluations": log.evaluations,
    }
    plot_learning_curve(run_dir, log.evaluations, refs, task.name, config.agent)
    return summary


def _progress(total: int, initial: int, enabled: bool, config: RunConfig):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="it",
                desc=f"{config.agent} on {config.task}", dynamic_ncols=True)


def _report_fault(run_dir: pathlib.Path, iteration: int, metrics: dict, bad: list[str], state: Any) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(state)
    bad_leaves = [jax.tree_util.keystr(path) for path, x in leaves
                  if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
                  and not bool(jnp.all(jnp.isfinite(x)))]
    report = {"iteration": iteration, "non_finite_metrics": bad, "non_finite_state": bad_leaves,
              "metrics": {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}}
    (run_dir / FAULT_FILE).write_text(json.dumps(report, indent=2))


def plot_learning_curve(run_dir: pathlib.Path, evaluations: list[dict], refs: dict[str, Any],
                        task_name: str, agent_name: str) -> None:
    """Mean evaluation return vs environment steps, with the reference agents as lines."""
    # A bare Figure (no pyplot): headless, and it leaves the caller's backend alone (a
    # notebook's inline plots keep working after training).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    steps = [e["env_steps"] for e in evaluations]
    means = np.array([e["mean_return"] for e in evaluations])
    ses = np.array([e["se"] for e in evaluations])
    ax.plot(steps, means, "o-", label=agent_name)
    ax.fill_between(steps, means - 2 * ses, means + 2 * ses, alpha=0.2)
    styles = {"random": (":", "k"), "posterior_sampling": ("-.", "k"), "bayes_optimal": ("--", "k"),
              "oracle": (":", "tab:gray")}
    for name, (style, color) in styles.items():
        if name in refs:
            ax.axhline(refs[name]["mean"], ls=style, color=color, lw=1, label=name)
    if refs["reference"]["agent"] not in styles:
        ax.axhline(refs["reference"]["mean"], ls="--", color="tab:red", lw=1,
                   label=f"R_ref ({refs['reference']['agent']})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return per trial (greedy, held-out)")
    ax.set_title(f"{agent_name} on {task_name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / CURVE_FILE, dpi=120)
