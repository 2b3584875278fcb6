"""The trainer interface shared by VariBASeD (EM) and RL^2 (PPO).

A trainer is three pure functions and one number, so that the command line, the
benchmarks and the notebooks drive every agent the same way (progress bars, evaluation
protocol, checkpoints, resume)::

    state = trainer.init(rng_key)                       # TrainState (a pytree, carries its key)
    state, metrics = trainer.iteration(state)           # one jitted training iteration
    agent = trainer.agent(state, evaluation=True)       # models.agent.Agent acting with it

``metrics`` is a flat dict of float32 scalars (e.g. ``return``, ``loss``);
``env_steps_per_iteration`` counts the *real* environment steps one iteration consumes.
Everything in ``TrainState`` is arrays, so that it can be checkpointed and resumed exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from varibased.models.agent import Agent

__all__ = ["Trainer"]


class Trainer(NamedTuple):
    """A training algorithm as pure functions (see the module docstring).

    Attributes:
        init: ``rng_key -> TrainState``.
        iteration: ``TrainState -> (TrainState, dict[str, scalar])``, jit-compiled once.
        agent: ``(TrainState, evaluation: bool) -> Agent``; with ``evaluation=True`` it acts
            greedily (argmax), as the evaluation protocol asks.
        env_steps_per_iteration: real environment steps per iteration.
        config: the frozen configuration it was built from.
        params: ``TrainState -> parameters`` (the learned model's, for diagnostics and
            notebooks), or ``None``.
    """

    init: Callable[[jax.Array], Any]
    iteration: Callable[[Any], tuple[Any, dict[str, jax.Array]]]
    agent: Callable[[Any, bool], Agent]
    env_steps_per_iteration: int
    config: Any
    params: Callable[[Any], Any] | None = None
