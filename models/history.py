"""History inputs of the learned belief and their S5 encoding.

A trial enters the learned model as a :class:`TrialBatch`. The encoder reads the history
inputs ``x_0 = (o_0, 0, 0, 0, 0)`` and ``x_t = (o_t, onehot(a_{t-1}), r_{t-1}, done_{t-1},
t / trial_length)``; its features at ``t`` are the history ``h_t`` every head reads (belief,
policy, value). Training on fixed windows from cached S5 states (the paper's mode) uses a
:class:`Window` built by :func:`make_window` from the carries of :func:`history_carries`.

The encoder functions take a :class:`~models.belief.BeliefParams` (they read its
``encoder`` field) and a :class:`~models.belief.BeliefConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from varibased.models import guides, s5
from varibased.models.task import Task

if TYPE_CHECKING:
    from varibased.models.belief import BeliefConfig, BeliefParams

Array = jax.Array

__all__ = [
    "TrialBatch",
    "Window",
    "input_dim",
    "history_input",
    "history_inputs",
    "encoder_config",
    "initial_carry",
    "encoder_step",
    "encode_history",
    "history_carries",
    "make_window",
    "batch_features",
    "belief_steps",
    "batch_from_trajectory",
    "check_batch",
    "check_model_arguments",
]


class TrialBatch(NamedTuple):
    """Trials as the model consumes them (``[B, T, ...]``; one trial: ``[T, ...]``).

    Attributes:
        obs: float32 ``[..., T, obs_dim]``, the observation each action was taken at.
        actions: int32 ``[..., T]``.
        rewards: float32 ``[..., T]``, reward values; ``None`` for the model to generate them.
        dones: int32 ``[..., T]``, episode-done after the step.
        next_obs: float32 ``[..., T, obs_dim]``, the environment's next observation (the next
            episode's start after a done); input of the encoder.
        moved_obs: float32 ``[..., T, obs_dim]``, the observation of the state moved into;
            input of the decoder.
    """

    obs: Array
    actions: Array
    rewards: Array | None
    dones: Array
    next_obs: Array
    moved_obs: Array


class Window(NamedTuple):
    """A fixed window of beliefs per trial, encoded from a cached S5 state (the paper's
    training mode; the default re-encodes every trial from its start).

    Attributes:
        carry: the encoder carry before input ``start`` (pytree with leading ``[B]``),
            typically cached when the trial was played (so computed with older parameters).
        inputs: float32 ``[B, W, D]``, the history inputs ``start .. start + W - 1``.
        start: int32 ``[B]``, the first belief of each window (``0 <= start <= T - W``).
    """

    carry: Any
    inputs: Array
    start: Array


def input_dim(task: Task) -> int:
    """Size of one history input: ``obs_dim + num_actions + 3``."""
    return task.obs_dim + task.num_actions + 3


def history_input(obs: Array, prev_action: Array, prev_reward: Array, done: Array,
                  num_actions: int, t: Array, trial_length: int) -> Array:
    """One encoder input ``(obs, onehot(prev_action), prev_reward, done, t / trial_length)``.

    The trial step is an input so that the value and policy heads (and the belief) know how
    much of the trial is left: the tasks' returns are undiscounted sums over the trial.

    Args:
        obs: float32 ``[obs_dim]``, the current observation.
        prev_action: int32 scalar; a negative value (no previous action) gives a zero one-hot.
        prev_reward: float32 scalar (0 at the first step).
        done: the previous step ended an episode (0/1).
        t: int32 scalar, the trial step of ``obs`` (0 at the start).
        trial_length: steps per trial.

    Returns:
        float32 ``[obs_dim + num_actions + 3]``.
    """
    return jnp.concatenate([
        jnp.asarray(obs, jnp.float32),
        jax.nn.one_hot(prev_action, num_actions, dtype=jnp.float32),
        jnp.asarray(prev_reward, jnp.float32)[None],
        jnp.asarray(done, jnp.float32)[None],
        (jnp.asarray(t, jnp.float32) / trial_length)[None],
    ])


def history_inputs(trial: TrialBatch, num_actions: int, trial_length: int | None = None) -> Array:
    """The ``T + 1`` encoder inputs of ONE trial (``[T, ...]`` fields): float32 ``[T+1, D]``.

    The trial starts at trial step 0; ``trial_length`` (default ``T``, a whole trial)
    normalizes the time input, so pass the task's for a prefix of a trial.
    """
    T = trial.actions.shape[0]
    length = T if trial_length is None else trial_length
    first = history_input(trial.obs[0], -1, 0.0, 0, num_actions, 0, length)
    rest = jax.vmap(lambda o, a, r, d, t: history_input(o, a, r, d, num_actions, t, length))(
        trial.next_obs, trial.actions, trial.rewards, trial.dones, jnp.arange(1, T + 1)
    )
    return jnp.concatenate([first[None], rest], axis=0)


def encoder_config(task: Task, config: BeliefConfig) -> s5.EncoderConfig:
    """The S5 encoder configuration for a task's history inputs."""
    return s5.EncoderConfig(
        input_dim=input_dim(task),
        hidden_size=config.hidden_size,
        state_size=config.state_size,
        num_layers=config.num_layers,
        mode=config.mode,
        input_hidden=config.input_hidden,
        step_min=config.step_min,
        step_max=config.step_max,
    )


