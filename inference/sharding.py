"""Scale out with JAX's own sharding: environments and seeds across the available devices.

A training iteration is written for one device; the same code runs on several by *placing*
it on a :class:`jax.sharding.Mesh` (GSPMD partitions the jitted program, no ``pmap``, no
change to the trainer):

* **environments** (:func:`shard_trainer`): the ``num_envs`` trials of an iteration's
  rollout are split across the mesh axis ``"envs"`` (:data:`planning.rollout.ENV_AXIS`):
  :func:`planning.rollout.run_trials` constrains its per-trial keys and tasks to that axis
  whenever the mesh is current while tracing; the training state stays replicated and
  the M-step's reductions over trials become cross-device sums. Per-trial values are those
  of the single-device run; sums may differ in the last float32 bits (summation order).
* **seeds** (:func:`shard_seeds`): independent runs stacked on a leading axis, vmapped and
  split across the mesh axis ``"seeds"``; nothing crosses seeds, so each equals its own
  single-device run.

Example (two GPUs, or CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` set
before jax is imported)::

    mesh = sharding.make_mesh()                     # all devices on "envs"
    trainer = sharding.shard_trainer(em.make_trainer(task, config), mesh)
    runner.train(run_dir, run_config, task, trainer, refs)   # as on one device

A multi-host run calls ``jax.distributed.initialize()`` first on every host; ``jax.devices()``
then lists every host's devices and the same mesh spans them (see the README, Reliability).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from varibased.inference.trainer import Trainer
from varibased.models.rollout import ENV_AXIS

__all__ = ["ENV_AXIS", "SEED_AXIS", "make_mesh", "replicate", "shard_trainer", "SeedTrainer",
           "shard_seeds", "select_seed"]

#: Mesh axis of independent seeds.
SEED_AXIS = "seeds"


def make_mesh(num_seed_shards: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(seeds, envs)`` mesh over ``devices`` (default: all of ``jax.devices()``).

    Args:
        num_seed_shards: devices along ``"seeds"``; the rest of the factor goes to ``"envs"``.
        devices: the devices to use (e.g. ``jax.devices()[:2]``).

    Returns:
        A 2-D :class:`jax.sharding.Mesh` with axes ``("seeds", "envs")`` of sizes
        ``(num_seed_shards, len(devices) // num_seed_shards)``.

    Raises:
        ValueError: no devices, or ``num_seed_shards`` not dividing their number.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices given")
    if isinstance(num_seed_shards, bool) or not isinstance(num_seed_shards, int) or num_seed_shards < 1:
        raise ValueError(f"make_mesh: num_seed_shards must be a positive int, got {num_seed_shards!r}")
    if len(devices) % num_seed_shards:
        raise ValueError(f"make_mesh: num_seed_shards ({num_seed_shards}) must divide the number of "
                         f"devices ({len(devices)})")
    grid = np.array(devices, dtype=object).reshape(num_seed_shards, len(devices) // num_seed_shards)
    return Mesh(grid, (SEED_AXIS, ENV_AXIS))


def _check_mesh(mesh: Any, axis: str) -> None:
    if not isinstance(mesh, Mesh):
        raise ValueError(f"expected a jax.sharding.Mesh (see make_mesh), got {type(mesh).__name__}")
    if axis not in mesh.axis_names:
        raise ValueError(f"the mesh has axes {mesh.axis_names}, not {axis!r} (see make_mesh)")


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of ``tree`` whole on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_trainer(trainer: Trainer, mesh: Mesh) -> Trainer:
    """The same trainer with each iteration's environments split across ``mesh``'s ``"envs"``.

    The state is replicated; ``iteration`` is jitted for the mesh (compiled once), tracing
    ``trainer.iteration`` with the mesh current so that
    :func:`planning.rollout.run_trials` shards its trials. ``agent`` is unchanged
    (evaluation runs replicated).

    Raises:
        ValueError: a mesh without the ``"envs"`` axis, a ``"seeds"`` axis larger than 1 (use
            :func:`shard_seeds`), or ``config.num_envs`` not divisible by the ``"envs"`` size.
    """
    if not isinstance(trainer, Trainer):
        raise ValueError(f"shard_trainer needs an inference.trainer.Trainer, got {type(trainer).__name__}")
    _check_mesh(mesh, ENV_AXIS)
    if dict(mesh.shape).get(SEED_AXIS, 1) != 1:
        raise ValueError(f"shard_trainer shards one run's environments; the mesh has "
                         f"{mesh.shape[SEED_AXIS]} seed shards (use shard_seeds)")
    size = mesh.shape[ENV_AXIS]
    num_envs = getattr(trainer.config, "num_envs", None)
    if num_envs is not None and num_envs % size:
        raise ValueError(f"num_envs ({num_envs}) must be divisible by the {size} devices of the "
                         f"mesh's {ENV_AXIS!r} axis")
    replicated = NamedSharding(mesh, PartitionSpec())

    def iteration(state: Any) -> tuple[Any, dict[str, jax.Array]]:
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return trainer.iteration(state)

    return trainer._replace(
        init=lambda rng_key: replicate(trainer.init(rng_key), mesh),
        iteration=jax.jit(iteration, in_shardings=replicated, out_shardings=replicated),
    )


class SeedTrainer(NamedTuple):
    """Independent runs of one trainer, stacked on a leading seed axis ``S``.

    Attributes:
        init: ``rng_keys [S] -> state [S, ...]`` (run ``i`` starts from ``rng_keys[i]``).
        iteration: ``state [S, ...] -> (state [S, ...], metrics {name: [S]})``, jitted.
        trainer: the single-seed trainer (``trainer.agent(select_seed(state, i), ...)``).
    """

    init: Callable[[jax.Array], Any]
    iteration: Callable[[Any], tuple[Any, dict[str, jax.Array]]]
    trainer: Trainer


def shard_seeds(trainer: Trainer, mesh: Mesh) -> SeedTrainer:
    """Run seeds side by side, split across ``mesh``'s ``"seeds"`` axis (the number of seeds
    must be a multiple of its size); inside each run the environments go on ``"envs"``.

    Raises:
        ValueError: a mesh without a ``"seeds"`` axis, or an ``init`` given a number of keys
            not divisible by its size.
    """
    if not isinstance(trainer, Trainer):
        raise ValueError(f"shard_seeds needs an inference.trainer.Trainer, got {type(trainer).__name__}")
    _check_mesh(mesh, SEED_AXIS)
    seeds = NamedSharding(mesh, PartitionSpec(SEED_AXIS))
    size = mesh.shape[SEED_AXIS]
    spmd_axis = SEED_AXIS if size > 1 else None

    def init(rng_keys: jax.Array) -> Any:
        shape = getattr(rng_keys, "shape", ())
        if len(shape) != 1 or shape[0] % size:
            raise ValueError(f"shard_seeds: init needs a 1-D array of keys whose length is a multiple "
                             f"of the mesh's {size} seed shards, got shape {shape}")
        return jax.device_put(jax.vmap(trainer.init)(rng_keys), seeds)

    def iteration(state: Any) -> tuple[Any, dict[str, jax.Array]]:
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return jax.vmap(trainer.iteration, spmd_axis_name=spmd_axis)(state)

    return SeedTrainer(init, jax.jit(iteration, in_shardings=seeds, out_shardings=seeds), trainer)


def select_seed(state: Any, index: int) -> Any:
    """The state of run ``index`` of a :class:`SeedTrainer` state (leading axis removed)."""
    return jax.tree.map(lambda x: x[index], state)
