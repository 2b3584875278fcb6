"""RL^2: an S5 recurrent actor-critic trained by PPO over whole trials (the baseline).

The agent (Duan et al., 2016; Wang et al., 2016) is a memory-based policy whose memory is
the project's S5 encoder (:mod:`models.s5`). Its input at trial step ``t`` is

.. math::

    u_t = [\\,o_t,\\; \\mathrm{onehot}(a_{t-1}),\\; r_{t-1},\\; d_{t-1}\\,]
    \\qquad (a_{-1}, r_{-1}, d_{-1} = 0),

the observation, the previous action, the previous reward and the previous step's
episode-done flag (so the first step of every later episode carries ``d = 1``). The memory is
kept across the episodes of a trial and reset between trials: the reset flag inside the S5
scan is set at every trial start (``t = 0``). Linear-tanh-linear heads on the S5 features give
the policy logits and the value; PPO maximizes the *trial* return (episode ends are not
terminal; a trial's end is).

One training iteration (:func:`make_trainer`, one jitted function of the state):

1. ``num_envs`` environments each run one whole trial of a task from the prior, acting by
   sampling the policy with the S5 in its one-step form (:func:`models.s5.encoder_step`);
2. GAE on every trial (terminal at its end, :func:`varibased.inference.returns.gae`);
3. ``num_epochs`` epochs over ``num_minibatches`` minibatches *of environments*: the S5 is
   re-run over each stored trial from its start in its sequence form
   (:func:`models.s5.encoder_apply`), and one adam step (after global-norm clipping) is taken
   on the PPO loss (:func:`inference.ppo.ppo_loss`).

:func:`make_train` is the same loop in the purejaxrl shape: a pure ``train(rng_key)`` that
runs ``num_iterations`` iterations in one ``lax.scan`` (jit it; vmap it over seeds).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from varibased.inference import configs, ppo
from varibased.inference.trainer import Trainer
from varibased.models import networks, s5
from varibased.models import task as task_lib
from varibased.models import validation as check
from varibased.models.agent import Agent, Transition
from varibased.models.rollout import run_trials
from varibased.models.task import Task

Array = jax.Array

__all__ = [
    "RL2Config",
    "RL2State",
    "RL2AgentState",
    "ActInfo",
    "network_init",
    "input_dim",
    "step_inputs",
    "trial_inputs",
    "policy_step",
    "policy_sequence",
    "make_agent",
    "make_iteration",
    "make_trainer",
    "make_train",
]


@dataclasses.dataclass(frozen=True)
class RL2Config:
    """Hyperparameters of RL^2 (frozen, validated, hashable).

    Attributes:
        num_envs: environments per iteration ``B``; each runs one whole trial.
        learning_rate: adam step size.
        entropy_coef: weight of the policy entropy bonus.
        clip_eps: PPO clipping ``epsilon`` (policy ratio and value change).
        gae_lambda: GAE ``lambda`` in ``[0, 1]``.
        gamma: discount in ``[0, 1]`` (per step, over the whole trial).
        num_epochs: passes over the iteration's trials.
        num_minibatches: minibatches of environments per epoch (must divide ``num_envs``).
        value_coef: weight of the value loss.
        max_grad_norm: global gradient-norm clip.
        normalize_advantages: standardize advantages per minibatch.
        encoder: the S5 memory (:class:`varibased.models.s5.EncoderConfig`: ``hidden_size``
            ``H``, ``state_size`` ``P``, ``num_layers``, and ``mode``, the sequence form used
            in the update; its ``input_dim`` is set from the task).
        head_size: hidden units of the policy and value heads.
    """

    num_envs: int = 64
    learning_rate: float = 1e-3
    entropy_coef: float = 0.01
    clip_eps: float = 0.2
    gae_lambda: float = 0.95
    gamma: float = 0.99
    num_epochs: int = 4
    num_minibatches: int = 4
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True
    encoder: s5.EncoderConfig = dataclasses.field(default_factory=s5.EncoderConfig)
    head_size: int = 64

    def __post_init__(self) -> None:
        owner = "RL2Config"
        if not isinstance(self.encoder, s5.EncoderConfig):
            raise ValueError(f"RL2Config.encoder must be an EncoderConfig, got {self.encoder!r}")
        check.set_fields(self, **{name: check.positive_int(owner, name, getattr(self, name))
                                  for name in ("num_envs", "num_epochs", "num_minibatches", "head_size")})
        if self.num_envs % self.num_minibatches:
            raise ValueError(
                f"RL2Config.num_minibatches ({self.num_minibatches}) must divide num_envs "
                f"({self.num_envs}): minibatches are groups of whole environments"
            )
        positive = ("learning_rate", "clip_eps", "max_grad_norm")
        check.set_fields(
            self,
            **{name: check.number(owner, name, getattr(self, name), low=0.0, low_open=True)
               for name in positive},
            **{name: check.number(owner, name, getattr(self, name), low=0.0)
               for name in ("entropy_coef", "value_coef")},
            **{name: check.number(owner, name, getattr(self, name), low=0.0, high=1.0)
               for name in ("gae_lambda", "gamma")},
            normalize_advantages=check.boolean(owner, "normalize_advantages", self.normalize_advantages),
        )

    @classmethod
    def for_task(cls, task_name: str, **overrides: Any) -> RL2Config:
        """The defaults for a task id (:data:`varibased.inference.configs.TASK_DEFAULTS`; others
        get the plain defaults), with ``overrides`` by dotted path or flat alias applied
        (e.g. ``RL2Config.for_task("gridworld", num_envs=16)``)."""
        return configs.make_config("rl2", cls, task_name, overrides)


def _encoder_config(task: Task, config: RL2Config) -> s5.EncoderConfig:
    return dataclasses.replace(config.encoder, input_dim=input_dim(task))



def input_dim(task: Task) -> int:
    """Size of the per-step input: ``obs_dim + num_actions + 2`` (reward, done)."""
    return task.obs_dim + task.num_actions + 2


def network_init(rng_key: Array, task: Task, config: RL2Config) -> dict:
    """Parameters (a pytree of float32 arrays): ``encoder``, ``policy``, ``value``.

    The last policy layer starts small (scale 0.01) so the initial policy is near uniform.
    """
    k_enc, k_p1, k_p2, k_v1, k_v2 = jax.random.split(rng_key, 5)
    H, F = config.encoder.hidden_size, config.head_size
    return {
        "encoder": s5.encoder_init(k_enc, _encoder_config(task, config)),
        "policy": networks.head_init(k_p1, k_p2, H, F, task.num_actions, 0.01),
        "value": networks.head_init(k_v1, k_v2, H, F, 1),
    }


def _heads(params: dict, features: Array) -> tuple[Array, Array]:
    logits = networks.head(params["policy"], features, jnp.tanh)
    value = networks.head(params["value"], features, jnp.tanh)[..., 0]
    return logits, value


def step_inputs(task: Task, obs: Array, prev_action: Array, prev_reward: Array, prev_done: Array) -> Array:
    """The input vector ``u_t`` ``[input_dim]`` of one step.

    Args:
        obs: float32 ``[obs_dim]``.
        prev_action: int scalar, or ``-1`` for "none" (the trial's first step: a zero one-hot).
        prev_reward: float scalar.
        prev_done: int/float scalar episode-done flag of the previous step.
    """
    one_hot = jax.nn.one_hot(prev_action, task.num_actions, dtype=jnp.float32)  # -1 -> zeros
    scalars = jnp.stack([jnp.asarray(prev_reward, jnp.float32), jnp.asarray(prev_done, jnp.float32)])
    return jnp.concatenate([jnp.asarray(obs, jnp.float32), one_hot, scalars])


def trial_inputs(task: Task, transitions: Transition) -> tuple[Array, Array]:
    """Inputs and reset flags of a stored sequence (one trial or consecutive trials).

    Args:
        transitions: time-major ``[T, ...]`` :class:`~models.agent.Transition`.

    Returns:
        ``(inputs [T, input_dim], resets [T])``: ``resets[t] = 1`` where step ``t`` starts a
        trial (``env_state.t == 0``); there the previous action, reward and done are zeroed.
    """
    resets = transitions.env_state.t == 0
    prev = lambda x, fill: jnp.concatenate([jnp.full((1,), fill, x.dtype), x[:-1]])
    prev_action = jnp.where(resets, -1, prev(transitions.action, -1))
    prev_reward = jnp.where(resets, 0.0, prev(transitions.reward, 0))
    prev_done = jnp.where(resets, 0, prev(transitions.done, 0))
    inputs = jax.vmap(lambda o, a, r, d: step_inputs(task, o, a, r, d))(
        transitions.obs, prev_action, prev_reward, prev_done
    )
    return inputs, resets.astype(jnp.float32)


def policy_step(params: dict, carry: tuple, inputs: Array, reset: Array) -> tuple[tuple, Array, Array]:
    """One step of the recurrent actor-critic (acting).

    Args:
        params: from :func:`network_init`.
        carry: the S5 carry (one :class:`models.s5.SSMState` per layer).
        inputs: float32 ``[input_dim]``.
        reset: scalar flag; zeroes the memory before this step.

    Returns:
        ``(carry, logits [num_actions], value [])``.
    """
    carry, features = s5.encoder_step(params["encoder"], carry, inputs, reset)
    logits, value = _heads(params, features)
    return carry, logits, value


def policy_sequence(
    params: dict, inputs: Array, resets: Array, *, mode: str = "sequential"
) -> tuple[Array, Array]:
    """The actor-critic over a whole stored sequence from a zero memory (the PPO update).

    Args:
        inputs: float32 ``[T, input_dim]``; resets: ``[T]`` flags.
        mode: the S5 sequence form, ``"sequential"`` or ``"parallel"``.

    Returns:
        ``(logits [T, num_actions], values [T])``, equal (to float32 precision) to
        :func:`policy_step` applied step by step.
    """
    layers = params["encoder"]["layers"]
    carry = tuple(s5.initial_state(layer["ssm"].Lambda_im.shape[0]) for layer in layers)
    _, features = s5.encoder_apply(params["encoder"], carry, inputs, resets, mode=mode)
    return _heads(params, features)



class RL2AgentState(NamedTuple):
    """The agent's state *before* it acts at the current step.

    Attributes:
        carry: the S5 carry after the current step's input (one state per layer).
        logits: float32 ``[num_actions]`` of the policy at the current step.
        value: float32 scalar, the critic at the current step.
    """

    carry: tuple
    logits: Array
    value: Array


class ActInfo(NamedTuple):
    """Per-step diagnostics of :func:`make_agent`'s ``act``: ``log_prob`` of the action taken
    and the critic's ``value`` (float32 scalars)."""

    log_prob: Array
    value: Array


def make_agent(task: Task, config: RL2Config, params: dict, *, evaluation: bool) -> Agent:
    """The RL^2 agent with parameters ``params``.

    The S5 advances once per real step: ``init`` consumes the trial's first observation (the
    deterministic start, :func:`models.task.reset`) and ``update`` the transition's next
    observation with its action, reward and done flag; ``act`` reads the stored logits and
    samples them (``evaluation=False``) or takes their argmax (``evaluation=True``).
    """
    encoder_config = _encoder_config(task, config)

    def init(rng_key: Array, task_params: Any) -> RL2AgentState:
        _, obs = task_lib.reset(rng_key, task_params, task)  # the start does not depend on the task
        inputs = step_inputs(task, obs, -1, 0.0, 0)
        carry, logits, value = policy_step(params, s5.encoder_initial_carry(encoder_config), inputs, True)
        return RL2AgentState(carry, logits, value)

    def act(rng_key: Array, agent_state: RL2AgentState, env_state, obs) -> tuple[Array, ActInfo]:
        del env_state, obs  # already consumed by init / update
        if evaluation:
            action = jnp.argmax(agent_state.logits).astype(jnp.int32)
        else:
            action = jax.random.categorical(rng_key, agent_state.logits).astype(jnp.int32)
        return action, ActInfo(ppo.log_prob(agent_state.logits, action), agent_state.value)

    def update(agent_state: RL2AgentState, transition: Transition) -> RL2AgentState:
        inputs = step_inputs(task, transition.next_obs, transition.action, transition.reward, transition.done)
        carry, logits, value = policy_step(params, agent_state.carry, inputs, False)
        return RL2AgentState(carry, logits, value)

    return Agent(init=init, act=act, update=update)



class RL2State(NamedTuple):
    """The training state (all arrays; checkpointable).

    Attributes:
        params: network parameters.
        opt_state: the optax state.
        rng_key: the key of the next iteration.
        iteration: int32 scalar, iterations done.
    """

    params: dict
    opt_state: Any
    rng_key: Array
    iteration: Array


class _Batch(NamedTuple):
    inputs: Array  # [B, T, input_dim]
    resets: Array  # [B, T]
    actions: Array  # [B, T]
    log_prob: Array  # [B, T]
    values: Array  # [B, T]
    advantages: Array  # [B, T]
    returns: Array  # [B, T]


def _optimizer(config: RL2Config) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate))


