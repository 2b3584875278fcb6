"""The policy and value heads of the learned model, on the S5 features of a history.

The policy ``pi_psi(a | h)`` (the prior over actions of the graphical model, distilled from
the planner) and the value ``V(h)`` are small MLPs on the encoder's features. Optionally the
value head regresses ``symlog`` returns (``BeliefConfig.value_transform``), and the heads'
gradient into the shared encoder is scaled (``BeliefConfig.heads_encoder_gradient``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from varibased.models import networks

if TYPE_CHECKING:
    from varibased.models.belief import BeliefConfig, BeliefParams

Array = jax.Array

__all__ = ["policy_logits", "value", "symlog", "symexp", "head_features"]


def policy_logits(params: BeliefParams, features: Array) -> Array:
    """Policy logits ``[..., A]`` from encoder features ``[..., H]``."""
    return networks.head(params.policy_head, features)


def value(params: BeliefParams, features: Array, config: BeliefConfig | None = None) -> Array:
    """Value ``V(h)`` ``[...]`` from encoder features ``[..., H]``, in return units (the head's
    output read through ``config.value_transform``)."""
    out = networks.head(params.value_head, features)[..., 0]
    if config is not None and config.value_transform == "symlog":
        return symexp(out)
    return out


def symlog(x: Array) -> Array:
    """``sign(x) log(1 + |x|)``."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: Array) -> Array:
    """The inverse of :func:`symlog`: ``sign(x) (exp(|x|) - 1)``."""
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def head_features(features: Array, config: BeliefConfig) -> Array:
    """The encoder features as the policy and value heads see them: the gradient into the
    encoder scaled by ``config.heads_encoder_gradient`` (the values are unchanged)."""
    g = config.heads_encoder_gradient
    if g == 1.0:
        return features
    frozen = jax.lax.stop_gradient(features)
    return frozen if g == 0.0 else frozen + g * (features - frozen)
