"""Classical Bayesian-optimization agents with the true GP prior (exact posterior).

For :mod:`models.function_optimization`: every agent keeps the task's exact belief
(:class:`~models.function_optimization.GPBelief`, updated by ``task.belief_update``) and
scores the grid points with the posterior of ``f``:

* **GP-UCB** (Srinivas et al., 2010): ``argmax mu_t(x) + sqrt(beta_t) sigma_t(x)`` with
  ``beta_t = 2 log(|D| t^2 pi^2 / (6 delta))``, ``t`` = 1-based step, ``|D|`` the number of
  points, ``delta = 0.1``; or with a fixed ``beta`` (:func:`best_fixed_beta` picks one).
* **Expected improvement** over the incumbent ``tau`` = the best posterior mean among the
  points queried so far (the "plug-in" incumbent for noisy observations; ``tau = 0``, the
  prior mean, before any query): ``EI = (mu - tau) Phi(z) + sigma phi(z)``,
  ``z = (mu - tau) / sigma``.
* **GP Thompson sampling**: ``argmax`` of one draw of ``f`` from the posterior, every step.

Ties are broken uniformly at random. All are :class:`~models.agent.Agent` values for one
trial (jit- and vmap-able; :func:`planning.rollout.run_trials` vmaps them).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from varibased.models import function_optimization as fo
from varibased.models import rollout
from varibased.models.agent import Agent, Transition, argmax_random_ties
from varibased.models.task import Task, TaskError

Array = jax.Array

__all__ = [
    "GPAgentState",
    "srinivas_beta",
    "expected_improvement",
    "gp_ucb_agent",
    "expected_improvement_agent",
    "gp_thompson_agent",
    "best_fixed_beta",
    "baseline_agents",
]

DEFAULT_BETAS = (0.5, 1.0, 2.0, 4.0, 8.0)


class GPAgentState(NamedTuple):
    """State of a GP agent: the exact posterior's sufficient statistics."""

    belief: fo.GPBelief


def srinivas_beta(step: Array, num_points: int, delta: float = 0.1) -> Array:
    """``beta_t = 2 log(|D| t^2 pi^2 / (6 delta))`` for the 1-based step ``t`` (float32)."""
    step = jnp.asarray(step, jnp.float32)
    return 2.0 * jnp.log(num_points * step**2 * math.pi**2 / (6.0 * delta))


def expected_improvement(mean: Array, std: Array, incumbent: Array) -> Array:
    """Expected improvement ``E[max(f - incumbent, 0)]`` of ``f ~ N(mean, std^2)``, elementwise."""
    std = jnp.maximum(std, 1e-12)
    gap = mean - incumbent
    z = gap / std
    return gap * jax.scipy.stats.norm.cdf(z) + std * jax.scipy.stats.norm.pdf(z)


def _check_gp_task(task: Task) -> None:
    task.require("belief_init", "belief_update", "belief_sample")
    belief = jax.eval_shape(task.belief_init)
    if not isinstance(belief, fo.GPBelief):
        raise TaskError(
            f"GP agents need a task whose belief is a GPBelief (function optimization); "
            f"task {task.name!r} has {type(belief).__name__}"
        )


def _scoring_agent(task: Task, score) -> Agent:
    """An agent that acts by ``argmax score(rng_key, belief, t)`` (``t`` 0-based)."""
    _check_gp_task(task)

    def init(rng_key: Array, task_params: Any) -> GPAgentState:
        del rng_key, task_params  # never looks at the task
        return GPAgentState(task.belief_init())

    def act(rng_key, agent_state: GPAgentState, env_state, obs):
        del obs
        score_key, tie_key = jax.random.split(rng_key)
        scores = score(score_key, agent_state.belief, env_state.t)
        return argmax_random_ties(tie_key, scores), ()

    def update(agent_state: GPAgentState, transition: Transition) -> GPAgentState:
        belief = task.belief_update(
            agent_state.belief, transition.env_state.state, transition.action, transition.reward
        )
        return GPAgentState(belief)

    return Agent(init=init, act=act, update=update)