def _init(task: Task, config: RL2Config, rng_key: Array) -> RL2State:
    init_key, rng_key = jax.random.split(rng_key)
    params = network_init(init_key, task, config)
    return RL2State(params, _optimizer(config).init(params), rng_key, jnp.zeros((), jnp.int32))


def make_iteration(task: Task, config: RL2Config):
    """The pure (un-jitted) iteration ``RL2State -> (RL2State, metrics)``; see the module doc.

    ``metrics`` (float32 scalars): ``return`` (mean trial return of the iteration's rollouts),
    ``loss``, ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``, ``clip_fraction``
    (means over all minibatch steps) and ``grad_norm`` (before clipping).
    """
    optimizer = _optimizer(config)
    B, T = config.num_envs, task.trial_length
    minibatch = B // config.num_minibatches
    terminal = jnp.zeros((T,), jnp.int32).at[-1].set(1)  # each stored sequence is one whole trial

    def loss_fn(params: dict, batch: _Batch) -> tuple[Array, ppo.LossInfo]:
        logits, values = jax.vmap(lambda u, r: policy_sequence(params, u, r, mode=config.encoder.mode))(
            batch.inputs, batch.resets
        )
        advantages = ppo.normalize(batch.advantages) if config.normalize_advantages else batch.advantages
        return ppo.ppo_loss(
            logits, values, batch.actions, batch.log_prob, batch.values, advantages, batch.returns,
            clip_eps=config.clip_eps, value_coef=config.value_coef, entropy_coef=config.entropy_coef,
        )

    def minibatch_step(carry, batch: _Batch):
        params, opt_state = carry
        (_, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), (info, optax.tree.norm(grads))

    def epoch(carry, rng_key, batch: _Batch):
        order = jax.random.permutation(rng_key, B)
        shuffled = jax.tree.map(
            lambda x: x[order].reshape((config.num_minibatches, minibatch) + x.shape[1:]), batch
        )
        return jax.lax.scan(minibatch_step, carry, shuffled)

    def iteration(state: RL2State) -> tuple[RL2State, dict[str, Array]]:
        rng_key, rollout_key, epoch_key = jax.random.split(state.rng_key, 3)
        agent = make_agent(task, config, state.params, evaluation=False)
        trajectory = run_trials(rollout_key, task, agent, B)
        transitions, info = trajectory.transitions, trajectory.info
        advantages, returns = jax.vmap(
            lambda r, v: ppo.gae(r, v, terminal, jnp.zeros(()), gamma=config.gamma,
                                 gae_lambda=config.gae_lambda)
        )(transitions.reward, info.value)
        inputs, resets = jax.vmap(lambda tr: trial_inputs(task, tr))(transitions)
        batch = _Batch(inputs, resets, transitions.action, info.log_prob, info.value, advantages, returns)
        (params, opt_state), (loss_info, grad_norm) = jax.lax.scan(
            lambda carry, key: epoch(carry, key, batch),
            (state.params, state.opt_state),
            jax.random.split(epoch_key, config.num_epochs),
        )
        metrics = {name: jnp.mean(value) for name, value in loss_info._asdict().items()}
        metrics["grad_norm"] = jnp.mean(grad_norm)
        metrics["return"] = jnp.mean(transitions.reward.sum(-1))
        metrics = {name: value.astype(jnp.float32) for name, value in metrics.items()}
        return RL2State(params, opt_state, rng_key, state.iteration + 1), metrics

    return iteration


