r"""Return estimators of one sequence, time-major (vmap over sequences at the boundary).

Two estimators side by side: generalized advantage estimation for PPO (:func:`gae`, RL^2)
and TD(lambda) returns for VariBASeD's value regression (:func:`lambda_returns`). Both are
backward ``lax.scan`` recursions of the same form,

.. math:: G_t = r_t + \gamma\big((1 - \lambda) v_{t+1} + \lambda G_{t+1}\big),

with GAE written on advantages :math:`A_t = G_t - v_t` and episode ends ``d_t`` cutting the
bootstrap (Schulman et al., 2016):

.. math::

    \delta_t = r_t + \gamma (1 - d_t) V_{t+1} - V_t, \qquad
    A_t = \delta_t + \gamma \lambda (1 - d_t) A_{t+1}, \qquad
    R_t = A_t + V_t.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["gae", "lambda_returns"]


def gae(
    rewards: Array,
    values: Array,
    dones: Array,
    last_value: Array,
    *,
    gamma: float,
    gae_lambda: float,
) -> tuple[Array, Array]:
    """Generalized advantage estimates and lambda-returns of one sequence.

    Args:
        rewards: float ``[T]``, ``r_t``.
        values: float ``[T]``, ``V_t`` (the critic's estimate at the state of step ``t``).
        dones: ``[T]`` flags, 1 where the sequence terminates after step ``t``.
        last_value: float scalar, ``V_T`` (ignored when ``dones[-1]`` is set).
        gamma: discount in ``[0, 1]``.
        gae_lambda: ``lambda`` in ``[0, 1]``.

    Returns:
        ``(advantages [T], returns [T])`` in the dtype of ``rewards``, with
        ``returns = advantages + values`` (the critic's regression targets).
    """
    dtype = jnp.result_type(rewards, values)
    rewards = jnp.asarray(rewards, dtype)
    values = jnp.asarray(values, dtype)
    notdone = 1.0 - jnp.asarray(dones, dtype)
    next_values = jnp.concatenate([values[1:], jnp.asarray(last_value, dtype)[None]])
    deltas = rewards + gamma * notdone * next_values - values

    def body(advantage, inputs):
        delta, keep = inputs
        advantage = delta + gamma * gae_lambda * keep * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(body, jnp.zeros((), dtype), (deltas, notdone), reverse=True)
    return advantages, advantages + values


def lambda_returns(rewards: Array, values: Array, gamma: float, lam: float) -> Array:
    r"""TD(lambda) returns of one trial, terminal at its end.

    .. math:: G_t = r_t + \gamma\big((1 - \lambda) v_{t+1} + \lambda G_{t+1}\big),\quad
              G_{T} = v_{T} = 0.

    Args:
        rewards: float32 ``[T]``; values: float32 ``[T]`` (``v_t``, estimates at step ``t``).

    Returns:
        float32 ``[T]``.
    """
    next_values = jnp.concatenate([values[1:], jnp.zeros((1,), values.dtype)])

    def body(carry, xs):
        reward, next_value = xs
        ret = reward + gamma * ((1 - lam) * next_value + lam * carry)
        return ret, ret

    _, returns = jax.lax.scan(body, jnp.zeros((), rewards.dtype), (rewards, next_values), reverse=True)
    return returns
