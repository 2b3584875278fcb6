"""Beliefs over a trial as arviz objects (arviz 1.x: an xarray ``DataTree``).

Both the learned belief (draws of ``q(m | h_t)``) and the exact posterior (draws of
``task.belief_sample``) at every step ``t = 0..T`` of one trial become a ``posterior`` group
with dims ``(chain, draw, step, ...)``, so that ``az.summary`` and arviz-plots work on them
and the two can be plotted side by side. The common currency is the **predictive reward at
task-provided queries** (``(states [Q], actions [Q])``: e.g. a noop in every candidate cell
of GridNavi, every query point of function optimization, every arm of a bandit):

* ``reward_probs`` ``(chain, draw, step, query, reward)`` for categorical rewards: the
  probability of each of ``task.reward_values`` under one draw of the belief;
* ``reward_mean`` ``(chain, draw, step, query)`` for continuous rewards: the mean reward
  under one draw (the learned decoder's mean; the true ``E[r | task]`` for the exact model).

The learned object also holds ``m`` ``(chain, draw, step, latent)``; the exact one holds the
task's own sample sites (e.g. ``goal`` ``(chain, draw, step)``, ``f`` ``(..., step, f_dim)``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from varibased.models import belief as belief_lib
from varibased.models import decoder as decoder_lib
from varibased.models import history
from varibased.models.task import Task

Array = jax.Array

__all__ = ["to_arviz", "learned_belief_to_arviz", "exact_belief_to_arviz", "exact_trial_beliefs"]


def to_arviz(posterior: dict[str, Any], dims: dict[str, list[str]] | None = None,
             coords: dict[str, Any] | None = None):
    """``az.from_dict({"posterior": posterior}, dims=..., coords=...)`` with numpy arrays.

    Args:
        posterior: name -> array ``[chain, draw, ...]``.
    """
    import arviz as az

    data = {name: np.asarray(value) for name, value in posterior.items()}
    return az.from_dict({"posterior": data}, dims=dims, coords=coords)


def _check_draws(num_chains: int, num_draws: int) -> None:
    for name, value in (("num_chains", num_chains), ("num_draws", num_draws)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _query_coords(queries, query_coords):
    num = int(np.asarray(queries[1]).shape[0])
    coords = np.arange(num) if query_coords is None else np.asarray(query_coords)
    if coords.shape != (num,):
        raise ValueError(f"query_coords must have {num} entries, got shape {coords.shape}")
    return coords


def _reward_coords(task: Task, coords: dict, dims: dict, name: str, extra: tuple[str, ...]):
    if task.categorical_rewards:
        coords["reward"] = np.asarray(task.reward_values)
        dims[name] = list(extra) + ["query", "reward"]
    else:
        dims[name] = list(extra) + ["query"]


def learned_belief_to_arviz(rng_key: Array, params: belief_lib.BeliefParams, trajectory,
                            task: Task, config: belief_lib.BeliefConfig, *, queries,
                            num_draws: int = 100, num_chains: int = 1, query_coords=None):
    """The learned belief at every step of ONE trial as an arviz ``DataTree``.

    Args:
        rng_key: key for the draws of q.
        params: the learned parameters.
        trajectory: one trial (a :class:`planning.rollout.Trajectory` with ``[T]`` fields).
        task, config: the task and the model configuration.
        queries: ``(states [Q], actions [Q])``, the transitions to read the decoder at.
        num_draws, num_chains: draws per chain of ``q(m | h_t)`` at each step.
        query_coords: labels of the queries (default ``0..Q-1``).

    Returns:
        ``DataTree`` with ``posterior`` variables ``m`` and ``reward_probs`` or ``reward_mean``.
    """
    _check_draws(num_chains, num_draws)
    labels = _query_coords(queries, query_coords)
    trial = history.batch_from_trajectory(task, trajectory)
    inputs = decoder_lib.query_inputs(task, *queries)
    features = belief_lib.trial_features(params, trial, task, config)  # [T+1, H]
    m = belief_lib.sample_beliefs(rng_key, params, features, config, num_chains * num_draws)  # [T+1, S, L]
    pred = jax.vmap(lambda m_t: decoder_lib.predictive_rewards(params, m_t, inputs, task, config))(m)

    def chains(x):  # [T+1, S, ...] -> [chain, draw, T+1, ...]
        x = np.moveaxis(np.asarray(x), 1, 0)
        return x.reshape((num_chains, num_draws) + x.shape[1:])

    name = "reward_probs" if task.categorical_rewards else "reward_mean"
    coords = {"step": np.arange(m.shape[0]), "latent": np.arange(m.shape[-1]),
              "query": labels}
    dims = {"m": ["step", "latent"]}
    _reward_coords(task, coords, dims, name, ("step",))
    return to_arviz({"m": chains(m), name: chains(pred)}, dims=dims, coords=coords)


def exact_trial_beliefs(task: Task, trajectory) -> Any:
    """The exact posterior at every step ``t = 0..T`` of ONE trial (leading axis ``T + 1``)."""
    task.require("belief_init", "belief_update")
    tr = trajectory.transitions

    def body(b, x):
        nb = task.belief_update(b, *x)
        return nb, nb

    b0 = task.belief_init()
    _, bs = jax.lax.scan(body, b0, (tr.env_state.state, tr.action, tr.reward))
    return jax.tree.map(lambda a, s: jnp.concatenate([a[None], s]), b0, bs)


def _mean_reward(task: Task, distribution) -> Array:
    if task.categorical_rewards:
        return jnp.exp(distribution.log_prob(jnp.arange(len(task.reward_values))))
    return jnp.asarray(distribution.mean, jnp.float32)


def exact_belief_to_arviz(rng_key: Array, task: Task, trajectory, *, queries,
                          num_draws: int = 100, num_chains: int = 1, query_coords=None):
    """The exact posterior at every step of ONE trial, in the same form as
    :func:`learned_belief_to_arviz` (draws of ``task.belief_sample``).

    Returns:
        ``DataTree`` with the task's sample sites and ``reward_probs`` / ``reward_mean``.
    """
    _check_draws(num_chains, num_draws)
    task.require("belief_init", "belief_update", "belief_sample")
    labels = _query_coords(queries, query_coords)
    states, actions = queries[0], jnp.asarray(queries[1], jnp.int32)
    beliefs = exact_trial_beliefs(task, trajectory)
    S = num_chains * num_draws
    num_steps = jax.tree.leaves(beliefs)[0].shape[0]
    keys = jax.random.split(rng_key, (num_steps, S))
    draws = jax.vmap(lambda ks, b: jax.vmap(lambda k: task.belief_sample(k, b))(ks))(keys, beliefs)

    def predictive(params):
        return jax.vmap(lambda s, a: _mean_reward(task, task.reward_distribution(
            params, s, a, task.transition(s, a))))(states, actions)

    pred = jax.vmap(jax.vmap(predictive))(draws)  # [T+1, S, Q, ...]

    def chains(x):
        x = np.moveaxis(np.asarray(x), 1, 0)
        return x.reshape((num_chains, num_draws) + x.shape[1:])

    name = "reward_probs" if task.categorical_rewards else "reward_mean"
    posterior = {name: chains(pred)}
    coords = {"step": np.arange(num_steps), "query": labels}
    dims: dict[str, list[str]] = {}
    _reward_coords(task, coords, dims, name, ("step",))
    if isinstance(draws, dict):
        for site, value in draws.items():
            value = chains(value)
            posterior[site] = value
            dims[site] = ["step"] + [f"{site}_dim_{i}" for i in range(value.ndim - 3)]
    return to_arviz(posterior, dims=dims, coords=coords)
