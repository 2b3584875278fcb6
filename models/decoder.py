"""The reward decoder ``p_theta(r | s, a, s', m)`` of the learned belief: its parameters, its
distribution, its predictive at query transitions and its noise scale.

The decoder sees the latent ``m`` and, by ``BeliefConfig.decoder_inputs``, the observation
before the move, the action, and the observation of the state *moved into*,
``task.observe(task.transition(s, a))``. Categorical rewards (``task.reward_values``) get
logits over the reward index; continuous rewards a Gaussian with a learned mean and one
learned log-scale (the noise, :func:`noise_scale`; uncertainty about the task lives in q).
The architectures (``BeliefConfig.decoder``) are described in
:class:`~models.belief.BeliefConfig`.

Functions take a :class:`~models.belief.BeliefParams` (they read its ``decoder`` field) and a
:class:`~models.belief.BeliefConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from varibased.models import networks
from varibased.models.task import Task

if TYPE_CHECKING:
    from varibased.models.belief import BeliefConfig, BeliefParams
    from varibased.models.history import TrialBatch

Array = jax.Array

__all__ = [
    "DECODER_INPUTS",
    "input_dim",
    "num_outputs",
    "init",
    "decoder_inputs",
    "decoder_outputs",
    "distribution",
    "noise_scale",
    "reward_targets",
    "reward_distribution",
    "decoder_log_likelihood",
    "query_inputs",
    "predictive_rewards",
]

#: What the reward decoder may see besides ``m``.
DECODER_INPUTS = ("obs", "action", "moved_obs")


def input_dim(task: Task, config: BeliefConfig) -> int:
    """Size ``Dx`` of the decoder's transition input."""
    sizes = {"obs": task.obs_dim, "action": task.num_actions, "moved_obs": task.obs_dim}
    return sum(sizes[name] for name in config.decoder_inputs)


def num_outputs(task: Task) -> int:
    """``K``: the number of reward values (categorical rewards), else 1 (the mean)."""
    return len(task.reward_values) if task.categorical_rewards else 1


def init(rng_key: Array, task: Task, config: BeliefConfig) -> dict:
    """Initial decoder parameters (a dict of float32 pytrees; ``"log_scale"`` ``[]`` for
    continuous rewards)."""
    L, Dx, K = config.latent_dim, input_dim(task, config), num_outputs(task)
    hidden = config.decoder_hidden
    if config.decoder == "linear":
        params = {"x_net": networks.mlp_init(rng_key, (Dx,) + hidden[:-1] + (K * (L + 1),), 0.3)}
    elif config.decoder == "bilinear":
        k_m, k_x = jax.random.split(rng_key)
        params = {"m_net": networks.mlp_init(k_m, (L,) + hidden),
                  "x_net": networks.mlp_init(k_x, (Dx,) + hidden[:-1] + (K * (hidden[-1] + 1),), 0.3)}
    else:
        sizes = (L + Dx,) + hidden
        keys = jax.random.split(rng_key, len(sizes))
        first = networks.dense_init(keys[0], sizes[0], sizes[1])
        params = {
            "m": first["w"][:L],
            "x": {"w": first["w"][L:], "b": first["b"]},
            "hidden": tuple(
                networks.dense_init(keys[i], sizes[i], sizes[i + 1]) for i in range(1, len(sizes) - 1)
            ),
            "out": networks.dense_init(keys[-1], sizes[-1], K),
        }
    if not task.categorical_rewards:
        params["log_scale"] = jnp.zeros((), jnp.float32)
    return params


def decoder_inputs(obs: Array, actions: Array, moved_obs: Array, num_actions: int,
                   config: BeliefConfig) -> Array:
    """The decoder's transition input: ``obs [..., d]``, ``actions [...]``, ``moved_obs [..., d]``
    -> float32 ``[..., Dx]`` (the parts named by ``config.decoder_inputs``, in that order)."""
    parts = {"obs": lambda: obs,
             "action": lambda: jax.nn.one_hot(actions, num_actions, dtype=jnp.float32),
             "moved_obs": lambda: moved_obs}
    return jnp.concatenate([parts[name]() for name in config.decoder_inputs], axis=-1)