def _check(task: Task, config: RL2Config) -> None:
    if not isinstance(task, Task):
        raise ValueError(f"RL^2 needs a models.task.Task, got {type(task).__name__}")
    if not isinstance(config, RL2Config):
        raise ValueError(f"RL^2 needs an RL2Config, got {type(config).__name__}")


def make_trainer(task: Task, config: RL2Config) -> Trainer:
    """RL^2 as a :class:`inference.trainer.Trainer`.

    ``init(rng_key)`` -> :class:`RL2State`; ``iteration`` is jit-compiled once;
    ``agent(state, evaluation)`` -> the :func:`make_agent` agent of the state's parameters;
    ``env_steps_per_iteration = num_envs * trial_length``.

    Raises:
        ValueError: for a wrong task or config type (config values are validated by
            :class:`RL2Config` itself).
    """
    _check(task, config)
    return Trainer(
        init=lambda rng_key: _init(task, config, rng_key),
        iteration=jax.jit(make_iteration(task, config)),
        agent=lambda state, evaluation=True: make_agent(task, config, state.params, evaluation=evaluation),
        env_steps_per_iteration=config.num_envs * task.trial_length,
        config=config,
    )


def make_train(task: Task, config: RL2Config, num_iterations: int):
    """The purejaxrl shape: a pure ``train(rng_key) -> (RL2State, metrics)``.

    ``metrics`` is the dict of :func:`make_iteration` with a leading axis
    ``[num_iterations]``. ``train`` runs every iteration in one ``lax.scan``; jit it (and
    ``jax.vmap`` it over keys for several seeds).

    Raises:
        ValueError: for a non-positive ``num_iterations`` or a wrong task/config type.
    """
    _check(task, config)
    if isinstance(num_iterations, bool) or not isinstance(num_iterations, int) or num_iterations < 1:
        raise ValueError(f"num_iterations must be a positive int, got {num_iterations!r}")
    iteration = make_iteration(task, config)

    def train(rng_key: Array) -> tuple[RL2State, dict[str, Array]]:
        state = _init(task, config, rng_key)
        return jax.lax.scan(lambda s, _: iteration(s), state, None, length=num_iterations)

    return train
