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

Replay: a ring buffer of whole trials with their planner targets (targets are not
refreshed; the buffer holds the last ``replay_trials // num_envs`` iterations), and their
cached S5 states in window mode.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from varibased.inference.svi import SVIConfig, make_belief_svi
from varibased.inference.trainer import Trainer
from varibased.models import history
from varibased.models.belief import BeliefConfig
from varibased.models.history import TrialBatch
from varibased.models.task import Task
from varibased.planning.agent import Agent
from varibased.planning.config import PlannerConfig
from varibased.planning.learned_model import learned_model
from varibased.planning.planner_agent import make_planner_agent
from varibased.planning.rollout import run_trials

Array = jax.Array

__all__ = ["EMConfig", "EMState", "Replay", "CachedReplay", "make_trainer", "lambda_returns", "policy_agent"]

_TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # GridNavi's reward depends only on the cell moved into.
    "gridworld": {"decoder_inputs": ("moved_obs",), "kl_weight": 0.1},
    # The reward of a query / a pull depends only on the action. Function optimization: a
    # decoder linear in m (a GP with a learned rank-16 kernel) and the full-covariance
    # "factors" guide, whose family holds the exact posterior (calibrated): normalized score
    # 0.83 +- 0.01 after 3e5 steps (3 seeds) against 0.72 +- 0.02 for the bilinear decoder
    # with the diagonal guide.
    "function_optimization": {"decoder_inputs": ("action",), "alpha": 0.5, "decoder": "linear",
                              "guide": "factors", "latent_dim": 16, "decode": "past"},
    "bernoulli_bandit": {"decoder_inputs": ("action",), "alpha": 0.5},
}


