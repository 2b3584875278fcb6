r"""The Belief-SMC planner: planning as inference over action trajectories.

From the root node ``h_0`` (the real history's belief state) the planner runs a
Feynman-Kac particle system over ``D`` imagined steps with ``K`` particles. At every depth
``d = 1..D`` each particle ``i`` (resample, then mutate, then reweight, as in blackjax):

1. holds ``K_omega`` nested task particles ``omega_ij`` drawn afresh from its CURRENT
   belief (they are drawn when the particle arrives at its node and serve both the value
   of that node and the next simulation; never carried past one step);
2. proposes ``a ~ pi(a | h_i)`` (the model's policy prior);
3. simulates the reward from the mixture predictive ``(1/K_omega) sum_j p(r | h_i, a,
   omega_ij)`` (a draw by default, the mixture mean with ``outcome="expected"``);
4. advances its node on the imagined transition (belief update inside imagination,
   unless ``belief_update_in_imagination=False``);
5. multiplies its weight by the twisted potential

   .. math::

       \log w_i \mathrel{+}= \gamma^{d-1}\,\bigl(r_d + \gamma V(h_d) - V(h_{d-1})\bigr) / \alpha,

   so that after ``D`` steps (between resampling events the increments telescope)
   ``log w_i = (\sum_d \gamma^{d-1} r_d + \gamma^D V(h_D) - V(h_0)) / alpha``: the target is
   the policy prior tilted by ``exp(return / alpha)``. ``V(h_0)`` is the same for every
   particle (estimated once from all ``K * K_omega`` root draws). No extra nested-particle
   correction term enters the weights.

   With ``outcome="enumerate"`` (categorical rewards) the increment's target
   ``r_d + gamma V(h_d)`` is replaced by its expectation over nature's outcomes,

   .. math::

       \sum_o \bar p(o \mid h_{d-1}, a_d)\,\bigl(r_o + \gamma V(h_d^{(o)})\bigr),

   each ``h_d^{(o)}`` the history updated on outcome ``o``; the particle then continues from
   a drawn outcome. Exponentiating a *sampled* outcome is risk-seeking (a soft-max over
   nature's moves: large ``K`` selects lucky imaginations); the expectation is risk-neutral
   towards nature, the tilt then applies to the agent's own actions only.

Resampling (``blackjax.smc.resampling``, systematic by default) happens at the start of a
step when the effective sample size of the current weights is below
``ess_threshold * K``; the weights are never resampled after the last step, so the output
uses the final weights. Output (:func:`plan`): the improved policy
``pi_hat(a) = sum_i W_i 1[a_{i,1} = a]`` (the weighted marginal of first actions, the
E-step target) and the value estimate ``sum_i W_i (sum_d gamma^{d-1} r_{i,d} + gamma^D
V(h_{i,D}))``.

The planner is blackjax-style: :func:`init` and :func:`build_kernel` (whose ``step`` is
``(rng_key, state) -> (state, info)``) over NamedTuple state, with diagnostics in a
separate :class:`SMCInfo`. Particles are any pytree with a leading particle axis and are
resampled by ``jax.tree.map(lambda x: x[idx], particles)``. Everything here is for ONE
root (one environment): vmap over environments outside. Nothing is jitted here; callers
jit with the configuration static (it is hashable).

Cost per planning call: ``K * D`` policy, simulate, advance and resampling operations and
``K * K_omega * D`` nested draws and value evaluations, i.e. linear in each of K, K_omega
and D.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax.smc.ess as smc_ess
import blackjax.smc.resampling as smc_resampling
import jax
import jax.numpy as jnp

from varibased.planning import targets
from varibased.planning.config import PlannerConfig
from varibased.planning.model import PlanningModel

Array = jax.Array

__all__ = [
    "Particles",
    "SMCState",
    "SMCInfo",
    "PlanResult",
    "init",
    "build_kernel",
    "plan",
    "resample",
    "improved_policy",
    "select_action",
]


class Particles(NamedTuple):
    """The particle system (every leaf has a leading axis ``K``).

    Attributes:
        node: the model's node of each particle's imagined history.
        omegas: ``[K, K_omega, ...]`` nested task particles drawn from each node's belief.
        value: float32 ``[K]``, ``V(node)`` estimated with ``omegas``.
        first_action: int32 ``[K]``, the first imagined action (-1 before the first step).
        ret: float32 ``[K]``, the discounted imagined return so far.
    """

    node: Any
    omegas: Any
    value: Array
    first_action: Array
    ret: Array


class SMCState(NamedTuple):
    """State of the planner between depths.

    Attributes:
        particles: the :class:`Particles`.
        log_weights: float32 ``[K]``, log weights (normalized before the last increment).
        depth: int32 scalar, imagined steps taken so far.
    """

    particles: Particles
    log_weights: Array
    depth: Array


class SMCInfo(NamedTuple):
    """Diagnostics of one depth (stacked ``[D, ...]`` by :func:`plan`).

    Attributes:
        ess: float32, effective sample size of the weights the step started from.
        resampled: bool, whether the step resampled.
        ancestors: int32 ``[K]``, the parent of each particle (``arange(K)`` if none).
        weights: float32 ``[K]``, normalized weights after the step's reweighting.
        log_normalizer_increment: float32, ``log sum_i W_i^{prev} exp(increment_i)``.
        actions: int32 ``[K]``, the imagined actions of this depth.
        rewards: float32 ``[K]``, the imagined rewards of this depth.
        first_actions: int32 ``[K]``, each particle's first action after this depth.
        estimates: float32 ``[K]``, each particle's bootstrapped return after this depth,
            ``sum_{d' <= d} gamma^{d'-1} r_{d'} + gamma^d V(h_d)``.
    """

    ess: Array
    resampled: Array
    ancestors: Array
    weights: Array
    log_normalizer_increment: Array
    actions: Array
    rewards: Array
    first_actions: Array
    estimates: Array


class PlanResult(NamedTuple):
    """Output of :func:`plan` for one root.

    Attributes:
        policy: float32 ``[A]``, the improved policy over first actions (sums to 1).
        value: float32, the weighted bootstrapped imagined return.
        log_normalizer: float32, ``sum_d log_normalizer_increment`` (so that
            ``alpha * log_normalizer + V(h_0)`` is a soft value estimate).
        root_value: float32, ``V(h_0)``.
        info: :class:`SMCInfo` stacked over depths ``[D, ...]``.
    """

    policy: Array
    value: Array
    log_normalizer: Array
    root_value: Array
    info: SMCInfo


def resample(rng_key: Array, log_weights: Array, num_samples: int,
             scheme: str = "systematic") -> Array:
    """Ancestor indices from (unnormalized) log weights with a blackjax scheme.

    blackjax's resampling functions take NORMALIZED weights and do not check them; this
    normalizes first.

    Args:
        rng_key: a key.
        log_weights: float32 ``[K]``.
        num_samples: number of indices to draw (static).
        scheme: one of ``planning.config.RESAMPLING_SCHEMES``.

    Returns:
        int32 ``[num_samples]`` indices into ``[0, K)``.
    """
    weights = jax.nn.softmax(log_weights)
    return getattr(smc_resampling, scheme)(rng_key, weights, num_samples).astype(jnp.int32)


def _broadcast(tree: Any, num: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + jnp.shape(x)), tree)


def _nested_draws(model: PlanningModel, config: PlannerConfig) -> int:
    """Nested tasks drawn per particle and depth: ``K_omega``, or 1 with
    ``nested_draws='used'`` (the one the next sampled outcome reads)."""
    if config.nested_draws == "all":
        return config.num_nested
    if model.value_reads_tasks:
        raise ValueError("PlannerConfig.nested_draws='used' needs a model whose value does not read "
                         "the nested tasks (e.g. the learned model); this one's does: use 'all'")
    return 1


def init(rng_key: Array, model: PlanningModel, root: Any, config: PlannerConfig) -> SMCState:
    """K copies of the root, each with its own ``K_omega`` nested particles; uniform weights.

    Args:
        rng_key: a key.
        model: the :class:`~planning.model.PlanningModel`.
        root: the root node (no particle axis).
        config: the :class:`~planning.config.PlannerConfig`.
    """
    num = config.num_particles
    keys = jax.random.split(rng_key, num)
    omegas = jax.vmap(model.sample_tasks, in_axes=(0, None, None))(keys, root, _nested_draws(model, config))
    values = jax.vmap(model.value, in_axes=(None, 0))(root, omegas)
    root_value = jnp.broadcast_to(values.mean(), (num,)).astype(jnp.float32)
    particles = Particles(
        node=_broadcast(root, num),
        omegas=omegas,
        value=root_value,
        first_action=jnp.full((num,), -1, jnp.int32),
        ret=jnp.zeros((num,), jnp.float32),
    )
    return SMCState(particles, jnp.full((num,), -jnp.log(num), jnp.float32),
                    jnp.zeros((), jnp.int32))


def build_kernel(model: PlanningModel, config: PlannerConfig) -> Callable:
    """The planner's step ``(rng_key, state) -> (state, info)``: resample, mutate, reweight.

    Args:
        model: the :class:`~planning.model.PlanningModel`.
        config: the :class:`~planning.config.PlannerConfig` (static).

    Returns:
        ``step(rng_key, SMCState) -> (SMCState, SMCInfo)`` for one root.
    """
    num = config.num_particles
    expected = config.outcome == "expected"
    enumerate_outcomes = config.outcome == "enumerate"
    if enumerate_outcomes and model.outcomes is None:
        raise ValueError("PlannerConfig.outcome='enumerate' needs a model that enumerates its "
                         "outcomes (a task with categorical rewards, reward_values); this "
                         "model's rewards are continuous: use 'sample' or 'expected'")
    update_belief = config.belief_update_in_imagination
    stratified = config.root_actions == "stratified"
    num_draws = _nested_draws(model, config)

    def root_assignment(rng_key: Array) -> tuple[Array, Array]:
        """Stratified first actions ``[K]`` and the log of their proposal probability."""
        A = model.num_actions
        perm = jax.random.permutation(rng_key, A)
        actions = perm[jnp.arange(num) % A].astype(jnp.int32)
        counts = jnp.zeros((A,), jnp.float32).at[actions].add(1.0)
        log_q = jnp.log(counts[actions] / num) if num >= A else jnp.full((num,), -jnp.log(A))
        return actions, log_q.astype(jnp.float32)

    def enumerated(rng_key: Array, node, action: Array, omegas):
        """Every outcome's successor; the weight's target is their expected ``r + gamma V``."""
        pick_key, nested_key = jax.random.split(rng_key)
        rewards, probs = model.outcomes(node, action, omegas)
        nodes = jax.vmap(lambda o: model.advance(node, action, o, update_belief))(rewards)
        keys = jax.random.split(nested_key, rewards.shape[0])
        nested = jax.vmap(lambda k, n: model.sample_tasks(k, n, config.num_nested))(keys, nodes)
        values = jax.vmap(model.value)(nodes, nested)
        # impossible outcomes (probability 0) may have undefined beliefs: keep them out
        backup = jnp.sum(jnp.where(probs > 0, probs * (rewards + config.gamma * values), 0.0))
        o = jax.random.categorical(pick_key, jnp.log(probs + 1e-30))
        pick = lambda tree: jax.tree.map(lambda x: x[o], tree)  # noqa: E731
        return rewards[o], pick(nodes), pick(nested), values[o], backup

    def mutate(rng_key: Array, particle: Particles, depth: Array, root_action: Array, root_log_q: Array):
        action_key, sim_key, nested_key = jax.random.split(rng_key, 3)
        node = particle.node
        logits = model.policy_logits(node)
        action = jax.random.categorical(action_key, logits).astype(jnp.int32)
        correction = jnp.zeros((), jnp.float32)
        if stratified:  # the root's assigned action, weighted by pi(a) / q(a)
            at_root = depth == 0
            action = jnp.where(at_root, root_action, action)
            correction = jnp.where(at_root, jax.nn.log_softmax(logits)[action] - root_log_q, 0.0)
        if enumerate_outcomes:
            reward, next_node, omegas, value, backup = enumerated(sim_key, node, action, particle.omegas)
        else:
            reward, outcome = model.simulate(sim_key, node, action, particle.omegas, expected)
            next_node = model.advance(node, action, outcome, update_belief)
            omegas = model.sample_tasks(nested_key, next_node, num_draws)
            value = model.value(next_node, omegas)
            backup = reward + config.gamma * value
        discount = jnp.asarray(config.gamma, jnp.float32) ** depth.astype(jnp.float32)
        increment = discount * (backup - particle.value) / config.alpha + correction
        moved = Particles(
            node=next_node,
            omegas=omegas,
            value=jnp.asarray(value, jnp.float32),
            first_action=jnp.where(depth == 0, action, particle.first_action),
            ret=particle.ret + discount * reward,
        )
        return moved, increment, action, reward

    def step(rng_key: Array, state: SMCState) -> tuple[SMCState, SMCInfo]:
        resample_key, mutate_key = jax.random.split(rng_key)
        log_weights = state.log_weights - jax.scipy.special.logsumexp(state.log_weights)
        ess = smc_ess.ess(log_weights)
        do_resample = ess < config.ess_threshold * num
        ancestors = jnp.where(
            do_resample,
            resample(resample_key, log_weights, num, config.resampling),
            jnp.arange(num, dtype=jnp.int32),
        )
        particles = jax.tree.map(lambda x: x[ancestors], state.particles)
        log_weights = jnp.where(do_resample, -jnp.log(num), log_weights)
        if stratified:
            root_actions, root_log_q = root_assignment(jax.random.fold_in(mutate_key, 1))
        else:
            root_actions, root_log_q = jnp.zeros((num,), jnp.int32), jnp.zeros((num,), jnp.float32)
        particles, increments, actions, rewards = jax.vmap(mutate, in_axes=(0, 0, None, 0, 0))(
            jax.random.split(mutate_key, num), particles, state.depth, root_actions, root_log_q
        )
        log_weights = log_weights + increments
        log_normalizer_increment = jax.scipy.special.logsumexp(log_weights)
        info = SMCInfo(
            ess=ess,
            resampled=do_resample,
            ancestors=ancestors,
            weights=jax.nn.softmax(log_weights),
            log_normalizer_increment=log_normalizer_increment,
            actions=actions,
            rewards=rewards,
            first_actions=particles.first_action,
            estimates=particles.ret + jnp.asarray(config.gamma, jnp.float32) ** (state.depth + 1.0)
            * particles.value,
        )
        return SMCState(particles, log_weights, state.depth + 1), info

    return step


def improved_policy(state: SMCState, num_actions: int) -> Array:
    """The weighted marginal of the particles' first actions, float32 ``[A]``."""
    weights = jax.nn.softmax(state.log_weights)
    return jnp.zeros((num_actions,), jnp.float32).at[state.particles.first_action].add(weights)


def plan(rng_key: Array, model: PlanningModel, root: Any, config: PlannerConfig) -> PlanResult:
    """Run all ``D`` depths of the planner from one root (``lax.scan`` over depths).

    Args:
        rng_key: a key.
        model: the :class:`~planning.model.PlanningModel`.
        root: the root node (no batch axis; vmap this function over environments).
        config: the :class:`~planning.config.PlannerConfig` (static: jit with it closed
            over or as a static argument).

    Returns:
        A :class:`PlanResult`: the improved policy ``[A]``, the value estimate, the log
        normalizer, ``V(h_0)`` and the per-depth :class:`SMCInfo` ``[D, ...]``.
    """
    init_key, scan_key = jax.random.split(rng_key)
    state = init(init_key, model, root, config)
    root_value = state.particles.value[0]
    step = build_kernel(model, config)
    state, info = jax.lax.scan(lambda s, k: step(k, s), state,
                               jax.random.split(scan_key, config.depth))
    weights = jax.nn.softmax(state.log_weights)
    final_discount = jnp.asarray(config.gamma, jnp.float32) ** config.depth
    returns = state.particles.ret + final_discount * state.particles.value
    if config.target == "q":
        prior_logits = model.policy_logits(root)
        value = jnp.sum(weights * returns)  # an untried action's Q: this call's value estimate
        q = targets.q_estimates(info.first_actions, info.estimates, model.num_actions, value)
        eta = (targets.adaptive_temperature(prior_logits, q, config.kl_target)
               if config.temperature == "adaptive" else jnp.float32(config.alpha))
        policy = targets.tilted_policy(prior_logits, q, eta)
    else:
        policy = improved_policy(state, model.num_actions)
    return PlanResult(
        policy=policy,
        value=jnp.sum(weights * returns),
        log_normalizer=info.log_normalizer_increment.sum(),
        root_value=root_value,
        info=info,
    )


def select_action(rng_key: Array, policy: Array, how: str = "argmax") -> Array:
    """Choose the real action from the improved policy ``[A]``.

    ``"argmax"``: its mode, ties (up to a relative 1e-6) broken uniformly at random (so
    that equal weights do not always pick action 0); ``"sample"``: a draw from it.

    Returns:
        int32 scalar.
    """
    if how == "sample":
        return jax.random.categorical(rng_key, jnp.log(policy)).astype(jnp.int32)
    if how != "argmax":
        raise ValueError(f"select_action: unknown how {how!r}; choose 'argmax' or 'sample'")
    best = policy >= policy.max() * (1.0 - 1e-6)
    return jax.random.categorical(rng_key, jnp.where(best, 0.0, -jnp.inf)).astype(jnp.int32)