def decoder_outputs(params: BeliefParams, m: Array, x: Array) -> Array:
    """Decoder outputs for every pair (each m with each x): ``m [..., M, L]``, ``x [..., N, Dx]``
    -> ``[..., M, N, K]``. The MLP decoder splits its first layer (``W_m m + W_x x``) so that
    it costs ``M + N`` products instead of ``M N``; the bilinear and linear ones (no ``m_net``:
    ``phi`` the identity) are a matrix product."""
    decoder = params.decoder
    if "x_net" in decoder:
        phi = networks.mlp(decoder["m_net"], m) if "m_net" in decoder else m  # [..., M, Hd]
        psi = networks.mlp(decoder["x_net"], x)  # [..., N, K (Hd + 1)]
        psi = psi.reshape(psi.shape[:-1] + (-1, phi.shape[-1] + 1))  # [..., N, K, Hd + 1]
        out = jnp.einsum("...mh,...nkh->...mnk", phi, psi[..., :-1])
        return out + psi[..., None, :, :, -1]
    pre_m = m @ decoder["m"]
    pre_x = networks.dense(decoder["x"], x)
    h = jax.nn.relu(pre_m[..., :, None, :] + pre_x[..., None, :, :])
    for layer in decoder["hidden"]:
        h = jax.nn.relu(networks.dense(layer, h))
    return networks.dense(decoder["out"], h)


def noise_scale(params: BeliefParams) -> Array:
    """The standard deviation of continuous rewards around the decoded mean: float32 ``[]``,
    ``exp`` of the learned log-scale clipped by :func:`networks.clip_log_scale`."""
    return jnp.exp(networks.clip_log_scale(params.decoder["log_scale"]))


def distribution(params: BeliefParams, outputs: Array, task: Task) -> dist.Distribution:
    """The reward distribution of decoder outputs ``[..., K]`` (batch shape ``[...]``):
    ``Categorical`` over the index into ``task.reward_values``, or ``Normal`` over the value."""
    if task.categorical_rewards:
        return dist.Categorical(logits=outputs)
    return dist.Normal(outputs[..., 0], noise_scale(params))


def reward_targets(task: Task, rewards: Array) -> Array:
    """What :func:`distribution` scores: the index of the nearest reward value (int32
    ``[...]``, categorical rewards) or the rewards themselves (float32 ``[...]``)."""
    if task.categorical_rewards:
        values = jnp.asarray(task.reward_values, jnp.float32)
        return jnp.argmin(jnp.abs(values - rewards[..., None]), axis=-1)
    return rewards


def reward_distribution(params: BeliefParams, m: Array, obs: Array, action: Array,
                        moved_obs: Array, task: Task, config: BeliefConfig) -> dist.Distribution:
    """``p_theta(r | s, a, s', m)`` for one latent and one transition (vmap for more).

    Args:
        m: float32 ``[L]``.
        obs: float32 ``[obs_dim]`` before the move; action: int32 scalar;
        moved_obs: float32 ``[obs_dim]`` of the state moved into.

    Returns:
        ``Categorical`` over the index into ``task.reward_values``, or ``Normal`` over the value.
    """
    x = decoder_inputs(obs, action, moved_obs, task.num_actions, config)
    outputs = decoder_outputs(params, m[None], x[None])[0, 0]
    return distribution(params, outputs, task)


def decoder_log_likelihood(params: BeliefParams, m: Array, trial: TrialBatch, task: Task,
                           config: BeliefConfig) -> Array:
    """``log p(r_s | s_s, a_s, s'_s, m_t)`` for every belief ``t`` and step ``s`` of ONE trial.

    Args:
        m: float32 ``[M, L]`` (e.g. ``M = T + 1`` beliefs).
        trial: one trial (``[T, ...]`` fields).

    Returns:
        float32 ``[M, T]``.
    """
    x = decoder_inputs(trial.obs, trial.actions, trial.moved_obs, task.num_actions, config)
    outputs = decoder_outputs(params, m, x)
    target = reward_targets(task, trial.rewards)
    return distribution(params, outputs, task).log_prob(target[None, :])


def query_inputs(task: Task, states, actions: Array) -> tuple[Array, Array, Array]:
    """Decoder inputs for query transitions: ``states`` (pytree, leading ``[Q]``), ``actions [Q]``
    -> ``(obs [Q, d], actions [Q], moved_obs [Q, d])``."""
    actions = jnp.asarray(actions, jnp.int32)
    obs = jax.vmap(task.observe)(states)
    moved = jax.vmap(lambda s, a: task.observe(task.transition(s, a)))(states, actions)
    return obs, actions, moved


def predictive_rewards(params: BeliefParams, m: Array, queries: tuple[Array, Array, Array],
                       task: Task, config: BeliefConfig) -> Array:
    """The decoder at every (latent sample, query) pair.

    Args:
        m: float32 ``[S, L]`` samples of a belief.
        queries: ``(obs [Q, d], actions [Q], moved_obs [Q, d])`` from :func:`query_inputs`.

    Returns:
        Categorical rewards: probabilities ``[S, Q, K]`` over ``task.reward_values``;
        continuous rewards: the decoder's means ``[S, Q]`` (the noise scale is
        :func:`noise_scale`).
    """
    x = decoder_inputs(*queries, task.num_actions, config)
    outputs = decoder_outputs(params, m, x)
    if task.categorical_rewards:
        return jax.nn.softmax(outputs, axis=-1)
    return outputs[..., 0]
