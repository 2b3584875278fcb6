"""Driving a :class:`~varibased.inference.trainer.Trainer`: the evaluation protocol, the
training loop, checkpoints, resume, fault handling, progress and plots. :func:`run` is the
one way in (the command line, the notebooks and the benchmarks call it); the run directory
itself is :mod:`varibased.inference.rundir`.

Evaluation protocol (DESIGN.md, Measures): at each point of the schedule's ``eval_at`` (real
environment steps; the first iteration boundary at or after it, both recorded) and at the end
of the budget, the agent acts greedily on ``eval_trials`` held-out trials whose tasks and keys are fixed by
``eval_seed``; wall-clock is reported with and without compilation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from varibased.inference import agents, checkpoint, configs, phases, pictures, runtask, schedule, snapshots
from varibased.inference.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CURVE_FILE,
    EVALUATIONS_FILE,
    FAULT_FILE,
    METRICS_FILE,
    REFERENCES_FILE,
    NonFiniteError,
    RunConfig,
    RunError,
    RunLock,
    RunLog,
    check_checkpoint_identity,
    check_run_dir,
    checkpoint_position,
    finished_summary,
    json_safe,
    load_run,
    require_checkpoint,
    resume_or_fresh,
    run_finished,
    run_identity,
    saved_schedule,
)
from varibased.inference.trainer import Trainer
from varibased.models import registry
from varibased.models.rollout import run_trials
from varibased.models.task import Task, TaskError
from varibased.planning.references import normalized_scores, references

__all__ = ["run", "train", "evaluate_state", "evaluate_run", "RunConfig", "RunError", "NonFiniteError",
           "TrainingInterrupted",
           "load_run", "check_run_dir", "resume_or_fresh", "CONFIG_FILE", "METRICS_FILE",
           "EVALUATIONS_FILE", "CHECKPOINT_FILE", "CURVE_FILE", "FAULT_FILE"]


class TrainingInterrupted(RunError):
    """Training stopped on SIGINT (Ctrl-C) at an iteration boundary; the checkpoint of the last
    completed iteration is saved and the run can be resumed."""


class _StopOnSigint:
    """While active (main thread only), the first SIGINT sets :attr:`requested` so the loop
    stops at the next iteration boundary; a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _finite_tree(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def evaluate_state(task: Task, trainer: Trainer, state: Any, num_trials: int, eval_seed: int) -> np.ndarray:
    """Per-trial returns ``[num_trials]`` of the greedy agent of ``state`` on held-out trials."""
    returns = _evaluator(task, trainer, num_trials, eval_seed)(state)
    return np.asarray(returns, np.float64)


def evaluate_run(run_dir: str | pathlib.Path, *, trials: int = 512, seed: int = 20_000,
                 overrides: dict[str, Any] | None = None, reference_trials: int = 2000,
                 task: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Evaluate the checkpoint of a run directory greedily on held-out trials.

    Args:
        run_dir: a directory written by :func:`run` (``varibased train``).
        task: the run's task named again: needed for a task by import path (:mod:`.runtask`).
        trials: number of held-out trials.
        seed: seed of the held-out tasks.
        overrides: agent-config changes by dotted path or flat alias, e.g. a planning budget
            ``{"planner.num_particles": 64}`` (evaluation-time settings; the parameters stay).
        reference_trials: trials of the references that normalize the score.
        progress: announce each phase on stderr (references, compiling, evaluating).

    Returns:
        ``{"mean_return", "se", "normalized_score", "normalized_score_se", "config", "trials"}``.

    Raises:
        RunError: not a run, an unreadable config, bad overrides, or a custom task not named again.
        checkpoint.CheckpointError: a missing, corrupt or foreign checkpoint.
    """
    trials = _check_count("trials", trials, minimum=2)
    reference_trials = _check_count("reference_trials", reference_trials, minimum=2)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise RunError(f"seed must be an int in [0, 2**32), got {seed!r}")
    saved = load_run(run_dir)
    config_path = pathlib.Path(run_dir) / CONFIG_FILE
    task_name = runtask.task_of_run(saved["task"], task, config_path)
    try:
        config = agents.config_from_json(saved["agent"], saved["agent_config"])
        config = configs.replace(config, {configs.canonical_path(saved["agent"], type(config), k): v
                                          for k, v in (overrides or {}).items()})
    except (ValueError, TypeError) as error:
        raise RunError(f"{config_path}: {error}") from error
    ckpt_path = pathlib.Path(run_dir) / CHECKPOINT_FILE
    # A missing, foreign or swapped file: before any set-up.
    check_checkpoint_identity(ckpt_path, saved, checkpoint.read_metadata(ckpt_path))
    try:
        task = registry.make(task_name, **saved.get("task_config", {}))
    except TaskError as error:
        raise RunError(f"{config_path}: {error}") from error
    try:
        agents.check_budget(saved["agent"], task, config, trials)
        trainer = agents.make_trainer(saved["agent"], task, config)
    except (ValueError, TypeError) as error:
        raise RunError(str(error)) from error
    refs = references(task_name, num_trials=reference_trials, announce=progress)
    state, _ = checkpoint.load(ckpt_path, jax.jit(trainer.init)(jax.random.key(saved["seed"])))
    phases.announce(f"compiling the evaluation of {trials} held-out trials…", progress)
    start = time.perf_counter()
    compiled = _evaluator(task, trainer, trials, seed).lower(state).compile()
    phases.announce(f"evaluating {trials} held-out trials (compiled in {time.perf_counter() - start:.1f} s)…",
                    progress)
    returns = np.asarray(compiled(state), np.float64)
    score, score_se = normalized_scores(returns, refs)
    return json_safe({"mean_return": float(returns.mean()),
                      "se": float(returns.std(ddof=1) / len(returns) ** 0.5),
                      "normalized_score": score, "normalized_score_se": score_se,
                      "config": agents.config_to_json(config), "trials": trials})


def run(task_name: str, agent: str, overrides: dict[str, Any] | None = None, steps: int | None = None,
        run_dir: str | pathlib.Path | None = None, resume: bool | str = False, *, seed: int = 0,
        eval_every: int | None = None, eval_at: Sequence[int] | None = None, eval_trials: int | None = None,
        eval_seed: int | None = None, checkpoint_every: int | None = None, reference_trials: int = 2000,
        refs: dict[str, Any] | None = None, progress: bool = True,
        compile_cache: bool = True) -> dict[str, Any]:
    """Train ``agent`` on ``task_name`` into a run directory: the one way to train.

    Everything is checked before references are computed or anything is compiled: the task
    and agent ids, the overrides (dotted paths such as ``belief.kl_weight`` or flat aliases),
    the run configuration and the directory (another run, or a resume of another config).

    The schedule (``steps``, ``eval_every`` / ``eval_at``, ``eval_trials``, ``eval_seed``,
    ``checkpoint_every``) is saved in schedule.json. A new run takes the defaults of
    :data:`~varibased.inference.schedule.DEFAULTS` for what is not given (None); a resumed run
    keeps its saved schedule except for what is given (e.g. a larger ``steps``), and a
    finished run resumed with nothing new to do does nothing and says so.

    Args:
        task_name: a registered task id or a factory's import path ``package.module:factory``.
        agent: ``"varibased"`` or ``"rl2"``.
        overrides: agent-config changes on top of the per-task defaults.
        steps: budget of real environment steps (new run default 100,000).
        run_dir: the run directory (default ``runs/AGENT-TASK-seedS``).
        resume: continue the run in ``run_dir``; ``"auto"`` (notebooks): continue it when it
            holds a run of the same configuration, else train in a fresh sibling directory
            (:func:`~varibased.inference.rundir.resume_or_fresh`; the other run is never touched).
        seed: training seed.
        eval_every: evaluate every this many env steps (0: at the end only), recorded as points.
        eval_at: explicit evaluation points (env steps; e.g. ``schedule.log_grid(10_000, steps, 8)``);
            each is evaluated at the first iteration boundary at or after it. Without
            ``eval_every`` and ``eval_at`` a new run gets about ten points, at least one
            iteration apart (:func:`~varibased.inference.schedule.default_eval_at`). A final
            evaluation at the end of the budget is always made.
        eval_trials, eval_seed, checkpoint_every, reference_trials, progress: see :class:`RunConfig`.
        refs: references to normalize the scores with (default: computed by
            :func:`~varibased.planning.references.references` with ``reference_trials``, or
            read from the disk cache).
        compile_cache: use JAX's persistent compilation cache (also off with
            ``VARIBASED_NO_COMPILE_CACHE=1``).

    Returns:
        the summary of :func:`train`, with ``"run_dir"``.

    Raises:
        RunError: a bad input (named) or directory, before any work.
        NonFiniteError: training went non-finite (the last good checkpoint is kept).
    """
    task = runtask.make_task(task_name)
    given = {"num_env_steps": steps, "eval_every": eval_every, "eval_at": eval_at, "eval_trials": eval_trials,
             "eval_seed": eval_seed, "checkpoint_every": checkpoint_every}
    run_dir = pathlib.Path(run_dir or f"runs/{agent}-{task_name}-seed{seed}")
    saved = load_run(run_dir) if resume is True and (run_dir / CONFIG_FILE).exists() else None
    try:  # a resume starts from the run's saved config, not from today's defaults
        same_agent = saved is not None and saved["agent"] == agent
        base = agents.config_from_json(agent, saved["agent_config"]) if same_agent else None
        config = agents.make_config(agent, task_name, overrides, base=base)
        run_config = RunConfig(  # the given values checked; the schedule is resolved below
            task=task_name, agent=agent, seed=seed, agent_config=agents.config_to_json(config),
            eval_every=eval_every or 0, eval_at=eval_at,
            **{k: v if v is not None else schedule.DEFAULTS[k] for k, v in given.items()
               if k in ("num_env_steps", "eval_trials", "eval_seed", "checkpoint_every")})
    except (ValueError, TypeError) as error:
        raise RunError(str(error)) from error
    reference_trials = _check_count("reference_trials", reference_trials, minimum=2)
    if resume == "auto":
        run_dir, resume = resume_or_fresh(run_dir, run_config)
    elif not isinstance(resume, bool):
        raise RunError(f"resume must be True, False or 'auto', got {resume!r}")
    check_run_dir(run_dir, run_config, resume)
    try:
        agents.check_budget(agent, task, config, run_config.eval_trials)
        trainer = agents.make_trainer(agent, task, config)
        per_iteration = trainer.env_steps_per_iteration
        saved = saved_schedule(run_dir, per_iteration) if resume else None
        resolved = schedule.resolve(saved, given, per_iteration)
        if resolved["eval_trials"] != run_config.eval_trials:  # the saved schedule's
            agents.check_budget(agent, task, config, resolved["eval_trials"])
        run_config = dataclasses.replace(run_config, **{k: v for k, v in resolved.items() if k != "eval_at"},
                                         eval_at=tuple(resolved["eval_at"]))
    except (ValueError, TypeError) as error:
        raise RunError(str(error)) from error
    phases.set_compile_cache(compile_cache and phases.compile_cache_wanted())
    with RunLock(run_dir):
        if refs is None and not (resume and run_finished(run_dir, run_config.num_env_steps, per_iteration)):
            refs = references(task_name, num_trials=reference_trials, announce=progress)
        summary = train(run_dir, run_config, task, trainer, refs or {}, resume=resume, progress=progress)
    return {**summary, "run_dir": str(run_dir)}


def _check_count(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not minimum <= value < 2**31:
        raise RunError(f"{name} must be an int in [{minimum}, 2**31), got {value!r}")
    return int(value)


def _evaluator(task: Task, trainer: Trainer, num_trials: int, eval_seed: int):
    key = jax.random.key(eval_seed)

    def run(state):
        return run_trials(key, task, trainer.agent(state, True), num_trials).transitions.reward.sum(-1)

    return jax.jit(run)


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

    The run directory's lock is held throughout (:class:`~varibased.inference.rundir.RunLock`).
    A resume loads checkpoint.npz (its identity must be the run's), never rewrites config.json,
    and moves log entries after the checkpoint aside (:class:`RunLog`). On SIGINT the loop
    stops at the next iteration boundary and saves that iteration's checkpoint.

    Raises:
        RunError: the directory holds another run (without ``resume``), is locked by another
            process, or the resumed run's config differs, has no checkpoint or a damaged log.
        checkpoint.CheckpointError: the checkpoint is unreadable, of another run, or non-finite.
        TrainingInterrupted: SIGINT; the checkpoint of the last completed iteration is saved.
        NonFiniteError: a loss or parameter went non-finite (the last good checkpoint and a
            ``fault.json`` report are kept).
    """
    run_dir = pathlib.Path(run_dir)
    check_run_dir(run_dir, config, resume, check_checkpoint=False)
    with RunLock(run_dir), _StopOnSigint() as stop:
        return _train_locked(run_dir, config, task, trainer, refs, resume, progress, stop)


def _train_locked(run_dir, config, task, trainer, refs, resume, progress, stop) -> dict[str, Any]:
    check_run_dir(run_dir, config, resume, check_checkpoint=False)  # again, now that we hold the lock
    iteration, env_steps, wall_offset = 0, 0, 0.0
    ckpt_path = run_dir / CHECKPOINT_FILE
    per_iteration = trainer.env_steps_per_iteration
    plan = schedule.from_run_config(config, per_iteration)
    if resume:  # config.json is never rewritten; the checkpoint must be this run's
        require_checkpoint(ckpt_path)
        saved = load_run(run_dir)
        meta = checkpoint.read_metadata(ckpt_path)
        check_checkpoint_identity(ckpt_path, saved, meta)
        iteration, env_steps, wall_offset = checkpoint_position(ckpt_path, meta)
        old = schedule.read_schedule(run_dir)
        if old is None:  # a run written before schedule.json: derived from its config.json
            old = schedule.with_history(None, schedule.legacy_schedule(saved, per_iteration),
                                        note=f"derived from {CONFIG_FILE}")
            schedule.write_schedule(run_dir, old)
        changes = schedule.changed_fields(old, plan)
        if changes:
            phases.announce(f"schedule of {run_dir}: " + schedule.describe_changes(changes), progress)
        schedule.write_schedule(run_dir, schedule.with_history(old, plan))
        log = RunLog(run_dir, iteration, env_steps)
        if run_finished(run_dir, config.num_env_steps, per_iteration):
            return finished_summary(run_dir, config.num_env_steps, log.evaluations, iteration, env_steps,
                                    wall_offset)
    else:
        saved = config.to_saved_json()
        (run_dir / CONFIG_FILE).write_text(json.dumps(saved, indent=2))
        schedule.write_schedule(run_dir, schedule.with_history(None, plan))
        log = RunLog(run_dir, None, None)
    (run_dir / REFERENCES_FILE).write_text(json.dumps(json_safe(refs), indent=2))
    identity = run_identity(saved)
    phases.announce(f"compiling {config.agent} on {config.task}…", progress)
    compile_start = time.perf_counter()
    state = jax.jit(trainer.init)(jax.random.key(config.seed))
    if resume:
        state, _ = checkpoint.load(ckpt_path, state)
    step_fn = jax.jit(trainer.iteration).lower(state).compile()
    finite_fn = jax.jit(_finite_tree)
    evaluate = _evaluator(task, trainer, config.eval_trials, config.eval_seed)
    evaluate_compiled = evaluate.lower(state).compile()
    compile_seconds = time.perf_counter() - compile_start
    phases.announce(f"compiled in {compile_seconds:.1f} s; training", progress)

    total_iterations = math.ceil(config.num_env_steps / per_iteration)
    # Points in the past of a resumed run are behind it (their evaluations, if any, are logged).
    pending = [p for p in plan["eval_at"] if p > env_steps or (p <= 0 and not resume)]

    def due(env_steps):
        covered = [p for p in pending if p <= env_steps]
        del pending[:len(covered)]
        return covered

    def save(state, iteration, env_steps, wall):
        checkpoint.save(ckpt_path, state, {
            "iteration": iteration, "env_steps": env_steps, "wall_seconds": wall,
            "config": config.to_json(), "identity": identity,
        })

    def run_evaluation(state, env_steps, wall, points):
        start = time.perf_counter()
        returns = np.asarray(evaluate_compiled(state), np.float64)
        snapshots.save_params_snapshot(run_dir, trainer, state, iteration, env_steps)
        score, score_se = normalized_scores(returns, refs)
        log.add_evaluation({
            "iteration": iteration, "env_steps": env_steps, "eval_at": points[0], "eval_points": points,
            "wall_seconds": wall, "wall_seconds_with_compile": wall + compile_seconds,
            "mean_return": float(returns.mean()),
            "se": float(returns.std(ddof=1) / math.sqrt(len(returns))),
            "normalized_score": score, "normalized_score_se": score_se,
            "eval_seconds": time.perf_counter() - start, "returns": returns.tolist(),
        })
        return score

    bar = phases.progress_bar(total_iterations, iteration, progress, f"{config.agent} on {config.task}")
    start = time.perf_counter()
    last_score = None
    if iteration == 0 and (points := due(0)):
        phases.announce(f"evaluating at 0 env steps ({config.eval_trials} held-out trials)…", progress)
        last_score = run_evaluation(state, 0, 0.0, points)
    try:
        while iteration < total_iterations:
            if stop.requested:
                save(state, iteration, env_steps, wall_offset + time.perf_counter() - start)
                raise TrainingInterrupted(
                    f"interrupted: the checkpoint of iteration {iteration} ({env_steps} env steps) is "
                    f"saved in {ckpt_path}; continue with the same command and --resume --out {run_dir}")
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
            if iteration < total_iterations and (points := due(env_steps)):
                last_score = run_evaluation(state, env_steps, wall, points)
            if iteration % config.checkpoint_every == 0:
                save(state, iteration, env_steps, wall)
                pictures.write_run_pictures(run_dir, task, trainer, state, refs,
                                            agent_name=config.agent, final=False)
            bar.update(1)
            bar.set_postfix(steps=env_steps, ret=f"{metrics.get('return', float('nan')):.2f}",
                            loss=f"{metrics.get('loss', float('nan')):.3g}",
                            sps=f"{(env_steps - 0) / max(wall, 1e-9):.0f}",
                            score="-" if last_score is None else f"{last_score:.2f}")
    finally:
        bar.close()
    wall = wall_offset + time.perf_counter() - start
    phases.announce(f"final evaluation ({config.eval_trials} held-out trials) and pictures…", progress)
    if not (log.evaluations and log.evaluations[-1]["env_steps"] == env_steps):
        final_points = sorted({*due(env_steps), config.num_env_steps})
        last_score = run_evaluation(state, env_steps, wall, final_points)
    save(state, iteration, env_steps, wall)
    summary = {
        "iterations": iteration, "env_steps": env_steps, "wall_seconds": wall,
        "compile_seconds": compile_seconds,
        "env_steps_per_s": env_steps / wall if wall > 0 else float("nan"),
        "final_normalized_score": log.evaluations[-1]["normalized_score"], "evaluations": log.evaluations,
    }
    pictures.write_run_pictures(run_dir, task, trainer, state, refs, agent_name=config.agent)
    return summary


def _report_fault(run_dir: pathlib.Path, iteration: int, metrics: dict, bad: list[str], state: Any) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(state)
    bad_leaves = [jax.tree_util.keystr(path) for path, x in leaves
                  if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
                  and not bool(jnp.all(jnp.isfinite(x)))]
    report = {"iteration": iteration, "non_finite_metrics": bad, "non_finite_state": bad_leaves,
              "metrics": {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}}
    (run_dir / FAULT_FILE).write_text(json.dumps(report, indent=2))