def initial_carry(config: BeliefConfig) -> tuple[s5.SSMState, ...]:
    """The encoder carry before any input (zeros): one :class:`s5.SSMState` per layer."""
    return tuple(s5.initial_state(config.state_size) for _ in range(config.num_layers))


def encoder_step(params: BeliefParams, carry, inputs: Array, reset: Array = False):
    """One encoder step: ``(carry, input [D]) -> (carry, features [H])``."""
    return s5.encoder_step(params.encoder, carry, inputs, reset)


def encode_history(params: BeliefParams, inputs: Array, config: BeliefConfig, carry=None):
    """Encode a sequence of history inputs ``[N, D]`` -> ``(carry, features [N, H])``, from
    ``carry`` (default: the empty history's)."""
    carry = initial_carry(config) if carry is None else carry
    return s5.encoder_apply(params.encoder, carry, inputs, mode=config.mode)


def history_carries(params: BeliefParams, trial: TrialBatch, task: Task, config: BeliefConfig):
    """The encoder carry BEFORE each history input ``t = 0..T-1`` of ONE trial (leading
    ``[T]``): the S5 states to cache for training on windows (:class:`Window`)."""
    inputs = history_inputs(trial, task.num_actions, task.trial_length)[:-1]

    def body(carry, x):
        return encoder_step(params, carry, x)[0], carry

    return jax.lax.scan(body, initial_carry(config), inputs)[1]


def make_window(batch: TrialBatch, carries, start: Array, length: int, task: Task) -> Window:
    """The :class:`Window` of ``length`` beliefs from ``start`` (int32 ``[B]``) of every trial
    of ``batch`` (``[B, T, ...]``), given the cached ``carries`` of :func:`history_carries`
    (leading ``[B, T]``)."""
    inputs = jax.vmap(lambda trial: history_inputs(trial, task.num_actions, task.trial_length))(batch)
    take = jax.vmap(lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, length, axis=0))
    carry = jax.tree.map(lambda c: jax.vmap(lambda ci, s: ci[s])(c, start), carries)
    return Window(carry, take(inputs, start), jnp.asarray(start, jnp.int32))


def batch_features(params: BeliefParams, batch: TrialBatch, window: Window | None, task: Task,
                   config: BeliefConfig) -> Array:
    """S5 features of every belief of a batch ``[B, T, ...]``: ``[B, T+1, H]`` from each
    trial's start, or ``[B, W, H]`` on a :class:`Window`."""
    if window is not None:
        return jax.vmap(lambda x, c: encode_history(params, x, config, carry=c)[1])(
            window.inputs, window.carry)
    inputs = jax.vmap(lambda trial: history_inputs(trial, task.num_actions, task.trial_length))(batch)
    return jax.vmap(lambda x: encode_history(params, x, config)[1])(inputs)


