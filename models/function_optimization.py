"""Function optimization: find the maximum of a function drawn from a Gaussian process.

A task is ``f ~ GP(0, k)`` on ``num_points`` equally spaced points of ``[0, 1]`` (endpoints
included), with the RBF kernel ``k(x, x') = variance * exp(-(x - x')^2 / (2 lengthscale^2))``.
Each step the agent queries a point (action = its index) and observes
``y = f(x) + N(0, noise^2)``; the reward is ``y``. A trial is ``num_queries`` queries (one
episode). The state is a constant dummy and the observation a constant ``[1.]``: all the
information is in the actions and the rewards.

The RBF kernel on this grid is numerically singular in float32, so ``jitter * I`` is added
to it everywhere (sampling, conditioning, references): the prior *is* ``N(0, K + jitter I)``.
Its Cholesky factor ``L`` is computed once in float64 (numpy) and stored in float32.

Exact belief (GP conditioning). With repeated queries, the sufficient statistics of a
history are, per point ``i``, the number of queries ``n_i`` and the sum of their rewards
``s_i``: point ``i`` is observed once with mean ``s_i / n_i`` and noise variance
``noise^2 / n_i``. The posterior is computed in whitened coordinates ``f = L z``
(``z ~ N(0, I)`` a priori), where the posterior precision

.. math::

    A = I + M^T M, \\qquad M = \\operatorname{diag}(w) L, \\qquad w_i = \\sqrt{n_i} / \\sigma,

has eigenvalues >= 1, so that conditioning, sampling and densities stay accurate in
float32 without ever factorizing the near-singular ``K`` or the posterior covariance:
``E[z | D] = A^{-1} M^T b`` with ``b_i = s_i / (\\sigma \\sqrt{n_i})`` (0 where ``n_i = 0``),
``Cov[f | D] = L A^{-1} L^T``.

The variant ``function_optimization_lengthscale`` puts a prior ``LogNormal(log 0.1, 0.5)`` on
the lengthscale (non-conjugate; no exact belief fields).
:func:`lengthscale_log_marginal` gives its one-dimensional marginal likelihood (f integrated
out), for NUTS and quadrature gold standards.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.linalg import cho_solve, solve_triangular

from varibased.models import registry
from varibased.models import task as task_lib
from varibased.models.agent import argmax_random_ties
from varibased.models.task import Task, TaskError

Array = jax.Array

__all__ = [
    "GPBelief",
    "grid",
    "rbf_kernel",
    "prior_scale_tril",
    "posterior_moments",
    "posterior_marginals",
    "posterior_sample",
    "posterior_log_prob",
    "lengthscale_log_marginal",
    "make_function_optimization",
    "make_function_optimization_lengthscale",
]


class GPBelief(NamedTuple):
    """The exact GP posterior as fixed-shape sufficient statistics (for one trial).

    Attributes:
        counts: float32 ``[N]``, number of queries of each point.
        sums: float32 ``[N]``, sum of the rewards observed at each point.
        prior_scale_tril: float32 ``[N, N]``, the Cholesky factor ``L`` of the prior
            covariance ``K + jitter I`` (a constant, carried so that the belief alone
            defines the posterior).
        noise: float32 scalar, the observation noise standard deviation ``sigma``.
    """

    counts: Array
    sums: Array
    prior_scale_tril: Array
    noise: Array


# --------------------------------------------------------------------------------------
# Kernel and validation
# --------------------------------------------------------------------------------------


def grid(num_points: int) -> np.ndarray:
    """The ``num_points`` equally spaced query points of ``[0, 1]``, float64 ``[N]``."""
    return np.linspace(0.0, 1.0, num_points)


def rbf_kernel(points_a: Array, points_b: Array, lengthscale, variance) -> Array:
    """RBF kernel matrix ``[len(a), len(b)]`` in jax (float32; ``lengthscale`` may be traced)."""
    diff = (jnp.asarray(points_a)[:, None] - jnp.asarray(points_b)[None, :]) / lengthscale
    return variance * jnp.exp(-0.5 * diff**2)


def prior_scale_tril(num_points: int, lengthscale: float, variance: float, jitter: float) -> Array:
    """Cholesky factor of ``K + jitter I`` on the grid, computed in float64, returned float32."""
    x = grid(num_points)
    kernel = variance * np.exp(-0.5 * ((x[:, None] - x[None, :]) / lengthscale) ** 2)
    try:
        scale_tril = np.linalg.cholesky(kernel + jitter * np.eye(num_points))
    except np.linalg.LinAlgError as error:
        raise TaskError(
            f"the RBF kernel (lengthscale {lengthscale}, variance {variance}) plus jitter "
            f"{jitter} is not positive definite even in float64; increase the jitter"
        ) from error
    return jnp.asarray(scale_tril, jnp.float32)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise TaskError(f"function optimization: {name} must be a positive int, got {value!r}")
    return int(value)


def _positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TaskError(f"function optimization: {name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise TaskError(f"function optimization: {name} must be positive and finite, got {value!r}")
    return float(value)


def _finite_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TaskError(f"function optimization: {name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise TaskError(f"function optimization: {name} must be finite, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------
# Exact posterior
# --------------------------------------------------------------------------------------


def _whitened_posterior(belief: GPBelief) -> tuple[Array, Array, Array]:
    """``(M, C, mean_z)``: ``M = diag(w) L``, ``C = chol(I + M^T M)``, ``E[z | D]``."""
    counts = belief.counts
    weight = jnp.sqrt(counts) / belief.noise
    scaled = belief.sums / (belief.noise * jnp.sqrt(jnp.maximum(counts, 1.0)))
    whitened = weight[:, None] * belief.prior_scale_tril
    precision = jnp.eye(counts.shape[0], dtype=counts.dtype) + whitened.T @ whitened
    chol = jnp.linalg.cholesky(precision)
    mean_z = cho_solve((chol, True), whitened.T @ scaled)
    return whitened, chol, mean_z


def posterior_moments(belief: GPBelief) -> tuple[Array, Array]:
    """Posterior mean ``[N]`` and covariance ``[N, N]`` of ``f`` (float32)."""
    _, chol, mean_z = _whitened_posterior(belief)
    scale_tril = belief.prior_scale_tril
    root = solve_triangular(chol, scale_tril.T, lower=True)  # C^{-1} L^T, Cov = root^T root
    return scale_tril @ mean_z, root.T @ root


def posterior_marginals(belief: GPBelief) -> tuple[Array, Array]:
    """Posterior mean ``[N]`` and standard deviation ``[N]`` of ``f`` at every point."""
    _, chol, mean_z = _whitened_posterior(belief)
    scale_tril = belief.prior_scale_tril
    root = solve_triangular(chol, scale_tril.T, lower=True)
    return scale_tril @ mean_z, jnp.sqrt(jnp.sum(root**2, axis=0))


def posterior_sample(rng_key: Array, belief: GPBelief) -> Array:
    """One draw of ``f`` ``[N]`` from the exact posterior: ``L (E[z|D] + C^{-T} eps)``."""
    _, chol, mean_z = _whitened_posterior(belief)
    eps = jax.random.normal(rng_key, mean_z.shape, mean_z.dtype)
    z = mean_z + solve_triangular(chol, eps, lower=True, trans="T")
    return belief.prior_scale_tril @ z


def posterior_log_prob(belief: GPBelief, f: Array) -> Array:
    """Log posterior density of ``f`` ``[N]`` (a float32 scalar)."""
    _, chol, mean_z = _whitened_posterior(belief)
    scale_tril = belief.prior_scale_tril
    z = solve_triangular(scale_tril, f, lower=True)
    residual = chol.T @ (z - mean_z)
    num_points = f.shape[-1]
    return (
        -0.5 * jnp.sum(residual**2)
        + jnp.sum(jnp.log(jnp.diag(chol)))
        - jnp.sum(jnp.log(jnp.diag(scale_tril)))
        - 0.5 * num_points * math.log(2.0 * math.pi)
    )


# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------


def _known_parts(num_points: int, noise: float, num_queries: int) -> dict:
    """Task fields shared by both variants (state, observation, likelihood, oracle)."""

    def reward_distribution(task_params, state, action, next_state) -> dist.Distribution:
        del state, next_state
        return dist.Normal(task_params["f"][action], noise)

    def optimal_value(task_params, state, t) -> Array:
        del state
        return (num_queries - jnp.asarray(t, jnp.float32)) * jnp.max(task_params["f"])

    def oracle_action(rng_key, task_params, state, t) -> Array:
        del state, t
        return argmax_random_ties(rng_key, task_params["f"])

    return dict(
        num_actions=num_points,
        obs_dim=1,
        episode_length=num_queries,
        num_episodes=1,
        initial_state=task_lib.no_state,
        transition=task_lib.same_state,
        observe=task_lib.constant_observation,
        reward_distribution=reward_distribution,
        reward_values=None,
        optimal_value=optimal_value,
        oracle_action=oracle_action,
    )


def make_function_optimization(
    num_points: int = 32,
    lengthscale: float = 0.1,
    variance: float = 1.0,
    noise: float = 0.1,
    num_queries: int = 16,
    jitter: float = 1e-6,
) -> Task:
    """The ``function_optimization`` task (GP prior with a known kernel, exact belief).

    Args:
        num_points: size ``N`` of the grid (= number of actions).
        lengthscale, variance: the RBF kernel's hyperparameters.
        noise: standard deviation of the observation noise.
        num_queries: queries per trial (one episode).
        jitter: added to the kernel's diagonal everywhere.

    Returns:
        The :class:`~models.task.Task`; task parameters ``{"f": float32[N]}``; the belief is
        a :class:`GPBelief`.

    Raises:
        TaskError: for a non-positive or non-finite argument.
    """
    num_points = _positive_int("num_points", num_points)
    num_queries = _positive_int("num_queries", num_queries)
    lengthscale = _positive_float("lengthscale", lengthscale)
    variance = _positive_float("variance", variance)
    noise = _positive_float("noise", noise)
    jitter = _positive_float("jitter", jitter)
    scale_tril = prior_scale_tril(num_points, lengthscale, variance, jitter)

    def prior() -> dict:
        f = numpyro.sample(
            "f", dist.MultivariateNormal(jnp.zeros(num_points), scale_tril=scale_tril)
        )
        return {"f": f}

    def belief_init() -> GPBelief:
        zeros = jnp.zeros(num_points, jnp.float32)
        return GPBelief(zeros, zeros, scale_tril, jnp.asarray(noise, jnp.float32))

    def belief_update(belief: GPBelief, state, action, reward) -> GPBelief:
        del state
        return belief._replace(
            counts=belief.counts.at[action].add(1.0),
            sums=belief.sums.at[action].add(jnp.asarray(reward, jnp.float32)),
        )

    def belief_sample(rng_key, belief: GPBelief) -> dict:
        return {"f": posterior_sample(rng_key, belief)}

    def belief_log_prob(belief: GPBelief, task_params) -> Array:
        return posterior_log_prob(belief, task_params["f"])

    task = Task(
        name="function_optimization",
        prior=prior,
        belief_init=belief_init,
        belief_update=belief_update,
        belief_sample=belief_sample,
        belief_log_prob=belief_log_prob,
        thompson_resample="step",
        description=(
            f"maximize f ~ GP(0, RBF(lengthscale {lengthscale})) on {num_points} points "
            f"with {num_queries} noisy queries (noise {noise})"
        ),
        **_known_parts(num_points, noise, num_queries),
    )
    return task


def make_function_optimization_lengthscale(
    num_points: int = 32,
    lengthscale_loc: float = math.log(0.1),
    lengthscale_scale: float = 0.5,
    variance: float = 1.0,
    noise: float = 0.1,
    num_queries: int = 16,
    jitter: float = 1e-6,
) -> Task:
    """The ``function_optimization_lengthscale`` task: an unknown lengthscale.

    Prior: ``lengthscale ~ LogNormal(lengthscale_loc, lengthscale_scale)``, then
    ``f | lengthscale ~ N(0, K_lengthscale + jitter I)`` (float32 Cholesky in jax). Task
    parameters ``{"lengthscale": float32 scalar, "f": float32[N]}``. No exact belief: the
    posterior is non-conjugate (see :func:`lengthscale_log_marginal`).

    Raises:
        TaskError: for a non-positive or non-finite argument.
    """
    num_points = _positive_int("num_points", num_points)
    num_queries = _positive_int("num_queries", num_queries)
    lengthscale_loc = _finite_float("lengthscale_loc", lengthscale_loc)
    lengthscale_scale = _positive_float("lengthscale_scale", lengthscale_scale)
    variance = _positive_float("variance", variance)
    noise = _positive_float("noise", noise)
    jitter = _positive_float("jitter", jitter)
    points = jnp.asarray(grid(num_points), jnp.float32)

    def prior() -> dict:
        lengthscale = numpyro.sample("lengthscale", dist.LogNormal(lengthscale_loc, lengthscale_scale))
        kernel = rbf_kernel(points, points, lengthscale, variance) + jitter * jnp.eye(num_points)
        f = numpyro.sample(
            "f",
            dist.MultivariateNormal(jnp.zeros(num_points), scale_tril=jnp.linalg.cholesky(kernel)),
        )
        return {"lengthscale": lengthscale, "f": f}

    return Task(
        name="function_optimization_lengthscale",
        prior=prior,
        thompson_resample="step",
        description=(
            f"maximize f ~ GP(0, RBF(lengthscale ~ LogNormal({lengthscale_loc:.3g}, "
            f"{lengthscale_scale}))) on {num_points} points with {num_queries} noisy queries"
        ),
        **_known_parts(num_points, noise, num_queries),
    )


def lengthscale_log_marginal(
    lengthscale,
    actions: Array,
    rewards: Array,
    *,
    num_points: int = 32,
    variance: float = 1.0,
    noise: float = 0.1,
    jitter: float = 1e-6,
) -> Array:
    """Log marginal likelihood ``log p(rewards | actions, lengthscale)``, ``f`` integrated out.

    The rewards are jointly Gaussian:
    ``y ~ N(0, (K + jitter I)[a, a] + noise^2 I)`` (repeated queries share the jitter, as
    they share ``f``). Add ``LogNormal(log 0.1, 0.5).log_prob(lengthscale)`` for the
    unnormalized log posterior. Pure jax (jit-able, differentiable in ``lengthscale``).

    Args:
        lengthscale: positive scalar (may be traced).
        actions: int ``[T]`` queried indices.
        rewards: float ``[T]`` observed rewards.

    Returns:
        float32 scalar.
    """
    actions = jnp.asarray(actions, jnp.int32)
    rewards = jnp.asarray(rewards, jnp.float32)
    if actions.ndim != 1 or rewards.shape != actions.shape:
        raise ValueError(
            f"actions and rewards must both have shape [T], got {actions.shape} and {rewards.shape}"
        )
    return _log_marginal(lengthscale, actions, rewards, num_points, variance, noise, jitter)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _log_marginal(lengthscale, actions, rewards, num_points, variance, noise, jitter) -> Array:
    points = jnp.asarray(grid(num_points), jnp.float32)[actions]
    same = (actions[:, None] == actions[None, :]).astype(jnp.float32)
    cov = rbf_kernel(points, points, lengthscale, variance) + jitter * same
    chol = jnp.linalg.cholesky(cov + noise**2 * jnp.eye(actions.shape[0]))
    white = solve_triangular(chol, rewards, lower=True)
    return (
        -0.5 * jnp.sum(white**2)
        - jnp.sum(jnp.log(jnp.diag(chol)))
        - 0.5 * actions.shape[0] * math.log(2.0 * math.pi)
    )


registry.register("function_optimization", make_function_optimization)
registry.register("function_optimization_lengthscale", make_function_optimization_lengthscale)
