"""The agent interface shared by reference agents, planners and learned agents.

An agent is a pair of pure functions over its own state, written for one trial
(vmap over trials at the boundary):

* ``init(rng_key, task_params) -> AgentState`` at the start of a trial. Only *oracle*
  reference agents may look at ``task_params``; every other agent must ignore it.
* ``act(rng_key, agent_state, env_state, obs) -> (action, info)``: an int32 action and a
  pytree of per-step diagnostics (e.g. the planner's improved policy), possibly ``()``.
  ``env_state`` is the known, task-independent state (position, trial step), observable by
  every agent in these tasks.
* ``update(agent_state, transition) -> AgentState`` after each real step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from varibased.models.task import EnvState

Array = jax.Array
AgentState = Any

__all__ = ["Agent", "Transition", "argmax_random_ties"]


class Transition(NamedTuple):
    """One real step of a trial (for one trial; stacked time-major by the rollout).

    Attributes:
        env_state: the state the action was taken in.
        obs: float32 ``[obs_dim]``, its observation.
        action: int32 scalar.
        reward: float32 scalar.
        done: int32 scalar, 1 after the last step of an episode.
        next_env_state: the next state (the next episode's start when ``done``).
        next_obs: float32 ``[obs_dim]``.
    """

    env_state: EnvState
    obs: Array
    action: Array
    reward: Array
    done: Array
    next_env_state: EnvState
    next_obs: Array


class Agent(NamedTuple):
    """An agent as ``init`` / ``act`` / ``update`` pure functions (see the module docstring)."""

    init: Callable[[Array, Any], AgentState]
    act: Callable[[Array, AgentState, EnvState, Array], tuple[Array, Any]]
    update: Callable[[AgentState, Transition], AgentState]


def argmax_random_ties(rng_key: Array, values: Array) -> Array:
    """An index of a maximum of ``values`` ``[n]``, uniformly at random among ties (int32)."""
    best = values >= jnp.max(values)
    return jax.random.categorical(rng_key, jnp.where(best, 0.0, -jnp.inf)).astype(jnp.int32)
