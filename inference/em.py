r"""VariBASeD training: EM with Belief-SMC particle sweeps (E-step) and SVI steps (M-step).

One iteration (:func:`make_trainer`'s ``iteration``, a single jitted pure function of the
state, whose key it carries):

**E-step.** ``num_envs`` environments run whole trials in parallel, acting with the
Belief-SMC planner (:mod:`planning.smc`) inside the *learned* belief
(:func:`planning.learned_model.learned_model`), sampling the real action from the planner's
improved policy. Each real step stores the transition, the improved policy
:math:`\hat\pi(\cdot \mid h_t)` and the planner's value estimate :math:`\hat v_t`.

**M-step.** ``svi_updates`` SVI steps (``numpyro.infer.SVI`` with an optax optimizer, in one
``lax.scan``) on minibatches of ``batch_trials`` trials drawn uniformly from a replay of the
last ``replay_trials`` trials, each on the joint objective of ONE NumPyro model/guide pair
(:func:`models.belief.make_belief_model`):

.. math::

    \mathcal L(\theta, \phi, \psi) = -\mathrm{ELBO}_{\theta,\phi}
      + w_\pi \, \mathrm{CE}\big(\hat\pi(\cdot \mid h_t), \pi_\psi(\cdot \mid h_t)\big)
      - w_V \log \mathcal N\big(G^\lambda_t;\, V_\psi(h_t), 1\big),

where the ELBO (VariBAD's: a sum over belief steps ``t`` of ELBOs that each decode the whole
trial under :math:`m_t \sim q_\phi(m \mid h_t)`) does not involve the policy parameters,
the cross-entropy distils the planner into the policy (the policy is the prior over
actions of the graphical model), and :math:`G^\lambda_t` are TD(lambda) returns of the
real rewards bootstrapped on the planner's value estimates. The S5 encoder is shared by
guide, policy and value. By default every stored trial is re-encoded from its start (trials
are short). With ``window = W > 0``, the paper's mode: the S5 state before every step is
cached when the trial is played (with the parameters of that iteration), and each update
encodes only a window of ``W`` steps from a uniformly drawn start, continuing from the
cached (stale) state; the window's beliefs still decode the whole trial, and only the
window's steps carry policy and value targets.

Replay: :mod:`varibased.inference.replay`, a ring buffer of whole trials with their planner
targets (targets are not refreshed; the buffer holds the last ``replay_trials // num_envs``
iterations), and their cached S5 states in window mode.

Configuration: :class:`EMConfig` composes the learned model's :class:`BeliefConfig`, the
planner's :class:`PlannerConfig` and the optimizer's :class:`SVIConfig`; per-task defaults live
in :data:`varibased.inference.configs.TASK_DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from varibased.inference import configs
from varibased.inference import replay as replay_lib
from varibased.inference.replay import CachedReplay, Replay
from varibased.inference.returns import lambda_returns
from varibased.inference.svi import SVIConfig, make_belief_svi
from varibased.inference.trainer import Trainer
from varibased.models import belief as belief_lib
from varibased.models import guides, history, subsample
from varibased.models import validation as check
from varibased.models.agent import Agent
from varibased.models.belief import BeliefConfig
from varibased.models.rollout import run_trials
from varibased.models.task import Task
from varibased.planning.config import PlannerConfig
from varibased.planning.learned_model import learned_model
from varibased.planning.planner_agent import make_planner_agent

Array = jax.Array

__all__ = ["EMConfig", "EMState", "Replay", "CachedReplay", "make_trainer", "lambda_returns", "policy_agent"]


@dataclasses.dataclass(frozen=True)
class EMConfig:
    """Configuration of VariBASeD training (frozen, validated, hashable).

    Attributes:
        belief: the learned model (:class:`varibased.models.belief.BeliefConfig`).
        planner: the Belief-SMC planner (:class:`varibased.planning.config.PlannerConfig`;
            its ``action_selection`` is set by the trainer: sampled in training, argmax in
            evaluation). ``planner.gamma`` also discounts the value targets.
        svi: the optimizer (:class:`varibased.inference.svi.SVIConfig`).
        num_envs: environments per E-step (``B``), each running one whole trial.
        svi_updates: SVI updates per M-step (in one ``lax.scan``).
        batch_trials: trials per SVI update (drawn from the replay).
        replay_trials: capacity of the replay of whole trials (a multiple of ``num_envs``).
        policy_weight: ``w_pi``, weight of the distillation cross-entropy.
        value_weight: ``w_V``, weight of the value regression.
        value_lambda: ``lambda`` of the TD(lambda) value targets.
        value_targets: what the TD(lambda) targets bootstrap on: ``"acting"``, the planner's
            value estimates stored when the trial was played (never refreshed), or
            ``"current"``, the value network at the start of each M-step on the replayed
            history (a target network refreshed every iteration; not with windows).
        distill_trust: ``beta >= 0``, a KL trust region on the distillation: the policy is fit
            to ``(pi_hat + beta pi_old) / (1 + beta)``, where ``pi_old`` is the policy at the
            start of the M-step on the replayed history (a lagged target policy). This is the
            penalized objective ``CE(pi_hat, pi) + beta KL(pi_old || pi)`` up to a constant and
            the factor ``1 + beta``. 0: no trust region (not with windows otherwise).
        window: 0 (re-encode every trial from its start) or ``W`` in ``[1, trial_length]``:
            train on windows of ``W`` beliefs from cached S5 states (the paper's mode).
    """

    belief: BeliefConfig = dataclasses.field(default_factory=BeliefConfig)
    planner: PlannerConfig = dataclasses.field(default_factory=lambda: PlannerConfig(num_particles=16))
    svi: SVIConfig = dataclasses.field(default_factory=lambda: SVIConfig(learning_rate=3e-3))
    num_envs: int = 32
    svi_updates: int = 20
    batch_trials: int = 64
    replay_trials: int = 256
    policy_weight: float = 1.0
    value_weight: float = 1.0
    value_lambda: float = 0.9
    window: int = 0
    value_targets: str = "acting"
    distill_trust: float = 0.0

    def __post_init__(self) -> None:
        for name, cls in (("belief", BeliefConfig), ("planner", PlannerConfig), ("svi", SVIConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"EMConfig.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        check.set_fields(self, **{name: check.positive_int("EMConfig", name, getattr(self, name))
                                  for name in ("num_envs", "svi_updates", "batch_trials", "replay_trials")})
        if self.replay_trials % self.num_envs:
            raise ValueError(f"EMConfig.replay_trials ({self.replay_trials}) must be a multiple of "
                             f"num_envs ({self.num_envs})")
        if self.batch_trials > self.replay_trials:
            raise ValueError(f"EMConfig.batch_trials ({self.batch_trials}) must not exceed "
                             f"replay_trials ({self.replay_trials})")
        check.set_fields(
            self,
            policy_weight=check.number("EMConfig", "policy_weight", self.policy_weight, low=0.0),
            value_weight=check.number("EMConfig", "value_weight", self.value_weight, low=0.0),
            value_lambda=check.number("EMConfig", "value_lambda", self.value_lambda, low=0.0, high=1.0),
            window=check.nonnegative_int("EMConfig", "window", self.window),
            distill_trust=check.number("EMConfig", "distill_trust", self.distill_trust, low=0.0),
        )
        check.choice("EMConfig", "value_targets", self.value_targets, ("acting", "current"))
        if self.window and self.value_targets != "acting":
            raise ValueError("EMConfig.value_targets='current' needs window=0 (whole replayed trials)")
        if self.window and self.distill_trust:
            raise ValueError("EMConfig.distill_trust > 0 needs window=0 (whole replayed trials)")
        self.planner.check_memory(self.num_envs, planning_node_bytes(self.belief))
        if self.window and not guides.family(self.belief).supports_windows:
            raise ValueError(f"EMConfig.window > 0 needs a guide that supports windows, e.g. 'diagonal' (the "
                             f"{self.belief.guide!r} guide sums its factors from the trial's start, which a "
                             "cached window lacks)")

    @classmethod
    def for_task(cls, task_name: str, **overrides: Any) -> EMConfig:
        """Defaults for a task id (:data:`varibased.inference.configs.TASK_DEFAULTS`; others
        get the plain defaults), with overrides by dotted path or flat alias
        (``EMConfig.for_task("gridworld", **{"belief.kl_weight": 0.01})``)."""
        return configs.make_config("varibased", cls, task_name, overrides)

    def planner_config(self, evaluation: bool) -> PlannerConfig:
        """The planner's configuration: argmax actions in evaluation, sampled in training."""
        return self.planner.replace(action_selection="argmax" if evaluation else "sample")

    def belief_config(self) -> BeliefConfig:
        """The learned model's configuration (``self.belief``)."""
        return self.belief


def planning_node_bytes(belief: BeliefConfig) -> int:
    """Bytes of one planner particle with one nested task particle (float32): the S5 carry
    (complex, per layer), the features and heads, the latent and its decoder activations."""
    floats = (2 * belief.state_size * belief.num_layers + belief.hidden_size + belief.head_hidden
              + belief.input_hidden + 2 * belief.latent_dim + sum(belief.decoder_hidden))
    return 4 * floats


def check_budget(task: Task, config: EMConfig, num_envs: int, limit: int | None = None) -> None:
    """Refuse, before any work, a planning budget that cannot run: a depth beyond the trial
    or a planning call over ``num_envs`` environments whose memory estimate exceeds ``limit``."""
    if config.planner.depth > task.trial_length:
        raise ValueError(f"EMConfig.planner.depth ({config.planner.depth}) exceeds the task's trial length "
                         f"({task.trial_length})")
    config.planner.check_memory(num_envs, planning_node_bytes(config.belief), limit)


class EMState(NamedTuple):
    """Training state (arrays only, so it can be checkpointed and resumed exactly).

    Attributes:
        svi_state: numpyro's ``SVIState`` (parameters, optimizer state, its key).
        replay: the :class:`~varibased.inference.replay.Replay` (``CachedReplay`` in window mode).
        iteration: int32, completed iterations.
        env_steps: int32, real environment steps so far.
        rng_key: the key of the next iteration.
    """

    svi_state: Any
    replay: Replay
    iteration: Array
    env_steps: Array
    rng_key: Array


def policy_agent(task: Task, config: EMConfig, params: Any, *, evaluation: bool) -> Agent:
    """The distilled policy alone (no planning): argmax in evaluation, else sampled."""
    model = learned_model(task, config.belief, params)

    def act(rng_key, node, env_state, obs):
        logits = model.policy_logits(node)
        action = jnp.argmax(logits) if evaluation else jax.random.categorical(rng_key, logits)
        return action.astype(jnp.int32), ()

    return Agent(init=lambda rng_key, task_params: model.init(rng_key), act=act, update=model.update)


def _current_targets(params, batch, policy_targets: Array, value_targets: Array, task: Task,
                     config: EMConfig) -> tuple[Array, Array]:
    """A batch's targets refreshed with the network at the start of the M-step (``params``,
    held fixed: no gradient flows through targets): TD(lambda) value targets ``[B, T]``
    bootstrapped on its value (``value_targets="current"``), and the distillation targets
    ``[B, T, A]`` mixed with its policy (``distill_trust > 0``)."""
    features = history.batch_features(params, batch, None, task, config.belief)[:, : task.trial_length]
    features = jax.lax.stop_gradient(features)
    if config.value_targets == "current":
        values = belief_lib.value(params, features, config.belief)
        gamma, lam = config.planner.gamma, config.value_lambda
        value_targets = jax.vmap(lambda r, v: lambda_returns(r, v, gamma, lam))(batch.rewards, values)
    if config.distill_trust:
        beta = config.distill_trust
        old = jax.nn.softmax(belief_lib.policy_logits(params, features))
        policy_targets = (policy_targets + beta * old) / (1.0 + beta)
    return policy_targets, value_targets


def make_trainer(task: Task, config: EMConfig) -> Trainer:
    """VariBASeD's :class:`~inference.trainer.Trainer` for ``task`` (see the module docstring)."""
    if not isinstance(config, EMConfig):
        raise TypeError(f"make_trainer needs an EMConfig, got {type(config).__name__}")
    if config.planner.outcome == "enumerate" and not task.categorical_rewards:
        raise ValueError(f"EMConfig.planner.outcome='enumerate' needs categorical rewards; task "
                         f"{task.name!r} has continuous rewards: use 'sample' or 'expected'")
    check_budget(task, config, config.num_envs)
    if config.window > task.trial_length:
        raise ValueError(f"EMConfig.window ({config.window}) exceeds the task's trial length "
                         f"({task.trial_length})")
    belief_config = config.belief
    svi = make_belief_svi(task, belief_config, config.svi)
    train_planner = config.planner_config(evaluation=False)
    weights = (float(config.policy_weight), float(config.value_weight))

    def init(rng_key: Array) -> EMState:
        svi_key, rng_key = jax.random.split(rng_key)
        carry = history.initial_carry(belief_config) if config.window else None
        replay = replay_lib.empty(config.replay_trials, task.trial_length, task.num_actions, task.obs_dim,
                                  carry)
        first = lambda x: x[: config.batch_trials]  # noqa: E731
        svi_state = svi.svi.init(svi_key, jax.tree.map(first, replay.batch),
                                 first(replay.policy_targets), first(replay.value_targets))
        return EMState(svi_state, replay, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), rng_key)

    def agent(state: EMState, evaluation: bool) -> Agent:
        params = svi.get_params(state.svi_state)
        if evaluation and config.planner.num_particles == 1:
            return policy_agent(task, config, params, evaluation=True)
        model = learned_model(task, belief_config, params)
        return make_planner_agent(model, config.planner_config(evaluation))

    def iteration(state: EMState) -> tuple[EMState, dict[str, Array]]:
        rng_key, act_key, sample_key = jax.random.split(state.rng_key, 3)
        window_key = jax.random.fold_in(sample_key, 1)
        params = svi.get_params(state.svi_state)
        planner = make_planner_agent(learned_model(task, belief_config, params), train_planner)
        trajectory = run_trials(act_key, task, planner, config.num_envs)
        batch = history.batch_from_trajectory(task, trajectory)
        info = trajectory.info
        gamma, lam = config.planner.gamma, config.value_lambda
        value_targets = jax.vmap(lambda r, v: lambda_returns(r, v, gamma, lam))(
            trajectory.transitions.reward, info.value)
        carries = None
        if config.window:  # the S5 states of this iteration's parameters, cached
            carries = jax.vmap(lambda trial: history.history_carries(
                params, trial, task, belief_config))(batch)
        replay = replay_lib.insert(state.replay, batch, info.policy, value_targets, carries)
        idx = replay_lib.sample_indices(sample_key, replay, (config.svi_updates, config.batch_trials))
        take = lambda x: x[idx]  # noqa: E731
        batches, policy_targets, value_targets = (jax.tree.map(take, replay.batch),
                                                  take(replay.policy_targets), take(replay.value_targets))
        if config.value_targets == "current" or config.distill_trust:
            policy_targets, value_targets = jax.vmap(
                lambda b, p, v: _current_targets(params, b, p, v, task, config))(
                    batches, policy_targets, value_targets)
        windows = None
        if config.window:
            W = config.window
            starts = jax.random.randint(window_key, idx.shape, 0, task.trial_length - W + 1)
            windows = jax.vmap(lambda b, c, s: history.make_window(b, c, s, W, task))(
                batches, jax.tree.map(take, replay.carries), starts)
            cut = jax.vmap(jax.vmap(lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, W, axis=0)))
            policy_targets, value_targets = cut(policy_targets, starts), cut(value_targets, starts)
        subsample_keys = None  # the ELBO's kept steps (only when subsampled: the default stream is kept)
        if subsample.subsamples(belief_config):
            subsample_keys = jax.random.split(jax.random.fold_in(sample_key, 2), config.svi_updates)
        svi_state, losses = svi.update_many(state.svi_state, batches, policy_targets, value_targets,
                                            *weights, windows, subsample_keys)
        returns = trajectory.transitions.reward.sum(-1)
        entropy = -(info.policy * jnp.log(info.policy + 1e-12)).sum(-1)
        metrics = {
            "return": returns.mean(),
            "loss": losses.mean(),
            "loss_last": losses[-1],
            "planner_ess": info.ess.mean(),
            "resample_rate": info.resampled.mean(),
            "target_entropy": entropy.mean(),
            "value_estimate": info.root_value[:, 0].mean(),
        }
        env_steps = state.env_steps + config.num_envs * task.trial_length
        return EMState(svi_state, replay, state.iteration + 1, env_steps, rng_key), metrics

    return Trainer(init=init, iteration=iteration, agent=agent,
                   env_steps_per_iteration=config.num_envs * task.trial_length, config=config,
                   params=lambda state: svi.get_params(state.svi_state))
