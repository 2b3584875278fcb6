"""The Bernoulli bandit: ``num_arms`` arms with unknown success probabilities.

A task is ``p ~ Beta(alpha, beta)`` independently per arm (``alpha``, ``beta`` scalars or one
per arm). Each step the agent pulls an arm ``a`` (action) and receives reward 1 with
probability ``p_a``, else 0. A trial is one episode of ``horizon`` pulls. The state is a
constant dummy and the observation a constant ``[1.]``.

Exact belief (conjugacy): per arm, the counts of successes and failures; the posterior is
``Beta(alpha + successes, beta + failures)`` per arm, independently.
:func:`bayes_optimal_value` gives the exact Bayes-optimal expected return by dynamic
programming over these counts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from varibased.models import registry
from varibased.models import task as task_lib
from varibased.models.agent import argmax_random_ties
from varibased.models.task import Task, TaskError

Array = jax.Array

__all__ = ["BetaBelief", "bayes_optimal_value", "num_dp_states", "make_bernoulli_bandit"]


class BetaBelief(NamedTuple):
    """The exact posterior as counts (for one trial).

    Attributes:
        successes: float32 ``[num_arms]``, rewards of 1 observed per arm.
        failures: float32 ``[num_arms]``, rewards of 0 observed per arm.
    """

    successes: Array
    failures: Array


def _prior_parameters(num_arms: int, alpha, beta) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-arm prior parameters as float tuples, validated."""
    out = []
    for name, value in (("alpha", alpha), ("beta", beta)):
        if isinstance(value, bool):
            raise TaskError(f"bernoulli bandit: {name} must be a number or one per arm, got {value!r}")
        try:
            array = np.asarray(value, np.float64)
        except (TypeError, ValueError) as error:
            raise TaskError(
                f"bernoulli bandit: {name} must be a number or one per arm, got {value!r}"
            ) from error
        if array.ndim == 0:
            array = np.full(num_arms, float(array))
        if array.shape != (num_arms,):
            raise TaskError(
                f"bernoulli bandit: {name} must be a scalar or have shape ({num_arms},) "
                f"(one per arm), got shape {array.shape}"
            )
        if not np.all(np.isfinite(array) & (array > 0)):
            raise TaskError(f"bernoulli bandit: {name} must be positive and finite, got {value!r}")
        out.append(tuple(float(v) for v in array))
    return out[0], out[1]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise TaskError(f"bernoulli bandit: {name} must be a positive int, got {value!r}")
    return int(value)


def num_dp_states(num_arms: int, horizon: int) -> int:
    """Number of count configurations the DP may visit: ``C(horizon + 2k, 2k)``.

    (Count vectors ``(s_1, f_1, ..., s_k, f_k)`` with total at most ``horizon``; arms with
    identical priors are exchangeable, which divides the visited states by up to ``k!``.)
    """
    return math.comb(horizon + 2 * num_arms, 2 * num_arms)


def bayes_optimal_value(
    num_arms: int,
    horizon: int,
    alpha=1.0,
    beta=1.0,
    *,
    max_states: int = 2_000_000,
) -> float:
    """Exact Bayes-optimal expected total reward, by dynamic programming (float64).

    .. math::

        V(c) = \\max_a\\; \\hat p_a(c)\\,(1 + V(c + e^{s}_a)) + (1 - \\hat p_a(c))\\, V(c + e^{f}_a),
        \\qquad \\hat p_a(c) = \\frac{\\alpha_a + s_a}{\\alpha_a + \\beta_a + s_a + f_a},

    with ``V = 0`` once ``horizon`` pulls are made, memoised on the counts (arms with the same
    prior and the same counts are exchangeable, so each state is stored once up to
    permutation). The DP visits up to ``C(horizon + 2k, 2k)`` states, i.e. it grows like
    ``horizon^(2k)``: instant for the default ``k = 2, horizon = 20`` (10,626 states), fine
    for ``k = 3, horizon = 20`` (230,230 before symmetry), infeasible for large ``k``.

    Args:
        num_arms: ``k``.
        horizon: number of pulls (must be <= 500: the recursion depth).
        alpha, beta: the Beta prior, scalars or one per arm.
        max_states: refuse (ValueError) when :func:`num_dp_states` exceeds it.

    Returns:
        The expected return of the Bayes-optimal policy (a Python float).
    """
    num_arms = _positive_int("num_arms", num_arms)
    horizon = _positive_int("horizon", horizon)
    alphas, betas = _prior_parameters(num_arms, alpha, beta)
    if horizon > 500:
        raise ValueError(f"bayes_optimal_value: horizon {horizon} > 500 (recursion depth)")
    if num_dp_states(num_arms, horizon) > max_states:
        raise ValueError(
            f"bayes_optimal_value: {num_arms} arms and horizon {horizon} need up to "
            f"{num_dp_states(num_arms, horizon):,} DP states (> max_states={max_states:,}); "
            "the state space grows like horizon^(2 * num_arms)"
        )
    memo: dict[tuple, float] = {}

    def value(arms: tuple[tuple[float, float, int, int], ...], remaining: int) -> float:
        if remaining == 0:
            return 0.0
        key = (arms, remaining)
        if key in memo:
            return memo[key]
        best = -math.inf
        for i, arm in enumerate(arms):
            if i > 0 and arm == arms[i - 1]:
                continue  # an exchangeable copy of the previous arm
            a, b, s, f = arm
            p = (a + s) / (a + b + s + f)
            win = tuple(sorted(arms[:i] + ((a, b, s + 1, f),) + arms[i + 1 :]))
            lose = tuple(sorted(arms[:i] + ((a, b, s, f + 1),) + arms[i + 1 :]))
            q = p * (1.0 + value(win, remaining - 1)) + (1.0 - p) * value(lose, remaining - 1)
            best = max(best, q)
        memo[key] = best
        return best

    start = tuple(sorted((a, b, 0, 0) for a, b in zip(alphas, betas, strict=True)))
    return value(start, horizon)


