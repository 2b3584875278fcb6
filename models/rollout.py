"""Run agents on tasks: whole trials in one ``lax.scan``, many trials by ``vmap``."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from varibased.models import task as task_lib
from varibased.models.agent import Agent, Transition
from varibased.models.task import Task

Array = jax.Array

__all__ = ["Trajectory", "run_trial", "run_trials", "episode_returns", "ReturnStats", "evaluate",
           "ENV_AXIS", "shard_envs"]

#: Mesh axis along which :func:`run_trials` splits its trials when such a mesh is current
#: (``jax.sharding.use_abstract_mesh``; see :mod:`inference.sharding`).
ENV_AXIS = "envs"


class Trajectory(NamedTuple):
    """A trial, time-major (``[T, ...]``; ``[B, T, ...]`` after vmap).

    Attributes:
        transitions: the :class:`~models.agent.Transition` of every step.
        info: the agent's per-step ``info`` pytree.
        task_params: the task of the trial (no time axis).
    """

    transitions: Transition
    info: Any
    task_params: Any


def run_trial(rng_key: Array, task: Task, agent: Agent, task_params: Any) -> Trajectory:
    """Run one whole trial of ``task`` with ``agent`` on the given task parameters."""
    init_key, reset_key, scan_key = jax.random.split(rng_key, 3)
    env_state, obs = task_lib.reset(reset_key, task_params, task)
    agent_state = agent.init(init_key, task_params)

    def body(carry, step_key):
        env_state, obs, agent_state = carry
        act_key, env_key = jax.random.split(step_key)
        action, info = agent.act(act_key, agent_state, env_state, obs)
        next_env_state, next_obs, reward, done = task_lib.step(
            env_key, env_state, action, task_params, task
        )
        transition = Transition(env_state, obs, jnp.asarray(action, jnp.int32), reward, done,
                                next_env_state, next_obs)
        agent_state = agent.update(agent_state, transition)
        return (next_env_state, next_obs, agent_state), (transition, info)

    keys = jax.random.split(scan_key, task.trial_length)
    _, (transitions, info) = jax.lax.scan(body, (env_state, obs, agent_state), keys)
    return Trajectory(transitions, info, task_params)


def run_trials(rng_key: Array, task: Task, agent: Agent, num_trials: int,
               task_params: Any | None = None) -> Trajectory:
    """Run ``num_trials`` independent trials (tasks drawn from the prior unless given).

    Args:
        rng_key: the key; task draws and the trials' keys are split from it.
        task: the task definition.
        agent: the agent.
        num_trials: number of trials ``B``.
        task_params: optional batch of tasks with leading axis ``B`` (e.g. held-out tasks).

    Returns:
        A :class:`Trajectory` with leading axis ``B``.
    """
    task_key, run_key = jax.random.split(rng_key)
    if task_params is None:
        task_params = jax.vmap(lambda k: task_lib.sample_task(k, task))(
            jax.random.split(task_key, num_trials)
        )
    keys, task_params = shard_envs((jax.random.split(run_key, num_trials), task_params))
    return jax.vmap(lambda k, p: run_trial(k, task, agent, p))(keys, task_params)


def shard_envs(tree: Any) -> Any:
    """Constrain the leading (trials) axis of every leaf to the current mesh's ``ENV_AXIS``.

    A no-op unless a mesh with that axis is current and divides the leading axis, so the
    single-device program is unchanged. The trials' values do not depend on the sharding.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or ENV_AXIS not in mesh.axis_names:
        return tree
    size = mesh.shape[ENV_AXIS]
    spec = jax.sharding.PartitionSpec(ENV_AXIS)
    return jax.tree.map(
        lambda x: jax.lax.with_sharding_constraint(x, spec) if x.ndim and x.shape[0] % size == 0 else x,
        tree)


def episode_returns(task: Task, rewards: Array) -> Array:
    """Per-episode returns ``[..., num_episodes]`` from rewards ``[..., trial_length]``."""
    shape = rewards.shape[:-1] + (task.num_episodes, task.episode_length)
    return rewards.reshape(shape).sum(-1)


class ReturnStats(NamedTuple):
    """Mean total return per trial, its standard error, and the mean per episode."""

    mean: float
    se: float
    per_episode: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "se": self.se, "per_episode": self.per_episode}


def summarize(task: Task, rewards: Array) -> ReturnStats:
    """Return statistics from rewards ``[B, trial_length]``."""
    rewards = np.asarray(rewards, np.float64)
    totals = rewards.sum(-1)
    se = float(totals.std(ddof=1) / math.sqrt(len(totals))) if len(totals) > 1 else 0.0
    per_episode = episode_returns(task, rewards).mean(0)
    return ReturnStats(float(totals.mean()), se, [float(x) for x in per_episode])


def evaluate(rng_key: Array, task: Task, agent: Agent, num_trials: int,
             task_params: Any | None = None) -> ReturnStats:
    """Mean return of ``agent`` over ``num_trials`` trials (one jit-compiled call)."""
    run = jax.jit(lambda k, p: run_trials(k, task, agent, num_trials, p).transitions.reward)
    return summarize(task, run(rng_key, task_params))