@dataclasses.dataclass(frozen=True)
class EMConfig:
    """Configuration of VariBASeD training (frozen, validated, hashable).

    Planner (see :class:`planning.config.PlannerConfig`): ``num_particles`` (K),
    ``num_nested`` (K_omega), ``depth`` (D), ``alpha``, ``gamma``, ``ess_threshold``,
    ``resampling``, ``outcome``, ``belief_update_in_imagination``.

    Attributes:
        num_envs: environments per E-step (``B``), each running one whole trial.
        svi_updates: SVI updates per M-step (in one ``lax.scan``).
        batch_trials: trials per SVI update (drawn from the replay).
        replay_trials: capacity of the replay of whole trials (a multiple of ``num_envs``).
        learning_rate: Adam step size; max_grad_norm: global-norm clip.
        policy_weight: ``w_pi``, weight of the distillation cross-entropy.
        value_weight: ``w_V``, weight of the value regression.
        value_lambda: ``lambda`` of the TD(lambda) value targets.
        latent_dim, hidden_size, state_size, num_layers, decoder_hidden, head_hidden,
        input_hidden, decoder_inputs, decode, kl_weight, s5_mode, decoder, guide,
        factor_rank: the learned model (:class:`models.belief.BeliefConfig`).
        window: 0 (re-encode every trial from its start) or ``W`` in ``[1, trial_length]``:
            train on windows of ``W`` beliefs from cached S5 states (the paper's mode).
    """

    num_envs: int = 32
    num_particles: int = 16
    num_nested: int = 4
    depth: int = 4
    alpha: float = 0.1
    gamma: float = 1.0
    ess_threshold: float = 0.5
    resampling: str = "systematic"
    outcome: str = "sample"
    belief_update_in_imagination: bool = True
    svi_updates: int = 20
    batch_trials: int = 64
    replay_trials: int = 256
    learning_rate: float = 3e-3
    max_grad_norm: float = 1.0
    policy_weight: float = 1.0
    value_weight: float = 1.0
    value_lambda: float = 0.9
    latent_dim: int = 5
    hidden_size: int = 64
    state_size: int = 32
    num_layers: int = 1
    decoder_hidden: tuple[int, ...] = (32, 32)
    head_hidden: int = 64
    input_hidden: int = 64
    decoder_inputs: tuple[str, ...] = ("obs", "action", "moved_obs")
    decode: str = "trial"
    kl_weight: float = 1.0
    s5_mode: str = "sequential"
    decoder: str = "bilinear"
    guide: str = "diagonal"
    factor_rank: int = 1
    window: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder_hidden", tuple(self.decoder_hidden))
        object.__setattr__(self, "decoder_inputs", tuple(self.decoder_inputs))
        for name in ("num_envs", "svi_updates", "batch_trials", "replay_trials"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"EMConfig.{name} must be a positive int, got {value!r}")
        if self.replay_trials % self.num_envs:
            raise ValueError(f"EMConfig.replay_trials ({self.replay_trials}) must be a multiple of "
                             f"num_envs ({self.num_envs})")
        if self.batch_trials > self.replay_trials:
            raise ValueError(f"EMConfig.batch_trials ({self.batch_trials}) must not exceed "
                             f"replay_trials ({self.replay_trials})")
        for name in ("learning_rate", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"EMConfig.{name} must be a finite number > 0, got {value!r}")
        for name in ("policy_weight", "value_weight"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
                raise ValueError(f"EMConfig.{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int | np.integer) \
                or self.window < 0:
            raise ValueError(f"EMConfig.window must be an int >= 0 (0: whole trials), got {self.window!r}")
        if self.window and self.guide != "diagonal":
            raise ValueError(f"EMConfig.window > 0 needs guide='diagonal' (the {self.guide!r} guide "
                             "sums its factors from the trial's start, which a cached window lacks)")
        if not isinstance(self.value_lambda, int | float) or not 0 <= self.value_lambda <= 1:
            raise ValueError(f"EMConfig.value_lambda must be in [0, 1], got {self.value_lambda!r}")
        # Validate the parts now, with the field names the user knows.
        self.planner_config(evaluation=True)
        self.belief_config()
        SVIConfig(learning_rate=float(self.learning_rate), max_grad_norm=float(self.max_grad_norm))

    @classmethod
    def for_task(cls, task_name: str, **overrides: Any) -> EMConfig:
        """Defaults for a built-in task id (others get the plain defaults), with overrides."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"EMConfig has no field(s) {sorted(unknown)}")
        return cls(**{**_TASK_DEFAULTS.get(task_name, {}), **overrides})

    def planner_config(self, evaluation: bool) -> PlannerConfig:
        """The planner's configuration: argmax actions in evaluation, sampled in training."""
        return PlannerConfig(
            num_particles=self.num_particles, num_nested=self.num_nested, depth=self.depth,
            alpha=self.alpha, gamma=self.gamma, ess_threshold=self.ess_threshold,
            resampling=self.resampling, outcome=self.outcome,
            belief_update_in_imagination=self.belief_update_in_imagination,
            action_selection="argmax" if evaluation else "sample",
        )

    def belief_config(self) -> BeliefConfig:
        """The learned model's configuration."""
        return BeliefConfig(
            latent_dim=self.latent_dim, hidden_size=self.hidden_size, state_size=self.state_size,
            num_layers=self.num_layers, decoder_hidden=self.decoder_hidden,
            head_hidden=self.head_hidden, input_hidden=self.input_hidden,
            decoder_inputs=self.decoder_inputs, decode=self.decode,
            kl_weight=self.kl_weight, mode=self.s5_mode, decoder=self.decoder, guide=self.guide,
            factor_rank=self.factor_rank,
        )


class Replay(NamedTuple):
    """A ring buffer of whole trials (leading axis ``replay_trials``).

    Attributes:
        batch: the trials (:class:`models.belief.TrialBatch`, ``[R, T, ...]``).
        policy_targets: float32 ``[R, T, A]``, the planner's improved policies.
        value_targets: float32 ``[R, T]``, TD(lambda) returns.
        size: int32, trials stored so far (at most ``R``).
        cursor: int32, where the next trials go.
    """

    batch: TrialBatch
    policy_targets: Array
    value_targets: Array
    size: Array
    cursor: Array


class CachedReplay(NamedTuple):
    """The replay of window mode (``EMConfig.window > 0``): the fields of :class:`Replay`
    and ``carries``, the S5 carry before every step (leading ``[R, T]``). A separate type,
    so that the default mode's checkpoints keep their structure."""

    batch: TrialBatch
    policy_targets: Array
    value_targets: Array
    size: Array
    cursor: Array
    carries: Any


class EMState(NamedTuple):
    """Training state (arrays only, so it can be checkpointed and resumed exactly).

    Attributes:
        svi_state: numpyro's ``SVIState`` (parameters, optimizer state, its key).
        replay: the :class:`Replay` (:class:`CachedReplay` in window mode).
        iteration: int32, completed iterations.
        env_steps: int32, real environment steps so far.
        rng_key: the key of the next iteration.
    """

    svi_state: Any
    replay: Replay
    iteration: Array
    env_steps: Array
    rng_key: Array


def lambda_returns(rewards: Array, values: Array, gamma: float, lam: float) -> Array:
    r"""TD(lambda) returns of one trial, terminal at its end.

    .. math:: G_t = r_t + \gamma\big((1 - \lambda) v_{t+1} + \lambda G_{t+1}\big),\quad
              G_{T} = v_{T} = 0.

    Args:
        rewards: float32 ``[T]``; values: float32 ``[T]`` (``v_t``, estimates at step ``t``).

    Returns:
        float32 ``[T]``.
    """
    next_values = jnp.concatenate([values[1:], jnp.zeros((1,), values.dtype)])

    def body(carry, xs):
        reward, next_value = xs
        ret = reward + gamma * ((1 - lam) * next_value + lam * carry)
        return ret, ret

    _, returns = jax.lax.scan(body, jnp.zeros((), rewards.dtype), (rewards, next_values), reverse=True)
    return returns


def policy_agent(task: Task, config: EMConfig, params: Any, *, evaluation: bool) -> Agent:
    """The distilled policy alone (no planning): argmax in evaluation, else sampled."""
    model = learned_model(task, config.belief_config(), params)

    def act(rng_key, node, env_state, obs):
        logits = model.policy_logits(node)
        action = jnp.argmax(logits) if evaluation else jax.random.categorical(rng_key, logits)
        return action.astype(jnp.int32), ()

    return Agent(init=lambda rng_key, task_params: model.init(rng_key), act=act, update=model.update)


def _empty_replay(task: Task, config: EMConfig) -> Replay:
    R, T, A, d = config.replay_trials, task.trial_length, task.num_actions, task.obs_dim
    replay_type, extra = Replay, ()
    if config.window:
        carry = history.initial_carry(config.belief_config())
        replay_type = CachedReplay
        extra = (jax.tree.map(lambda c: jnp.zeros((R, T) + c.shape, c.dtype), carry),)
    batch = TrialBatch(
        obs=jnp.zeros((R, T, d), jnp.float32), actions=jnp.zeros((R, T), jnp.int32),
        rewards=jnp.zeros((R, T), jnp.float32), dones=jnp.zeros((R, T), jnp.int32),
        next_obs=jnp.zeros((R, T, d), jnp.float32), moved_obs=jnp.zeros((R, T, d), jnp.float32),
    )
    return replay_type(batch, jnp.full((R, T, A), 1.0 / A, jnp.float32),
                       jnp.zeros((R, T), jnp.float32), jnp.zeros((), jnp.int32),
                       jnp.zeros((), jnp.int32), *extra)


def _insert(replay: Replay | CachedReplay, batch: TrialBatch, policy_targets: Array,
            value_targets: Array, carries=None) -> Replay | CachedReplay:
    capacity = replay.policy_targets.shape[0]
    num = policy_targets.shape[0]
    idx = (replay.cursor + jnp.arange(num)) % capacity
    put = lambda buffer, new: buffer.at[idx].set(new)  # noqa: E731
    fields = (
        jax.tree.map(put, replay.batch, batch),
        put(replay.policy_targets, policy_targets),
        put(replay.value_targets, value_targets),
        jnp.minimum(replay.size + num, capacity),
        (replay.cursor + num) % capacity,
    )
    if carries is None:
        return Replay(*fields)
    return CachedReplay(*fields, jax.tree.map(put, replay.carries, carries))


def make_trainer(task: Task, config: EMConfig) -> Trainer:
    """VariBASeD's :class:`~inference.trainer.Trainer` for ``task`` (see the module docstring)."""
    if not isinstance(config, EMConfig):
        raise TypeError(f"make_trainer needs an EMConfig, got {type(config).__name__}")
    if config.outcome == "enumerate" and not task.categorical_rewards:
        raise ValueError(f"EMConfig.outcome='enumerate' needs categorical rewards; task "
                         f"{task.name!r} has continuous rewards: use 'sample' or 'expected'")
    if config.window > task.trial_length:
        raise ValueError(f"EMConfig.window ({config.window}) exceeds the task's trial length "
                         f"({task.trial_length})")
    belief_config = config.belief_config()
    svi = make_belief_svi(task, belief_config, SVIConfig(
        learning_rate=float(config.learning_rate), max_grad_norm=float(config.max_grad_norm)))
    train_planner = config.planner_config(evaluation=False)
    weights = (float(config.policy_weight), float(config.value_weight))

    def init(rng_key: Array) -> EMState:
        svi_key, rng_key = jax.random.split(rng_key)
        replay = _empty_replay(task, config)
        first = lambda x: x[: config.batch_trials]  # noqa: E731
        svi_state = svi.svi.init(svi_key, jax.tree.map(first, replay.batch),
                                 first(replay.policy_targets), first(replay.value_targets))
        return EMState(svi_state, replay, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), rng_key)

    def agent(state: EMState, evaluation: bool) -> Agent:
        params = svi.get_params(state.svi_state)
        if evaluation and config.num_particles == 1:
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
        value_targets = jax.vmap(lambda r, v: lambda_returns(r, v, config.gamma, config.value_lambda))(
            trajectory.transitions.reward, info.value)
        carries = None
        if config.window:  # the S5 states of this iteration's parameters, cached
            carries = jax.vmap(lambda trial: history.history_carries(
                params, trial, task, belief_config))(batch)
        replay = _insert(state.replay, batch, info.policy, value_targets, carries)
        idx = jax.random.randint(sample_key, (config.svi_updates, config.batch_trials), 0, replay.size)
        take = lambda x: x[idx]  # noqa: E731
        batches, policy_targets, value_targets = (jax.tree.map(take, replay.batch),
                                                  take(replay.policy_targets), take(replay.value_targets))
        windows = None
        if config.window:
            W = config.window
            starts = jax.random.randint(window_key, idx.shape, 0, task.trial_length - W + 1)
            windows = jax.vmap(lambda b, c, s: history.make_window(b, c, s, W, task))(
                batches, jax.tree.map(take, replay.carries), starts)
            cut = jax.vmap(jax.vmap(lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, W, axis=0)))
            policy_targets, value_targets = cut(policy_targets, starts), cut(value_targets, starts)
        svi_state, losses = svi.update_many(state.svi_state, batches, policy_targets, value_targets,
                                            *weights, windows)
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
