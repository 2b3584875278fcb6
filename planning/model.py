"""The planning-model interface the Belief-SMC planner consumes, and the exact task model.

The planner (:mod:`planning.smc`) never looks inside a model: it sees a
:class:`PlanningModel`, a NamedTuple of pure functions over a *node* (the planner's belief
state of one history: for the exact model the exact posterior plus the known state and
trial step, for the learned model an S5 carry with the last observation). Every function
is written for ONE node; the planner vmaps over particles, the agent over environments.

========================  ==============================================================
field                     signature and meaning
========================  ==============================================================
``num_actions``           int, size of the discrete action space ``A``.
``init``                  ``(rng_key) -> node``: the root at the start of a trial (the
                          prior belief, the initial state, ``t = 0``).
``update``                ``(node, transition) -> node``: condition on one REAL step
                          (a :class:`planning.agent.Transition`, no batch axes).
``sample_tasks``          ``(rng_key, node, num) -> omegas``: ``num`` nested task
                          particles from the node's current belief (pytree, leading axis
                          ``num``; ``num`` is a static Python int).
``simulate``              ``(rng_key, node, action, omegas, expected) -> (reward,
                          outcome)``: an imagined transition from the ``K_omega``-mixture
                          predictive ``(1/K_omega) sum_j p(. | node, action, omega_j)``.
                          ``reward`` (float32 scalar) enters the planner's weight:
                          a draw from the mixture, or its mean when ``expected`` (a static
                          bool) is true. ``outcome`` (pytree) is what ``advance``
                          conditions on; it is always a draw from the mixture, so the
                          imagined belief stays consistent.
``advance``               ``(node, action, outcome, update_belief) -> node``: the node after
                          the imagined transition (known dynamics, episode resets); with
                          ``update_belief=False`` (static bool) the belief is left as it
                          was (the "no belief update in imagination" ablation).
``policy_logits``         ``(node) -> float32[A]``: the policy prior (the proposal).
``value``                 ``(node, omegas) -> float32``: ``V(h)``, the twisting function;
                          may use the nested particles drawn from the same node.
``outcomes``              optional (``None`` if rewards are continuous): ``(node, action,
                          omegas) -> (rewards float32[O], probs float32[O])``, every
                          outcome of the imagined transition (its reward value, also what
                          ``advance`` conditions on) and its mixture-predictive
                          probability; used by ``outcome="enumerate"``.
========================  ==============================================================

After the end of the trial (``t >= trial_length``) a model must make imagined steps
no-ops: reward 0, node unchanged, value 0. The exact model does so; the learned model
should too (it knows ``t``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from varibased.models.agent import Transition
from varibased.models.task import Task, TaskError

Array = jax.Array
Node = Any
Omegas = Any

__all__ = ["PlanningModel", "ExactNode", "exact_model", "enumerate_prior_support", "VALUES"]

#: The value functions of the exact model.
VALUES = ("qmdp", "qmdp_nested", "zero")
#: Largest prior support :func:`enumerate_prior_support` enumerates.
MAX_SUPPORT = 4096


class PlanningModel(NamedTuple):
    """A model the planner runs on (see the module docstring for every signature)."""

    num_actions: int
    init: Callable[[Array], Node]
    update: Callable[[Node, Transition], Node]
    sample_tasks: Callable[[Array, Node, int], Omegas]
    simulate: Callable[[Array, Node, Array, Omegas, bool], tuple[Array, Any]]
    advance: Callable[[Node, Array, Any, bool], Node]
    policy_logits: Callable[[Node], Array]
    value: Callable[[Node, Omegas], Array]
    outcomes: Callable[[Node, Array, Omegas], tuple[Array, Array]] | None = None
    #: whether ``value`` reads the nested tasks (if not, PlannerConfig.nested_draws='used' applies)
    value_reads_tasks: bool = True


class ExactNode(NamedTuple):
    """The exact model's node for one history.

    Attributes:
        belief: the task's exact posterior (its ``Belief`` pytree).
        state: the known task state at trial step ``t`` (its ``State`` pytree).
        t: int32 scalar trial step.
    """

    belief: Any
    state: Any
    t: Array


def _reward_mean(task: Task, distribution) -> Array:
    """Mean reward VALUE of a reward distribution (categorical index or value)."""
    if task.categorical_rewards:
        values = jnp.asarray(task.reward_values, jnp.float32)
        probs = jnp.exp(distribution.log_prob(jnp.arange(values.shape[0])))
        return jnp.dot(probs, values)
    return jnp.asarray(distribution.mean, jnp.float32)


def _reward_value(task: Task, draw: Array) -> Array:
    if task.categorical_rewards:
        return jnp.asarray(task.reward_values, jnp.float32)[draw]
    return jnp.asarray(draw, jnp.float32)


def enumerate_prior_support(task: Task, max_size: int = MAX_SUPPORT) -> Any | None:
    """Every task of a finitely enumerable prior, or ``None``.

    The prior's sample sites must all be discrete with ``has_enumerate_support`` and
    scalar (batch and event shape ``()``), and their product no larger than ``max_size``;
    the tasks are the prior's return values with the sites substituted.

    Returns:
        A ``TaskParams`` pytree with a leading axis ``N`` (the product of the site supports),
        or ``None`` when the prior is continuous or too large.
    """
    trace = numpyro.handlers.trace(numpyro.handlers.seed(task.prior, 0)).get_trace()
    names, supports = [], []
    for name, site in trace.items():
        if site["type"] != "sample" or site.get("is_observed", False):
            continue
        fn = site["fn"]
        if not getattr(fn, "has_enumerate_support", False) or fn.shape() != ():
            return None
        names.append(name)
        supports.append(np.asarray(fn.enumerate_support(expand=False)).reshape(-1))
    if not names or math.prod(len(s) for s in supports) > max_size:
        return None
    grid = np.array(list(itertools.product(*supports)))  # [N, num_sites]

    def substituted(values):
        data = {name: values[i].astype(supports[i].dtype) for i, name in enumerate(names)}
        return numpyro.handlers.substitute(numpyro.handlers.seed(task.prior, 0), data=data)()

    return jax.vmap(substituted)(jnp.asarray(grid))


def exact_model(task: Task, value: str = "qmdp") -> PlanningModel:
    """The exact planning model of a task: exact posterior, true dynamics, uniform prior.

    Args:
        task: a task with an exact belief (``belief_init``, ``belief_update``,
            ``belief_sample``); ``value="qmdp"`` also needs ``optimal_value``.
        value: ``"qmdp"``: ``V(h) = E_{omega ~ b(h)}[V*(omega, s, t)]``, the posterior
            expectation of the known-task optimal value, computed EXACTLY as
            ``sum_n b(omega_n) V*(omega_n, s, t)`` when the prior's support is finite and
            small (:func:`enumerate_prior_support`; needs ``belief_log_prob``), else as
            ``"qmdp_nested"``; ``"qmdp_nested"``: the Monte Carlo mean over the nested
            particles, ``(1/K_omega) sum_j V*(omega_j, s, t)`` (noisy: the noise, divided by
            alpha, enters the weights); ``"zero"``: ``V = 0`` (no twisting).

    Returns:
        A :class:`PlanningModel` whose nodes are :class:`ExactNode`. Outcomes are reward
        values (float32 scalars): the state transition is known.

    Raises:
        TaskError: if the task lacks a field this model needs; ValueError for an unknown
            ``value``.
    """
    if value not in VALUES:
        raise ValueError(f"exact_model: unknown value {value!r}; choose one of {', '.join(VALUES)}")
    if not isinstance(task, Task):
        raise TaskError(f"exact_model needs a models.task.Task, got {type(task).__name__}")
    task.require("belief_init", "belief_update", "belief_sample")
    if value != "zero":
        task.require("optimal_value")
    support = None
    if value == "qmdp" and task.belief_log_prob is not None:
        support = enumerate_prior_support(task)
    trial_length = task.trial_length
    episode_length = task.episode_length

    def init(rng_key: Array) -> ExactNode:
        del rng_key
        return ExactNode(task.belief_init(), task.initial_state(), jnp.zeros((), jnp.int32))

    def update(node: ExactNode, transition: Transition) -> ExactNode:
        belief = task.belief_update(
            node.belief, transition.env_state.state, transition.action, transition.reward
        )
        nxt = transition.next_env_state
        return ExactNode(belief, nxt.state, jnp.asarray(nxt.t, jnp.int32))

    def sample_tasks(rng_key: Array, node: ExactNode, num: int) -> Any:
        keys = jax.random.split(rng_key, num)
        return jax.vmap(task.belief_sample, in_axes=(0, None))(keys, node.belief)

    def simulate(rng_key: Array, node: ExactNode, action: Array, omegas: Any, expected: bool):
        pick_key, draw_key = jax.random.split(rng_key)
        num = jax.tree.leaves(omegas)[0].shape[0]
        moved = task.transition(node.state, action)
        j = jax.random.randint(pick_key, (), 0, num)
        omega = jax.tree.map(lambda x: x[j], omegas)
        draw = task.reward_distribution(omega, node.state, action, moved).sample(draw_key)
        sampled = _reward_value(task, draw)
        if expected:
            means = jax.vmap(
                lambda o: _reward_mean(task, task.reward_distribution(o, node.state, action, moved))
            )(omegas)
            reward = means.mean()
        else:
            reward = sampled
        live = node.t < trial_length
        return jnp.where(live, reward, 0.0).astype(jnp.float32), sampled

    def outcomes(node: ExactNode, action: Array, omegas: Any) -> tuple[Array, Array]:
        moved = task.transition(node.state, action)
        values = jnp.asarray(task.reward_values, jnp.float32)
        index = jnp.arange(values.shape[0])
        probs = jax.vmap(lambda o: jnp.exp(
            task.reward_distribution(o, node.state, action, moved).log_prob(index)))(omegas).mean(0)
        live = node.t < trial_length
        return jnp.where(live, values, 0.0), probs.astype(jnp.float32)

    def advance(node: ExactNode, action: Array, outcome: Array, update_belief: bool) -> ExactNode:
        moved = task.transition(node.state, action)
        t = node.t + 1
        done = (t % episode_length) == 0
        state = jax.tree.map(lambda s, m: jnp.where(done, s, m), task.initial_state(), moved)
        belief = (
            task.belief_update(node.belief, node.state, action, outcome)
            if update_belief
            else node.belief
        )
        nxt = ExactNode(belief, state, t)
        live = node.t < trial_length
        return jax.tree.map(lambda n, o: jnp.where(live, n, o), nxt, node)

    def policy_logits(node: ExactNode) -> Array:
        del node
        return jnp.zeros((task.num_actions,), jnp.float32)

    def value_fn(node: ExactNode, omegas: Any) -> Array:
        if value == "zero":
            return jnp.zeros((), jnp.float32)
        if support is None:
            values = jax.vmap(task.optimal_value, in_axes=(0, None, None))(
                omegas, node.state, node.t
            )
            estimate = values.mean()
        else:
            values = jax.vmap(task.optimal_value, in_axes=(0, None, None))(
                support, node.state, node.t
            )
            log_probs = jax.vmap(task.belief_log_prob, in_axes=(None, 0))(node.belief, support)
            estimate = jnp.sum(jax.nn.softmax(log_probs) * values)
        return jnp.where(node.t < trial_length, estimate, 0.0).astype(jnp.float32)

    return PlanningModel(
        num_actions=task.num_actions,
        init=init,
        update=update,
        sample_tasks=sample_tasks,
        simulate=simulate,
        advance=advance,
        policy_logits=policy_logits,
        value=value_fn,
        outcomes=outcomes if task.categorical_rewards else None,
    )