def gp_ucb_agent(task: Task, beta: float | Array | None = None, delta: float = 0.1) -> Agent:
    """GP-UCB: ``argmax mu + sqrt(beta) sigma``.

    Args:
        task: a function-optimization task.
        beta: ``None`` for Srinivas et al.'s ``beta_t`` (with ``delta``), else a fixed
            non-negative value (a float, or a traced scalar for sweeps).
        delta: the confidence parameter of ``beta_t``, in ``(0, 1)``.
    """
    if beta is None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"gp_ucb_agent: delta must be in (0, 1), got {delta!r}")
    elif isinstance(beta, int | float) and not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"gp_ucb_agent: beta must be a non-negative number, got {beta!r}")

    def score(rng_key, belief, t):
        del rng_key
        mean, std = fo.posterior_marginals(belief)
        coefficient = srinivas_beta(t + 1, mean.shape[0], delta) if beta is None else beta
        return mean + jnp.sqrt(coefficient) * std

    return _scoring_agent(task, score)


def expected_improvement_agent(task: Task) -> Agent:
    """Expected improvement over the best posterior mean among the queried points."""

    def score(rng_key, belief, t):
        del rng_key, t
        mean, std = fo.posterior_marginals(belief)
        queried = belief.counts > 0
        incumbent = jnp.where(jnp.any(queried), jnp.max(jnp.where(queried, mean, -jnp.inf)), 0.0)
        return expected_improvement(mean, std, incumbent)

    return _scoring_agent(task, score)


def gp_thompson_agent(task: Task) -> Agent:
    """GP Thompson sampling: ``argmax`` of a fresh posterior draw of ``f`` at every step."""

    def score(rng_key, belief, t):
        del t
        return fo.posterior_sample(rng_key, belief)

    return _scoring_agent(task, score)


def best_fixed_beta(
    task: Task,
    rng_key: Array,
    betas: tuple[float, ...] = DEFAULT_BETAS,
    num_trials: int = 256,
) -> tuple[float, dict[float, rollout.ReturnStats]]:
    """Sweep fixed-beta GP-UCB and return the beta with the highest mean return.

    Every beta runs on the same ``num_trials`` tasks and keys (common random numbers), in
    one jit-compiled, vmapped call. Use a key other than the evaluation's, so that the
    chosen beta is not tuned on the trials it is reported on.

    Returns:
        ``(best_beta, {beta: ReturnStats})``.
    """
    if not betas or any(not (math.isfinite(b) and b >= 0) for b in betas):
        raise ValueError(f"best_fixed_beta: betas must be non-negative numbers, got {betas!r}")
    if isinstance(num_trials, bool) or not isinstance(num_trials, int) or num_trials < 2:
        raise ValueError(f"best_fixed_beta: num_trials must be an int >= 2, got {num_trials!r}")

    def rewards(beta):
        agent = gp_ucb_agent(task, beta=beta)
        return rollout.run_trials(rng_key, task, agent, num_trials).transitions.reward

    all_rewards = jax.jit(jax.vmap(rewards))(jnp.asarray(betas, jnp.float32))
    stats = {float(b): rollout.summarize(task, r) for b, r in zip(betas, all_rewards, strict=True)}
    best = max(stats, key=lambda b: stats[b].mean)
    return best, stats


def baseline_agents(task: Task, rng_key: Array | None = None, num_trials: int = 256) -> dict:
    """The classical anchors for a function-optimization task.

    ``gp_ucb_best_beta`` uses :func:`best_fixed_beta` run with ``rng_key`` (default
    ``jax.random.key(12345)``, kept apart from evaluation seeds) on ``num_trials`` trials.

    Returns:
        ``{"gp_ucb", "gp_ucb_best_beta", "expected_improvement", "gp_thompson"}`` -> Agent.
    """
    if rng_key is None:
        rng_key = jax.random.key(12345)
    beta, _ = best_fixed_beta(task, rng_key, num_trials=num_trials)
    return {
        "gp_ucb": gp_ucb_agent(task),
        "gp_ucb_best_beta": gp_ucb_agent(task, beta=beta),
        "expected_improvement": expected_improvement_agent(task),
        "gp_thompson": gp_thompson_agent(task),
    }

