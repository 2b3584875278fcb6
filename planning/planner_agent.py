"""The Belief-SMC planner as an :class:`~models.agent.Agent`, and whole trials with it.

The agent's state is the model's node of the real history; ``act`` plans from it
(:func:`planning.smc.plan`) and picks the real action from the improved policy;
``update`` conditions the node on the real transition (``model.update``). The per-step
``info`` holds the planner targets (improved policy, value estimate) and diagnostics, so
:func:`planning.rollout.run_trials` returns trajectories, targets and Info together::

    model = exact_model(registry.make("gridworld"))
    config = PlannerConfig(num_particles=64, num_nested=4, depth=4)
    trajectory = run_planner_trials(jax.random.key(0), task, model, config, num_trials=64)
    trajectory.info.policy   # [B, T, A] E-step targets
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax

from varibased.models import rollout
from varibased.models.agent import Agent, Transition
from varibased.models.task import Task
from varibased.planning import smc
from varibased.planning.config import PlannerConfig
from varibased.planning.model import PlanningModel

Array = jax.Array

__all__ = ["PlannerInfo", "make_planner_agent", "run_planner_trials"]


class PlannerInfo(NamedTuple):
    """Per-real-step output of the planner agent (``[B, T, ...]`` after a rollout).

    Attributes:
        policy: float32 ``[A]``, the improved policy (the E-step target).
        value: float32, the planner's value estimate.
        root_value: float32, ``V(h_0)`` of the real history.
        log_normalizer: float32, the SMC log normalizer estimate.
        ess: float32 ``[D]``, ESS at the start of each depth.
        resampled: bool ``[D]``, resampling events.
        smc: the full :class:`~planning.smc.SMCInfo` ``[D, ...]`` (weights, ancestors,
            imagined actions and rewards) if ``detailed_info``, else ``()``.
    """

    policy: Array
    value: Array
    root_value: Array
    log_normalizer: Array
    ess: Array
    resampled: Array
    smc: Any


def make_planner_agent(model: PlanningModel, config: PlannerConfig, *,
                       detailed_info: bool = False) -> Agent:
    """The planner in the loop, as an agent (for one trial; vmap at the boundary).

    Args:
        model: the :class:`~planning.model.PlanningModel` (exact or learned).
        config: the :class:`~planning.config.PlannerConfig`; ``action_selection`` picks
            argmax (evaluation) or sampling (training).
        detailed_info: also return the per-particle :class:`~planning.smc.SMCInfo`
            (``K`` floats per depth per step: large for big batches).

    Returns:
        An :class:`~models.agent.Agent` whose state is the model's node.
    """
    if not isinstance(config, PlannerConfig):
        raise TypeError(f"make_planner_agent: config must be a PlannerConfig, got {config!r}")

    def init(rng_key: Array, task_params: Any):
        del task_params  # the planner never sees the task
        return model.init(rng_key)

    def act(rng_key: Array, node: Any, env_state: Any, obs: Array):
        del env_state, obs  # the node already holds the known state
        plan_key, select_key = jax.random.split(rng_key)
        result = smc.plan(plan_key, model, node, config)
        action = smc.select_action(select_key, result.policy, config.action_selection)
        info = PlannerInfo(
            policy=result.policy,
            value=result.value,
            root_value=result.root_value,
            log_normalizer=result.log_normalizer,
            ess=result.info.ess,
            resampled=result.info.resampled,
            smc=result.info if detailed_info else (),
        )
        return action, info

    def update(node: Any, transition: Transition):
        return model.update(node, transition)

    return Agent(init=init, act=act, update=update)


@functools.partial(jax.jit, static_argnames=("task", "model", "config", "num_trials",
                                             "detailed_info"))
def run_planner_trials(rng_key: Array, task: Task, model: PlanningModel, config: PlannerConfig,
                       num_trials: int, task_params: Any = None, *,
                       detailed_info: bool = False) -> rollout.Trajectory:
    """Run ``num_trials`` whole trials with the planner in the loop (one jitted call).

    vmap over environments, ``lax.scan`` over the trial's steps, the planner's
    ``lax.scan`` over depths inside each step. Compiled once per (task, model, config,
    num_trials).

    Args:
        rng_key: a key.
        task: the task (static; hashed by identity).
        model: the planning model (static; hashed by its functions' identities).
        config: the planner configuration (static).
        num_trials: ``B``.
        task_params: optional tasks with leading axis ``B`` (else drawn from the prior).
        detailed_info: see :func:`make_planner_agent`.

    Returns:
        A :class:`~planning.rollout.Trajectory` ``[B, T, ...]`` whose ``info`` is a
        :class:`PlannerInfo`.
    """
    agent = make_planner_agent(model, config, detailed_info=detailed_info)
    return rollout.run_trials(rng_key, task, agent, num_trials, task_params)
