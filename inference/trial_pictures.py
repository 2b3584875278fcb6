"""``trial.png``: one held-out trial of the greedy agent, drawn for the kind of task.

GridNavi: the path of every episode and the learned vs the exact belief over the grid at
chosen steps, on one shared colour scale. Function optimization: the queries over the true
function with the learned and the exact bands. Any other task: the returns per episode and
the spread of the learned belief. Also the figure helpers of :mod:`varibased.inference.pictures`.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from varibased.models.task import Task

__all__ = ["plot_trial", "trial_kind", "figure", "save", "TRIAL_FILE", "DPI"]

TRIAL_FILE = "trial.png"
DPI = 110


def figure(width: float, height: float):
    """A bare constrained-layout Figure (no pyplot state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save(fig, path: pathlib.Path) -> pathlib.Path:
    """Write ``fig`` to ``path`` atomically (temporary file, then rename)."""
    tmp = path.with_name(path.stem + ".tmp.png")  # atomic: a reader never sees half a PNG
    fig.savefig(tmp, dpi=DPI)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------- run files
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
    return save(fig, pathlib.Path(path))


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
    fig = figure(2.5 * ncols + 0.8, 2.7 * (1 + len(beliefs)) + 0.4)
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
    fig = figure(3.6 * len(shown), 3.6)
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
    fig = figure(10 if has_learned else 5, 3.6)
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
