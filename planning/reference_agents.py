"""Reference agents: the floor (random), the ceiling that knows the task (oracle), and
posterior sampling with the exact belief. All are :class:`~models.agent.Agent` values,
jit- and vmap-able, for any task that provides the needed fields."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from varibased.models.agent import Agent, Transition
from varibased.models.task import Task

Array = jax.Array

__all__ = ["random_agent", "oracle_agent", "posterior_sampling_agent", "PosteriorSamplingState"]


def _no_update(agent_state: Any, transition: Transition) -> Any:
    del transition
    return agent_state


def random_agent(task: Task) -> Agent:
    """Uniformly random actions."""

    def act(rng_key, agent_state, env_state, obs):
        del agent_state, env_state, obs
        return jax.random.randint(rng_key, (), 0, task.num_actions), ()

    return Agent(init=lambda rng_key, task_params: (), act=act, update=_no_update)


def oracle_agent(task: Task) -> Agent:
    """Acts optimally for the *true* task (it reads the task parameters at ``init``)."""
    task.require("oracle_action")

    def act(rng_key, task_params, env_state, obs):
        del obs
        return task.oracle_action(rng_key, task_params, env_state.state, env_state.t), ()

    return Agent(init=lambda rng_key, task_params: task_params, act=act, update=_no_update)


class PosteriorSamplingState(NamedTuple):
    """State of the posterior-sampling agent.

    Attributes:
        belief: the exact posterior (the task's sufficient statistics).
        sample: the task it currently acts for.
        rng_key: key for the next draws.
    """

    belief: Any
    sample: Any
    rng_key: Array


def posterior_sampling_agent(task: Task) -> Agent:
    """Posterior (Thompson) sampling with the exact belief.

    Draws a task from the exact posterior at the start of the trial, then again at every
    step (``task.thompson_resample == "step"``) or at every episode start
    (``"episode"``), and whenever the current sample has been ruled out by the history
    (``belief_log_prob == -inf``); acts optimally for the sample (``oracle_action``).
    """
    task.require("belief_init", "belief_update", "belief_sample", "oracle_action")
    every_step = task.thompson_resample == "step"

    def init(rng_key, task_params):
        del task_params
        draw_key, rng_key = jax.random.split(rng_key)
        belief = task.belief_init()
        return PosteriorSamplingState(belief, task.belief_sample(draw_key, belief), rng_key)

    def act(rng_key, agent_state, env_state, obs):
        del obs
        return task.oracle_action(rng_key, agent_state.sample, env_state.state, env_state.t), ()

    def update(agent_state, transition):
        belief = task.belief_update(
            agent_state.belief, transition.env_state.state, transition.action, transition.reward
        )
        draw_key, rng_key = jax.random.split(agent_state.rng_key)
        resample = jnp.asarray(every_step) | (transition.done == 1)
        if task.belief_log_prob is not None and not every_step:
            resample = resample | ~jnp.isfinite(task.belief_log_prob(belief, agent_state.sample))
        fresh = task.belief_sample(draw_key, belief)
        sample = jax.tree.map(lambda new, old: jnp.where(resample, new, old), fresh, agent_state.sample)
        return PosteriorSamplingState(belief, sample, rng_key)

    return Agent(init=init, act=act, update=update)
