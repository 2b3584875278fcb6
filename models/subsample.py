"""Subsampling of the ELBO's belief steps and decoded steps (VariBAD's ``vae_subsample_elbos``
and ``vae_subsample_decodes``), an unbiased estimate of the full objective at lower cost.

The learned model's ELBO (:mod:`models.belief`) is a mean over ``N`` belief steps per trial of
ELBOs that each decode ``T`` steps: ``B N T`` decoder evaluations per update. With
``BeliefConfig.elbo_steps = n`` each trial keeps ``n`` of its ``N`` belief steps, drawn
uniformly without replacement (the mean over the kept ones is an unbiased estimate of the
mean over all); with ``BeliefConfig.decode_steps = d`` each trial keeps ``d`` of its ``T``
decoded steps, the same ones for all of its beliefs, and their log-likelihood is scaled by
``T / d`` (an unbiased estimate of the sum over all). 0 keeps every step (the exact
objective, the default). The draws come from an explicit key, the ``subsample_key`` argument
of :func:`models.belief.model` and :func:`models.belief.guide` (both must get the same one);
without a key nothing is subsampled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from varibased.models.belief import BeliefConfig

Array = jax.Array

__all__ = ["subsamples", "draw_indices", "take_steps", "elbo_indices", "take_beliefs"]


def subsamples(config: BeliefConfig) -> bool:
    """Whether ``config`` subsamples belief steps or decoded steps (then updates need a key)."""
    return bool(config.elbo_steps or config.decode_steps)


def draw_indices(rng_key: Array, num_rows: int, size: int, num: int) -> Array:
    """``num`` distinct indices in ``[0, size)`` for each of ``num_rows`` rows, drawn
    uniformly without replacement and independently per row: int32 ``[num_rows, num]``."""
    keys = jax.random.split(rng_key, num_rows)
    return jax.vmap(lambda k: jax.random.permutation(k, size)[:num])(keys).astype(jnp.int32)


def take_steps(x: Array, index: Array) -> Array:
    """``x [B, S, ...]`` at ``index [B, n]`` along its step axis: ``[B, n, ...]``."""
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def elbo_indices(rng_key: Array | None, config: BeliefConfig, num_trials: int, num_beliefs: int,
                 num_steps: int) -> tuple[Array | None, Array | None]:
    """The kept belief steps ``[B, n]`` and decoded steps ``[B, d]`` of a batch, each ``None``
    when every step is kept (no key, the option at 0, or at least as many as there are)."""
    if rng_key is None:
        return None, None
    belief_key, decode_key = jax.random.split(rng_key)
    beliefs = decodes = None
    if 0 < config.elbo_steps < num_beliefs:
        beliefs = draw_indices(belief_key, num_trials, num_beliefs, config.elbo_steps)
    if 0 < config.decode_steps < num_steps:
        decodes = draw_indices(decode_key, num_trials, num_steps, config.decode_steps)
    return beliefs, decodes


def take_beliefs(distribution_fn: Callable[[Array], Any], features: Array, index: Array):
    """The belief ``distribution_fn(features)`` (batch ``[B, N]``) at the kept steps ``index
    [B, n]``, for any guide family: the distribution's leaves are all ``[B, N, ...]`` (a
    family may read every earlier step, so it is built on all of them, then cut); its
    structure, which records the batch shape, is that of a distribution on ``n`` steps."""
    full = distribution_fn(features)
    structure = jax.tree.structure(jax.eval_shape(distribution_fn, take_steps(features, index)))
    return jax.tree.unflatten(structure, [take_steps(leaf, index) for leaf in jax.tree.leaves(full)])
