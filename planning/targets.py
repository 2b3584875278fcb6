r"""Policy targets of a planning call: per-action value estimates and the tilted prior.

The baseline target of the Belief-SMC planner is the weighted marginal of the particles'
first actions (:func:`varibased.planning.smc.improved_policy`). The line of work this planner
comes from (SPO, Macfarlane et al. 2024; Trust-Region Twisted SMC, de Vries et al. 2025) instead
builds a per-action target from all particles' returns,

.. math::

    \hat Q(a) = \frac{1}{n_a} \sum_{i : a_{i,1} = a} R_i, \qquad
    \hat\pi(a) \propto \pi(a) \exp\big(\hat Q(a) / \eta\big),

where ``R_i`` is particle ``i``'s bootstrapped imagined return (all actions compared at one
depth, :func:`q_estimates`) and an action no particle tried gets the call's value estimate
``sum_i W_i R_i`` (not ``V(h_0)``: an optimistic value such as QMDP would make every
untried action look best). With stratified root actions (``PlannerConfig.root_actions``)
and ``K >= A`` every action is tried. The temperature ``eta`` is either fixed (the
planner's ``alpha``) or adapted per planning call so that :math:`\mathrm{KL}(\hat\pi \,\|\, \pi) \le
\epsilon` (:func:`adaptive_temperature`: the smallest such ``eta``, by bisection on
``log eta``; the KL decreases monotonically in ``eta``), a per-call solution of the
MPO / SPO temperature dual.

Everything is for one root (vmap over environments outside).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["q_estimates", "tilted_policy", "kl_divergence", "adaptive_temperature"]

#: bisection range of the temperature (in return units) and its number of halvings
ETA_RANGE = (1e-3, 1e4)
BISECTION_STEPS = 30


def q_estimates(first_actions: Array, estimates: Array, num_actions: int,
                default: Array) -> Array:
    """Per-action mean bootstrapped return, all actions compared at one depth.

    Resampling concentrates the particles on a few first actions, and a bootstrapped return
    changes with depth (an optimistic value such as QMDP falls as imagined steps pass), so
    actions are compared at the deepest depth at which every action tried at depth 1 still
    has a particle (depth 1 holds every particle's).

    Args:
        first_actions: int32 ``[D, K]``, each particle's first action after each depth.
        estimates: float32 ``[D, K]``, each particle's bootstrapped return after each depth.
        num_actions: ``A``.
        default: float32 scalar, ``Q`` of an action no particle tried.

    Returns:
        float32 ``[A]``.
    """
    onehot = jax.nn.one_hot(first_actions, num_actions, dtype=jnp.float32)  # [D, K, A]
    counts = onehot.sum(1)  # [D, A]
    means = (onehot * estimates[..., None]).sum(1) / jnp.maximum(counts, 1.0)  # [D, A]
    tried = counts[0] > 0
    complete = jnp.all((counts > 0) | ~tried, axis=1)  # [D]: every tried action present
    depth = jnp.max(jnp.where(complete, jnp.arange(counts.shape[0]), 0))
    return jnp.where(tried, means[depth], default).astype(jnp.float32)


def tilted_policy(prior_logits: Array, q: Array, eta: Array) -> Array:
    """``pi_hat(a) ∝ pi(a) exp(q(a) / eta)``, float32 ``[A]``."""
    return jax.nn.softmax(jax.nn.log_softmax(prior_logits) + q / eta)


def kl_divergence(p: Array, prior_logits: Array) -> Array:
    """``KL(p || softmax(prior_logits))`` in nats."""
    log_prior = jax.nn.log_softmax(prior_logits)
    return jnp.sum(jnp.where(p > 0, p * (jnp.log(jnp.where(p > 0, p, 1.0)) - log_prior), 0.0))


def adaptive_temperature(prior_logits: Array, q: Array, epsilon: float) -> Array:
    """The smallest ``eta`` in :data:`ETA_RANGE` with ``KL(tilted || prior) <= epsilon``.

    Bisection on ``log eta`` (:data:`BISECTION_STEPS` halvings, jit-friendly). If even the
    smallest ``eta`` keeps the KL below ``epsilon``, that smallest one is returned.
    """
    lo, hi = jnp.log(ETA_RANGE[0]), jnp.log(ETA_RANGE[1])

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = kl_divergence(tilted_policy(prior_logits, q, jnp.exp(mid)), prior_logits) <= epsilon
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    small_ok = kl_divergence(tilted_policy(prior_logits, q, jnp.exp(lo)), prior_logits) <= epsilon
    _, hi = jax.lax.fori_loop(0, BISECTION_STEPS, body, (lo, hi))
    return jnp.exp(jnp.where(small_ok, lo, hi)).astype(jnp.float32)
