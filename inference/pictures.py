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

import jax
import jax.numpy as jnp
import numpy as np

from varibased.models.task import Task

__all__ = ["write_run_pictures", "plot_learning_curve", "plot_diagnostics", "plot_trial", "plot_runs",
           "read_metrics", "read_evaluations", "trial_kind"]

CURVE_FILE = "learning_curve.png"
TRIAL_FILE = "trial.png"
DIAGNOSTICS_FILE = "diagnostics.png"
DPI = 110

_REFERENCE_STYLES = {"random": (":", "k"), "posterior_sampling": ("-.", "k"),
                     "bayes_optimal": ("--", "k"), "oracle": (":", "tab:gray")}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    tmp = path.with_name(path.stem + ".tmp.png")  # atomic: a reader never sees half a PNG
    fig.savefig(tmp, dpi=DPI)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------- run files
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
    fig = _figure(6.4, 4.2)
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
    return _save(fig, pathlib.Path(path))


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
    fig = _figure(4.6 * ncols, 3.4 * nrows)
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
    return _save(fig, pathlib.Path(path))


# ---------------------------------------------------------------------------- one trial
def trial_kind(task: Task) -> str:
    """Which picture :func:`plot_trial` draws for ``task``: ``"grid"`` (an exact belief over
    the cells of a square grid, a 2-D position state), ``"function"`` (an exact GP posterior
    over the query points) or ``"generic"`` (anything else, e.g. a custom task)."""
    if not task.has_exact_belief:
        return "generic"
    from varibased.models.function_optimization import GPBelief

    b0 = task.belief_init()
    if isinstance(b0, GPBelief):
        return "function"
    leaves = jax.tree.leaves(b0)
    state = jax.tree.leaves(task.initial_state())
    if (len(leaves) == 1 and np.ndim(leaves[0]) == 1 and task.categorical_rewards
            and len(state) == 1 and np.shape(state[0]) == (2,)):
        size = math.isqrt(np.size(leaves[0]))
        if size * size == np.size(leaves[0]):
            return "grid"
    return "generic"


def _learned_config(trainer: Any):
    """The learned belief's configuration, or ``None`` when the agent has no learned belief."""
    belief_config = getattr(trainer.config, "belief_config", None)
    if trainer.params is None or not callable(belief_config):
        return None
    return belief_config()


_cache: dict[tuple[int, int, str], tuple[Any, Any, Any]] = {}