def belief_steps(batch: TrialBatch, window: Window | None) -> Array:
    """The trial step of every belief of a batch: int32 ``[B, T+1]``, or ``[B, W]`` on a
    :class:`Window`."""
    B, T = batch.actions.shape
    if window is None:
        return jnp.broadcast_to(jnp.arange(T + 1), (B, T + 1))
    return window.start[:, None] + jnp.arange(window.inputs.shape[1])


def batch_from_trajectory(task: Task, trajectory) -> TrialBatch:
    """A :class:`TrialBatch` from a :class:`~planning.rollout.Trajectory` (any leading axes)."""
    tr = trajectory.transitions

    def moved(state, action):
        return task.observe(task.transition(state, action))

    for _ in range(tr.action.ndim):
        moved = jax.vmap(moved)
    return TrialBatch(
        obs=jnp.asarray(tr.obs, jnp.float32),
        actions=jnp.asarray(tr.action, jnp.int32),
        rewards=jnp.asarray(tr.reward, jnp.float32),
        dones=jnp.asarray(tr.done, jnp.int32),
        next_obs=jnp.asarray(tr.next_obs, jnp.float32),
        moved_obs=moved(tr.env_state.state, jnp.asarray(tr.action, jnp.int32)),
    )


def check_batch(task: Task, batch: TrialBatch) -> None:
    """Raise unless ``batch`` is a :class:`TrialBatch` ``[B, T, ...]`` of ``task`` (its
    ``rewards`` may be ``None``: the model then generates them)."""
    if not isinstance(batch, TrialBatch):
        raise TypeError(f"expected a TrialBatch, got {type(batch).__name__}")
    if batch.actions.ndim != 2:
        raise ValueError(f"TrialBatch.actions must be [B, T], got shape {batch.actions.shape}")
    B, T = batch.actions.shape
    for name, shape in (("obs", (B, T, task.obs_dim)), ("rewards", (B, T)), ("dones", (B, T)),
                        ("next_obs", (B, T, task.obs_dim)), ("moved_obs", (B, T, task.obs_dim))):
        field = getattr(batch, name)
        if field is None and name == "rewards":
            continue
        if field.shape != shape:
            raise ValueError(f"TrialBatch.{name} must have shape {shape}, got {field.shape}")


def check_model_arguments(batch, policy_targets, value_targets, window, task: Task,
                          config: BeliefConfig, subsample_key=None) -> None:
    """Raise on arguments of :func:`models.belief.model` / :func:`~models.belief.guide` of the
    wrong type or shape."""
    check_batch(task, batch)
    if batch.rewards is None and not (policy_targets is None and value_targets is None and window is None
                                      and subsample_key is None):
        raise ValueError("batch.rewards=None (generate) takes no targets, window nor subsample_key: "
                         "they read the history")
    B, T = batch.actions.shape
    P, A = T, task.num_actions
    if window is not None:
        if not isinstance(window, Window):
            raise TypeError(f"window must be a Window, got {type(window).__name__}")
        if not guides.family(config).supports_windows:
            raise ValueError(f"training windows need guide='diagonal' (the {config.guide!r} "
                             "guide sums factors from the trial's start)")
        P = window.inputs.shape[1]
        D = input_dim(task)
        if window.inputs.shape != (B, P, D) or not 1 <= P <= T:
            raise ValueError(f"Window.inputs must have shape [B={B}, W, D={D}] with "
                             f"1 <= W <= T={T}, got {window.inputs.shape}")
        if window.start.shape != (B,):
            raise ValueError(f"Window.start must have shape ({B},), got {window.start.shape}")
    if policy_targets is not None and policy_targets.shape != (B, P, A):
        raise ValueError(f"policy_targets must have shape {(B, P, A)}, got {policy_targets.shape}")
    if value_targets is not None and value_targets.shape != (B, P):
        raise ValueError(f"value_targets must have shape {(B, P)}, got {value_targets.shape}")
