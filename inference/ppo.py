"""The pieces of proximal policy optimization (PPO): the clipped losses (and GAE).

Pure functions on arrays, written time-major for one sequence (vmap over sequences at the
boundary) or over any batch shape where the formula is elementwise. :mod:`inference.rl2`
wires them into its update.

Advantages come from generalized advantage estimation, :func:`varibased.inference.returns.gae`
(re-exported here). The clipped objective (Schulman et
al., 2017), to be *minimized*:

.. math::

    L^{\\pi} = -\\operatorname{mean}\\, \\min\\bigl(\\rho_t A_t,\\;
        \\operatorname{clip}(\\rho_t, 1 - \\epsilon, 1 + \\epsilon) A_t\\bigr), \\qquad
    \\rho_t = \\exp(\\log\\pi(a_t) - \\log\\pi_{\\text{old}}(a_t)),

    L^{V} = \\tfrac12 \\operatorname{mean}\\, \\max\\bigl((V_t - R_t)^2,
        (V^{\\text{old}}_t + \\operatorname{clip}(V_t - V^{\\text{old}}_t, -\\epsilon, \\epsilon)
        - R_t)^2\\bigr),

and the total loss is ``L^pi + value_coef * L^V - entropy_coef * H[pi]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from varibased.inference.returns import gae

Array = jax.Array

__all__ = [
    "gae",
    "log_prob",
    "entropy",
    "normalize",
    "policy_loss",
    "value_loss",
    "LossInfo",
    "ppo_loss",
]


def log_prob(logits: Array, actions: Array) -> Array:
    """``log pi(a)`` of integer ``actions [...]`` under categorical ``logits [..., A]``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_probs, jnp.asarray(actions)[..., None], axis=-1)[..., 0]


def entropy(logits: Array) -> Array:
    """Entropy ``[...]`` (nats) of categorical ``logits [..., A]``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def normalize(advantages: Array, eps: float = 1e-8) -> Array:
    """Advantages standardized over all their elements: ``(A - mean) / (std + eps)``."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def policy_loss(new_log_prob: Array, old_log_prob: Array, advantages: Array, clip_eps: float) -> Array:
    """The clipped surrogate ``L^pi`` (a scalar to minimize), averaged over all elements."""
    ratio = jnp.exp(new_log_prob - old_log_prob)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages))


def value_loss(values: Array, old_values: Array, returns: Array, clip_eps: float) -> Array:
    """The clipped value loss ``L^V`` (a scalar), averaged over all elements."""
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * jnp.mean(jnp.maximum((values - returns) ** 2, (clipped - returns) ** 2))


class LossInfo(NamedTuple):
    """Diagnostics of one PPO loss evaluation (float32 scalars).

    Attributes:
        loss: the total loss.
        policy_loss: ``L^pi``.
        value_loss: ``L^V``.
        entropy: mean policy entropy (nats).
        approx_kl: mean of ``(rho - 1) - log rho``, an estimate of KL(old || new).
        clip_fraction: fraction of steps with ``|rho - 1| > clip_eps``.
    """

    loss: Array
    policy_loss: Array
    value_loss: Array
    entropy: Array
    approx_kl: Array
    clip_fraction: Array


def ppo_loss(
    logits: Array,
    values: Array,
    actions: Array,
    old_log_prob: Array,
    old_values: Array,
    advantages: Array,
    returns: Array,
    *,
    clip_eps: float,
    value_coef: float,
    entropy_coef: float,
) -> tuple[Array, LossInfo]:
    """The PPO loss over a batch of steps of any shape ``[...]``.

    Args:
        logits: float ``[..., A]`` of the current policy.
        values: float ``[...]`` of the current critic.
        actions: int ``[...]``, the actions taken.
        old_log_prob, old_values: float ``[...]``, from the policy that acted.
        advantages: float ``[...]`` (already normalized if wanted).
        returns: float ``[...]``, the critic's targets.
        clip_eps, value_coef, entropy_coef: the PPO coefficients.

    Returns:
        ``(loss, LossInfo)``.
    """
    new_log_prob = log_prob(logits, actions)
    l_pi = policy_loss(new_log_prob, old_log_prob, advantages, clip_eps)
    l_v = value_loss(values, old_values, returns, clip_eps)
    ent = jnp.mean(entropy(logits))
    loss = l_pi + value_coef * l_v - entropy_coef * ent
    log_ratio = new_log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    info = LossInfo(
        loss=loss,
        policy_loss=l_pi,
        value_loss=l_v,
        entropy=ent,
        approx_kl=jnp.mean((ratio - 1.0) - log_ratio),
        clip_fraction=jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    )
    return loss, info