def make_bernoulli_bandit(num_arms: int = 2, horizon: int = 20, alpha=1.0, beta=1.0) -> Task:
    """The ``bernoulli_bandit`` task.

    Args:
        num_arms: number of arms ``k`` (= actions).
        horizon: pulls per trial (one episode).
        alpha, beta: Beta prior parameters, positive scalars or arrays of shape ``[k]``.

    Returns:
        The :class:`~models.task.Task`; task parameters ``{"p": float32[k]}``; rewards are
        categorical over ``(0.0, 1.0)``; the belief is a :class:`BetaBelief`.

    Raises:
        TaskError: for non-positive sizes or prior parameters, or wrongly shaped ones.
    """
    num_arms = _positive_int("num_arms", num_arms)
    horizon = _positive_int("horizon", horizon)
    alphas, betas = _prior_parameters(num_arms, alpha, beta)
    alpha_array = jnp.asarray(alphas, jnp.float32)
    beta_array = jnp.asarray(betas, jnp.float32)

    def prior() -> dict:
        p = numpyro.sample("p", dist.Beta(alpha_array, beta_array).expand([num_arms]).to_event(1))
        return {"p": p}

    def reward_distribution(task_params, state, action, next_state) -> dist.Distribution:
        del state, next_state
        p = task_params["p"][action]
        return dist.Categorical(probs=jnp.stack([1.0 - p, p]))

    def belief_init() -> BetaBelief:
        return BetaBelief(jnp.zeros(num_arms, jnp.float32), jnp.zeros(num_arms, jnp.float32))

    def belief_update(belief: BetaBelief, state, action, reward) -> BetaBelief:
        del state
        success = (jnp.asarray(reward, jnp.float32) > 0.5).astype(jnp.float32)
        return BetaBelief(
            belief.successes.at[action].add(success),
            belief.failures.at[action].add(1.0 - success),
        )

    def _posterior(belief: BetaBelief) -> dist.Distribution:
        return dist.Beta(alpha_array + belief.successes, beta_array + belief.failures)

    def belief_sample(rng_key, belief: BetaBelief) -> dict:
        return {"p": _posterior(belief).sample(rng_key)}

    def belief_log_prob(belief: BetaBelief, task_params) -> Array:
        return jnp.sum(_posterior(belief).log_prob(task_params["p"]))

    def optimal_value(task_params, state, t) -> Array:
        del state
        return (horizon - jnp.asarray(t, jnp.float32)) * jnp.max(task_params["p"])

    def oracle_action(rng_key, task_params, state, t) -> Array:
        del state, t
        return argmax_random_ties(rng_key, task_params["p"])

    cache: dict[str, float] = {}

    def exact_value() -> tuple[float, list[float]]:
        if "value" not in cache:
            cache["value"] = bayes_optimal_value(num_arms, horizon, alphas, betas)
        return cache["value"], [cache["value"]]

    return Task(
        name="bernoulli_bandit",
        num_actions=num_arms,
        obs_dim=1,
        episode_length=horizon,
        num_episodes=1,
        prior=prior,
        initial_state=task_lib.no_state,
        transition=task_lib.same_state,
        observe=task_lib.constant_observation,
        reward_distribution=reward_distribution,
        reward_values=(0.0, 1.0),
        belief_init=belief_init,
        belief_update=belief_update,
        belief_sample=belief_sample,
        belief_log_prob=belief_log_prob,
        optimal_value=optimal_value,
        oracle_action=oracle_action,
        bayes_optimal_value=exact_value,
        thompson_resample="step",
        description=f"{num_arms}-armed Bernoulli bandit, Beta prior, {horizon} pulls",
    )


registry.register("bernoulli_bandit", make_bernoulli_bandit)
