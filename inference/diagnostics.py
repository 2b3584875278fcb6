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
task's own sample sites with named dims (:data:`SITE_DIMS`: ``goal`` ``(chain, draw, step)``,
``f`` ``(..., step, point)``, bandit ``p`` ``(..., step, arm)``; other tasks ``site_dims=``).

Both also hold the trial itself: ``observed_data`` (``action``, ``reward``, dims ``(time,)``, the
``T`` transitions) and ``constant_data`` (the true task, ``true_<site>``, e.g. ``true_goal``).

**R-hat and ESS.** The "chains" of these objects are i.i.d. draws of a belief split into
groups, not Markov chains: R-hat is 1 and the ESS is the number of draws up to Monte Carlo
noise, whatever the belief; they diagnose nothing here (the posterior group's ``note``
attribute says so). R-hat and ESS are meaningful for MCMC output (e.g. the NUTS gold
standard of notebook 03).

:func:`plot_belief_forest` draws the learned and the exact belief in one ``az.plot_forest``
call (the shared predictive variable, aligned query labels and draw counts).
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

__all__ = ["to_arviz", "learned_belief_to_arviz", "exact_belief_to_arviz", "exact_trial_beliefs",
           "plot_belief_forest", "SITE_DIMS", "IID_NOTE"]

#: Names of the dims of the built-in tasks' sample sites after ``(chain, draw, step)``.
SITE_DIMS: dict[str, tuple[str, ...]] = {"goal": (), "f": ("point",), "p": ("arm",)}

#: Where R-hat or ESS of these objects is shown: their chains are independent draws.
IID_NOTE = ("chains are i.i.d. draws of the belief split into groups, not MCMC chains: "
            "R-hat ~ 1 and ESS ~ the number of draws by construction; they diagnose nothing here")


def to_arviz(posterior: dict[str, Any], dims: dict[str, list[str]] | None = None,
             coords: dict[str, Any] | None = None, *, observed_data: dict[str, Any] | None = None,
             constant_data: dict[str, Any] | None = None):
    """``az.from_dict({"posterior": posterior, ...}, dims=..., coords=...)`` with numpy arrays.

    Args:
        posterior: name -> array ``[chain, draw, ...]``.
        dims, coords: as ``az.from_dict`` (one ``dims`` table for every group, so a name
            means one variable).
        observed_data, constant_data: optional groups, name -> array (no chain, draw).
    """
    import arviz as az

    groups = {"posterior": posterior, "observed_data": observed_data, "constant_data": constant_data}
    data = {group: {name: np.asarray(value) for name, value in values.items()}
            for group, values in groups.items() if values}
    return az.from_dict(data, dims=dims, coords=coords)


def _site_dims(site: str, ndim: int, site_dims: dict[str, tuple[str, ...]] | None) -> list[str]:
    """Dims of a task site's value after the leading ones: named where known."""
    names = {**SITE_DIMS, **(site_dims or {})}.get(site)
    if names is not None and len(names) == ndim:
        return list(names)
    return [f"{site}_dim_{i}" for i in range(ndim)]


def _trial_groups(trajectory, site_dims=None) -> tuple[dict, dict, dict]:
    """``observed_data`` (actions, rewards), ``constant_data`` (the true task) and their dims."""
    tr = trajectory.transitions
    observed = {"action": np.asarray(tr.action), "reward": np.asarray(tr.reward)}
    dims = {"action": ["time"], "reward": ["time"]}
    constant = {}
    if isinstance(trajectory.task_params, dict):
        for site, value in trajectory.task_params.items():
            value = np.asarray(value)
            constant[f"true_{site}"] = value
            dims[f"true_{site}"] = _site_dims(site, value.ndim, site_dims)
    return observed, constant, dims