def _trial_functions(task: Task, trainer: Any, kind: str):
    """Jitted ``rollout(state, key)`` and ``beliefs(state, trial, key)``, compiled once per
    (task, trainer) so that pictures at checkpoints do not recompile."""
    from varibased.inference.diagnostics import exact_trial_beliefs
    from varibased.models import belief as belief_lib
    from varibased.models import decoder as decoder_lib
    from varibased.models import history
    from varibased.models.rollout import run_trials

    cache_key = (id(task), id(trainer), kind)
    if cache_key in _cache:
        return _cache[cache_key][2]
    config = _learned_config(trainer)

    def rollout(state, rng_key):
        return jax.tree.map(lambda x: x[0], run_trials(rng_key, task, trainer.agent(state, True), 1))

    def queries():
        if kind == "grid":
            size = math.isqrt(np.size(jax.tree.leaves(task.belief_init())[0]))
            cells = jnp.arange(size * size)
            states = jnp.stack([cells % size, cells // size], -1).astype(jnp.int32)
            return decoder_lib.query_inputs(task, states, jnp.zeros(size * size, jnp.int32))
        return decoder_lib.query_inputs(task, jnp.zeros(task.num_actions, jnp.int32),
                                       jnp.arange(task.num_actions))

    def beliefs(state, trial, rng_key):
        out = {}
        if kind == "function":
            from varibased.models.function_optimization import posterior_marginals

            exact = exact_trial_beliefs(task, trial)
            out["exact_mean"], out["exact_sd"] = jax.vmap(posterior_marginals)(exact)
        elif kind == "grid":
            out["exact"] = exact_trial_beliefs(task, trial)
        if config is None:
            return out
        params = trainer.params(state)
        batch = history.batch_from_trajectory(task, trial)
        if kind == "grid":
            probs = belief_lib.trial_predictive(rng_key, params, batch, queries(), task, config, 64)
            hit = probs[..., int(np.argmax(task.reward_values))].mean(1)  # [T+1, cells]
            out["learned"] = hit
        elif kind == "function":
            pred = belief_lib.trial_predictive(rng_key, params, batch, queries(), task, config, 64)
            out["learned_mean"], out["learned_sd"] = pred.mean(1), pred.std(1)
        else:
            _, scale_tril = belief_lib.trial_moments(params, batch, task, config)
            out["learned_sd"] = jnp.sqrt(jnp.sum(scale_tril**2, -1))  # [T+1, L] marginal sds
        return out

    fns = (jax.jit(rollout), jax.jit(beliefs))
    if len(_cache) >= 8:
        _cache.pop(next(iter(_cache)))
    _cache[cache_key] = (task, trainer, fns)  # the objects keep their ids alive
    return fns


def plot_trial(path: str | pathlib.Path, task: Task, trainer: Any, state: Any, *, seed: int = 2024,
               title: str = "") -> pathlib.Path:
    """One held-out trial of the greedy agent of ``state``, drawn by :func:`trial_kind`.

    * ``grid`` (GridNavi): the path of every episode (start, goal), and the belief over the
      goal cell at chosen steps: the learned one (``p(c) ∝ E_q[P(r = +1 | c, m)]``,
      renormalized over the candidate cells) above the exact posterior, all on one colour
      scale.
    * ``function`` (function optimization): after 0, T/4, T/2 and T queries, the true
      ``f``, the queries so far, and the learned and exact predictive bands (mean ± 2 sd).
    * ``generic``: the return of every episode, and the learned belief's spread (marginal
      standard deviation of ``q(m | h_t)`` per latent dimension and their mean) per step.

    Agents without a learned belief (RL^2) get the same picture without the learned parts.
    """
    kind = trial_kind(task)
    rollout, beliefs = _trial_functions(task, trainer, kind)
    key = jax.random.key(seed)
    trial = rollout(state, key)
    data = {k: np.asarray(v) for k, v in beliefs(state, trial, jax.random.fold_in(key, 1)).items()}
    rewards = np.asarray(trial.transitions.reward)
    draw = {"grid": _plot_grid_trial, "function": _plot_function_trial, "generic": _plot_generic_trial}[kind]
    fig = draw(task, trial, rewards, data)
    fig.suptitle(f"one held-out trial (greedy): {title}  return {rewards.sum():.2f}" if title
                 else f"one held-out trial (greedy), return {rewards.sum():.2f}")
    return _save(fig, pathlib.Path(path))


def _episode_returns(task: Task, rewards: np.ndarray) -> np.ndarray:
    return rewards.reshape(task.num_episodes, task.episode_length).sum(1)


def _shown_steps(task: Task, num: int = 5) -> list[int]:
    T, E = task.trial_length, task.episode_length
    steps = [0, min(5, E), *range(E, T + 1, E)]
    if len(steps) > num:
        steps = steps[:num - 1] + [T]
    return sorted(set(steps))


def _plot_grid_trial(task: Task, trial, rewards: np.ndarray, data: dict) -> Any:
    from matplotlib.colors import PowerNorm

    exact = data["exact"]  # [T+1, cells]
    size = math.isqrt(exact.shape[-1])
    candidates = np.flatnonzero(exact[0] > 0)
    goal = int(np.asarray(trial.task_params["goal"]))
    before = np.asarray(trial.transitions.env_state.state)
    actions = np.asarray(trial.transitions.action)
    moved = np.asarray(jax.vmap(task.transition)(jnp.asarray(before), jnp.asarray(actions)))
    beliefs = [("exact posterior", exact)]
    if "learned" in data:
        learned = np.zeros_like(data["learned"])
        learned[:, candidates] = data["learned"][:, candidates]
        learned /= learned.sum(-1, keepdims=True)
        beliefs.insert(0, ("learned belief", learned))
    shown = _shown_steps(task)
    E, L = task.num_episodes, task.episode_length
    ncols = max(E, len(shown))
    fig = _figure(2.5 * ncols + 0.8, 2.7 * (1 + len(beliefs)) + 0.4)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, len(beliefs)])
    path_axes = top.subplots(1, E, squeeze=False)[0]
    returns = _episode_returns(task, rewards)
    for episode, ax in enumerate(path_axes):
        part = slice(L * episode, L * (episode + 1))
        path = np.vstack([before[part][:1], moved[part]])
        offset = np.linspace(-0.15, 0.15, len(path))  # revisits side by side
        ax.plot(path[:, 0] + offset, path[:, 1] + offset, "o-", ms=3, lw=1, color="tab:blue")
        ax.plot(path[0, 0], path[0, 1], "s", ms=8, color="tab:green")
        ax.plot(goal % size, goal // size, "*", ms=16, color="gold", mec="k")
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(-0.5, size - 0.5)
        ax.set_xticks(range(size))
        ax.set_yticks(range(size))
        ax.set_aspect("equal")
        ax.grid(True, lw=0.4)
        ax.set_xlabel("x")
        ax.set_title(f"episode {episode + 1}: return {returns[episode]:.1f}", fontsize=9)
    path_axes[0].set_ylabel("y")
    top.suptitle("path of every episode (green square: start; star: goal; small offsets separate "
                 "revisits)", fontsize=10)
    norm = PowerNorm(0.5, vmin=0.0, vmax=1.0)  # one scale for every map; sqrt shows 1/21
    heat_axes = bottom.subplots(len(beliefs), len(shown), squeeze=False)
    image = None
    for row, (name, p) in enumerate(beliefs):
        for col, t in enumerate(shown):
            ax = heat_axes[row, col]
            grid = np.full(size * size, np.nan)
            grid[candidates] = p[t, candidates]
            image = ax.imshow(grid.reshape(size, size), origin="lower", cmap="viridis", norm=norm)
            ax.plot(goal % size, goal // size, "*", ms=10, color="gold", mec="k")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}\nafter t = {t} steps", fontsize=8)
    bottom.colorbar(image, ax=heat_axes, shrink=0.9, label="P(goal = cell)  (one scale, sqrt)")
    bottom.suptitle("belief over the goal (white: not a candidate goal; star: true goal)", fontsize=10)
    return fig


def _plot_function_trial(task: Task, trial, rewards: np.ndarray, data: dict) -> Any:
    from varibased.models.function_optimization import grid as query_grid

    x = query_grid(task.num_actions)
    f = np.asarray(trial.task_params["f"])
    actions = np.asarray(trial.transitions.action)
    T = task.trial_length
    shown = sorted({0, T // 4, T // 2, T})
    fig = _figure(3.6 * len(shown), 3.6)
    axes = fig.subplots(1, len(shown), sharey=True)
    for ax, t in zip(axes, shown, strict=True):
        ax.plot(x, f, "k-", lw=1.5, label="true f")
        if "learned_mean" in data:
            mean, sd = data["learned_mean"][t], data["learned_sd"][t]
            ax.plot(x, mean, color="tab:blue", label="learned belief: mean")
            ax.fill_between(x, mean - 2 * sd, mean + 2 * sd, color="tab:blue", alpha=0.2,
                            label="learned: ± 2 sd")
        mean, sd = data["exact_mean"][t], data["exact_sd"][t]
        ax.plot(x, mean, color="tab:orange", ls="--", label="exact posterior: mean")
        ax.fill_between(x, mean - 2 * sd, mean + 2 * sd, color="tab:orange", alpha=0.15,
                        label="exact: ± 2 sd")
        if t:
            ax.scatter(x[actions[:t]], rewards[:t], c=np.arange(t), cmap="Reds", vmin=-2, vmax=T,
                       edgecolors="k", linewidths=0.4, zorder=3, s=25, label="queries (later: darker)")
        ax.set_title(f"after {t} queries", fontsize=10)
        ax.set_xlabel("x (query point)")
        ax.grid(True, lw=0.3)
    axes[0].set_ylabel("f(x), observed y")
    axes[-1].legend(fontsize=7, loc="best")
    return fig


def _plot_generic_trial(task: Task, trial, rewards: np.ndarray, data: dict) -> Any:
    has_learned = "learned_sd" in data
    fig = _figure(10 if has_learned else 5, 3.6)
    axes = np.atleast_1d(fig.subplots(1, 2 if has_learned else 1))
    returns = _episode_returns(task, rewards)
    axes[0].bar(np.arange(1, len(returns) + 1), returns, color="tab:blue")
    axes[0].set_xlabel("episode")
    axes[0].set_ylabel("return")
    axes[0].set_xticks(np.arange(1, len(returns) + 1))
    axes[0].set_title("return per episode", fontsize=10)
    axes[0].grid(True, axis="y", lw=0.3)
    if has_learned:
        sd = data["learned_sd"]  # [T+1, L]
        steps = np.arange(sd.shape[0])
        ax = axes[1]
        ax.plot(steps, sd, color="tab:gray", lw=0.6, alpha=0.6)
        ax.plot(steps, sd.mean(-1), color="tab:blue", lw=2, label="mean over latent dimensions")
        ax.plot([], [], color="tab:gray", lw=0.6, label="one latent dimension")
        for boundary in range(task.episode_length, task.trial_length, task.episode_length):
            ax.axvline(boundary, color="k", ls=":", lw=0.8)
        ax.set_xlabel("step t of the trial (dotted: episode boundaries)")
        ax.set_ylabel("sd of q(m | h_t)")
        ax.set_ylim(bottom=0)
        ax.set_title("learned belief's spread (prior sd = 1)", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(True, lw=0.3)
    return fig


# ---------------------------------------------------------------------------- several runs
def plot_runs(run_dirs: list[str | pathlib.Path], out: str | pathlib.Path) -> pathlib.Path:
    """Overlay runs on the normalized score (random 0, R_ref 1), mean ± 2 s.e. of the greedy
    held-out evaluations, against environment steps and against wall-clock (without
    compilation).

    Raises:
        varibased.inference.runner.RunError: a directory is not a run, or has no evaluation.
    """
    from varibased.inference.runner import RunError, load_run

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
    fig = _figure(11, 4.2)
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
    return _save(fig, out)
