"""The learned planning model: the Belief-SMC planner inside the S5 variational belief.

A :class:`~planning.model.PlanningModel` (the planner cannot tell it from the exact one)
built from the parameters of :mod:`models.belief`:

* node: the S5 carry and features of a history ``h`` (real or imagined), the known task
  state and the trial step ``t``;
* ``sample_tasks``: ``K_omega`` latents ``m_j ~ q_phi(m | h)`` from the guide family of
  :mod:`models.guides` (the node carries the family's incremental state along its history:
  nothing for the diagonal guide, the summed natural parameters for ``"factors"``);
* ``simulate``: pick ``j`` uniformly and draw the reward from ``p_theta(r | s, a, s', m_j)``
  (a draw from the ``K_omega``-mixture predictive; only ``m_j`` is decoded), or the
  mixture's mean reward;
* ``advance``: the known transition (with episode resets) and one S5 step on the imagined
  input ``(o', onehot(a), r, done)`` -- the belief update inside imagination that lets
  the plan value information; with ``update_belief=False`` the carry stays the root's;
* ``policy_logits`` / ``value``: the policy and value heads on the S5 features;
* ``outcomes`` (categorical rewards): the mixture predictive over the reward values.
After the trial's end imagined steps are no-ops (reward 0, value 0).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from varibased.models import belief as belief_lib
from varibased.models import decoder as decoder_lib
from varibased.models import guides, history
from varibased.models.agent import Transition
from varibased.models.belief import BeliefConfig, BeliefParams
from varibased.models.task import Task
from varibased.planning.model import PlanningModel

Array = jax.Array

__all__ = ["LearnedNode", "learned_model"]


class LearnedNode(NamedTuple):
    """A node of the learned model.

    Attributes:
        carry: the S5 carry after the history's last input.
        features: float32 ``[H]``, the S5 features of the history.
        state: the known task state at step ``t``.
        t: int32 scalar trial step.
        guide_state: the guide family's incremental state after every step of the history,
            real and imagined (:attr:`models.guides.GuideFamily.update_state`): ``()`` for the
            diagonal guide, ``(precision [L, L], eta [L])`` for ``"factors"``.
    """

    carry: Any
    features: Array
    state: Any
    t: Array
    guide_state: Any = ()


def learned_model(task: Task, config: BeliefConfig, params: BeliefParams) -> PlanningModel:
    """The planning model of the learned belief with parameters ``params``.

    Build it inside the jitted function that uses it (``params`` are traced values).
    """
    num_actions = task.num_actions
    trial_length, episode_length = task.trial_length, task.episode_length
    values = jnp.asarray(task.reward_values, jnp.float32) if task.categorical_rewards else None

    family = guides.family(config)

    def encode(carry, obs, action, reward, done, t):
        x = history.history_input(obs, action, reward, done, num_actions, t, trial_length)
        return history.encoder_step(params, carry, x)

    def add_step(guide_state, features):
        return family.update_state(params, guide_state, features, config)

    def init(rng_key: Array) -> LearnedNode:
        del rng_key
        carry, features, _, _ = belief_lib.prior_belief(params, task, config)
        guide_state = add_step(family.init_state(config), features)
        return LearnedNode(carry, features, task.initial_state(), jnp.zeros((), jnp.int32), guide_state)

    def update(node: LearnedNode, transition: Transition) -> LearnedNode:
        nxt = transition.next_env_state
        carry, features = encode(node.carry, transition.next_obs, transition.action,
                                 transition.reward, transition.done, nxt.t)
        return LearnedNode(carry, features, nxt.state, jnp.asarray(nxt.t, jnp.int32),
                           add_step(node.guide_state, features))

    def sample_tasks(rng_key: Array, node: LearnedNode, num: int) -> Array:
        return family.sample_state(rng_key, params, node.guide_state, node.features, num)

    def simulate(rng_key: Array, node: LearnedNode, action: Array, omegas: Array, expected: bool):
        pick_key, draw_key = jax.random.split(rng_key)
        moved = task.transition(node.state, action)
        queries = (task.observe(node.state)[None], jnp.asarray(action, jnp.int32)[None],
                   task.observe(moved)[None])
        j = jax.random.randint(pick_key, (), 0, omegas.shape[0])
        # A draw needs the picked task only: decode the K_omega tasks for the mean alone.
        decoded = omegas if expected else omegas[j][None]
        predictive = decoder_lib.predictive_rewards(params, decoded, queries, task, config)[:, 0]
        picked = predictive[j] if expected else predictive[0]
        if values is not None:  # predictive: probabilities [K_omega or 1, num_values]
            sampled = values[jax.random.categorical(draw_key, jnp.log(picked + 1e-12))]
            mean_reward = (predictive @ values).mean()
        else:  # predictive: means [K_omega or 1]; the decoder's noise scale is shared
            sampled = picked + decoder_lib.noise_scale(params) * jax.random.normal(draw_key)
            mean_reward = predictive.mean()
        reward = mean_reward if expected else sampled
        live = node.t < trial_length
        return jnp.where(live, reward, 0.0).astype(jnp.float32), sampled.astype(jnp.float32)

    def outcomes(node: LearnedNode, action: Array, omegas: Array) -> tuple[Array, Array]:
        moved = task.transition(node.state, action)
        queries = (task.observe(node.state)[None], jnp.asarray(action, jnp.int32)[None],
                   task.observe(moved)[None])
        probs = decoder_lib.predictive_rewards(params, omegas, queries, task, config)[:, 0].mean(0)
        return jnp.where(node.t < trial_length, values, 0.0), probs.astype(jnp.float32)

    def advance(node: LearnedNode, action: Array, outcome: Array, update_belief: bool) -> LearnedNode:
        moved = task.transition(node.state, action)
        t = node.t + 1
        done = (t % episode_length) == 0
        state = jax.tree.map(lambda s, m: jnp.where(done, s, m), task.initial_state(), moved)
        if update_belief:
            carry, features = encode(node.carry, task.observe(state), action, outcome,
                                     done.astype(jnp.int32), t)
            guide_state = add_step(node.guide_state, features)
        else:
            carry, features, guide_state = node.carry, node.features, node.guide_state
        nxt = LearnedNode(carry, features, state, t, guide_state)
        live = node.t < trial_length
        return jax.tree.map(lambda n, o: jnp.where(live, n, o), nxt, node)

    def policy_logits(node: LearnedNode) -> Array:
        return belief_lib.policy_logits(params, node.features)

    def value(node: LearnedNode, omegas: Array) -> Array:
        del omegas
        v = belief_lib.value(params, node.features, config)
        return jnp.where(node.t < trial_length, v, 0.0).astype(jnp.float32)

    return PlanningModel(
        num_actions=num_actions, init=init, update=update, sample_tasks=sample_tasks,
        simulate=simulate, advance=advance, policy_logits=policy_logits, value=value,
        outcomes=outcomes if values is not None else None, value_reads_tasks=False,
    )