def _finish(tree):
    """Mark a belief object's posterior group with :data:`IID_NOTE`."""
    tree["posterior"].attrs["note"] = IID_NOTE
    return tree


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
    observed, constant, trial_dims = _trial_groups(trajectory)
    return _finish(to_arviz({"m": chains(m), name: chains(pred)}, dims={**dims, **trial_dims},
                            coords=coords, observed_data=observed, constant_data=constant))


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
                          num_draws: int = 100, num_chains: int = 1, query_coords=None,
                          site_dims: dict[str, tuple[str, ...]] | None = None):
    """The exact posterior at every step of ONE trial, in the same form as
    :func:`learned_belief_to_arviz` (draws of ``task.belief_sample``).

    Args:
        site_dims: names of the dims of the task's sample sites after ``step`` (default
            :data:`SITE_DIMS`, e.g. ``{"f": ("point",)}``); unnamed ones get ``<site>_dim_<i>``.

    Returns:
        ``DataTree`` with ``posterior`` (the task's sample sites and ``reward_probs`` /
        ``reward_mean``), ``observed_data`` and ``constant_data`` (see the module docstring).
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
            dims[site] = ["step"] + _site_dims(site, value.ndim - 3, site_dims)
    observed, constant, trial_dims = _trial_groups(trajectory, site_dims)
    return _finish(to_arviz(posterior, dims={**dims, **trial_dims}, coords=coords,
                            observed_data=observed, constant_data=constant))


def plot_belief_forest(learned, exact, *, step: int, var_name: str | None = None,
                       coords: dict[str, Any] | None = None, **kwargs):
    """The learned and the exact belief at ``step`` in one ``az.plot_forest`` call.

    The two objects are made comparable first: only a predictive variable both hold is
    plotted (``reward_probs`` at the largest reward value, or ``reward_mean``); query labels
    left at their default ``0..Q-1`` in one object take the other's labels (labels that
    differ otherwise raise); both keep the same number of draws per chain (the smaller).

    Args:
        learned, exact: from :func:`learned_belief_to_arviz` and :func:`exact_belief_to_arviz`.
        step: the step ``t`` of the trial to show.
        var_name: the variable (default: the shared predictive one).
        coords: extra selections, e.g. ``{"query": [3, 7]}``.
        **kwargs: passed to ``az.plot_forest`` (default ``combined=True``).

    Returns:
        The arviz-plots ``PlotCollection``.

    Raises:
        ValueError: the variable is not in both, or the query labels disagree.
    """
    import arviz as az

    post_l, post_e = learned["posterior"], exact["posterior"]
    shared = [v for v in ("reward_probs", "reward_mean") if v in post_l and v in post_e]
    name = var_name or (shared[0] if shared else None)
    if name is None or name not in post_l or name not in post_e:
        raise ValueError(
            f"{name!r} is not in both beliefs (learned: {sorted(post_l.data_vars)}, exact: "
            f"{sorted(post_e.data_vars)}); compare a variable both hold, e.g. {shared}")
    post_l, post_e = post_l.to_dataset()[[name]], post_e.to_dataset()[[name]]
    if "query" in post_l.dims and not np.array_equal(post_l["query"].values, post_e["query"].values):
        default = np.arange(post_l.sizes["query"])
        if post_l.sizes["query"] != post_e.sizes["query"]:
            raise ValueError("the beliefs were read at different numbers of queries")
        if np.array_equal(post_e["query"].values, default):
            post_e = post_e.assign_coords(query=post_l["query"].values)
        elif np.array_equal(post_l["query"].values, default):
            post_l = post_l.assign_coords(query=post_e["query"].values)
        else:
            raise ValueError("the beliefs' query labels differ; pass the same query_coords to both")
    draws = min(post_l.sizes["draw"], post_e.sizes["draw"])
    post_l, post_e = post_l.isel(draw=slice(draws)), post_e.isel(draw=slice(draws))
    selection = {"step": step, **(coords or {})}
    if "reward" in post_l.dims and "reward" not in selection:
        selection["reward"] = float(post_l["reward"].values.max())
    kwargs.setdefault("combined", True)
    trees = {label: az.from_dict({"posterior": {name: data[name].values}},
                                 dims={name: list(data[name].dims[2:])},
                                 coords={d: data[d].values for d in data[name].dims[2:]})
             for label, data in (("learned", post_l), ("exact", post_e))}
    plot = az.plot_forest(trees, var_names=[name], coords=selection, **kwargs)
    try:  # which colour is which belief
        plot.add_legend("model")
    except (KeyError, ValueError, AttributeError, TypeError):  # an arviz-plots without it
        pass
    return plot
