"""The replay of whole trials with their planner targets: a ring buffer of fixed capacity.

One concept, two layouts: :class:`Replay` (the default: trials are re-encoded from their
start at every update) and :class:`CachedReplay`, which also keeps the S5 carry before every
step for the paper's fixed-window training (``EMConfig.window > 0``). They are separate
types so that the default mode's checkpoints keep their structure.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from varibased.models.history import TrialBatch

Array = jax.Array

__all__ = ["Replay", "CachedReplay", "empty", "insert", "sample_indices"]


class Replay(NamedTuple):
    """A ring buffer of whole trials (leading axis ``R``, the capacity).

    Attributes:
        batch: the trials (:class:`varibased.models.history.TrialBatch`, ``[R, T, ...]``).
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
    """The fields of :class:`Replay` and ``carries``, the S5 carry before every step
    (leading ``[R, T]``), for window mode."""

    batch: TrialBatch
    policy_targets: Array
    value_targets: Array
    size: Array
    cursor: Array
    carries: Any


def empty(capacity: int, trial_length: int, num_actions: int, obs_dim: int,
          carry: Any | None = None) -> Replay | CachedReplay:
    """An empty replay; with ``carry`` (one S5 carry, the template) a :class:`CachedReplay`."""
    R, T, A, d = capacity, trial_length, num_actions, obs_dim
    batch = TrialBatch(
        obs=jnp.zeros((R, T, d), jnp.float32), actions=jnp.zeros((R, T), jnp.int32),
        rewards=jnp.zeros((R, T), jnp.float32), dones=jnp.zeros((R, T), jnp.int32),
        next_obs=jnp.zeros((R, T, d), jnp.float32), moved_obs=jnp.zeros((R, T, d), jnp.float32),
    )
    fields = (batch, jnp.full((R, T, A), 1.0 / A, jnp.float32), jnp.zeros((R, T), jnp.float32),
              jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    if carry is None:
        return Replay(*fields)
    return CachedReplay(*fields, jax.tree.map(lambda c: jnp.zeros((R, T) + c.shape, c.dtype), carry))


def insert(replay: Replay | CachedReplay, batch: TrialBatch, policy_targets: Array,
           value_targets: Array, carries: Any | None = None) -> Replay | CachedReplay:
    """Write ``N`` new trials (leading axis ``N``) at the cursor, overwriting the oldest."""
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


def sample_indices(rng_key: Array, replay: Replay | CachedReplay, shape: tuple[int, ...]) -> Array:
    """Uniform indices ``shape`` of stored trials (int32, in ``[0, size)``)."""
    return jax.random.randint(rng_key, shape, 0, replay.size)
