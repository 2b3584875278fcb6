"""Parameter snapshots: the agent's PARAMETERS at every evaluation of a run.

A run directory keeps ``checkpoints/params_<env_steps>.npz`` (``../shared/RUNDIR.md``): the
trainer's parameters only (``trainer.params(state)``; no replay, no optimizer state), in the
format of :mod:`inference.checkpoint` (atomic write), with the metadata ``iteration`` and
``env_steps``. They let a benchmark evaluate a run's history (the gap decomposition of
``benchmarks/gap.py``, budget sweeps) without copying a large replay per evaluation::

    save_params_snapshot(run_dir, trainer, state, iteration, env_steps)   # by the runner
    for env_steps, params in load_params_snapshots(run_dir): ...          # by a benchmark

Readers never write inside the run directory.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

from varibased.inference import checkpoint
from varibased.inference.trainer import Trainer

__all__ = ["SNAPSHOT_DIR", "save_params_snapshot", "snapshot_paths", "params_template",
           "load_params_snapshot", "load_params_snapshots"]

#: The folder of a run directory that holds the snapshots.
SNAPSHOT_DIR = "checkpoints"
_NAME = re.compile(r"^params_(\d+)\.npz$")


def save_params_snapshot(run_dir: str | pathlib.Path, trainer: Trainer, state: Any,
                         iteration: int, env_steps: int) -> pathlib.Path | None:
    """Write ``checkpoints/params_<env_steps>.npz`` of ``state`` (atomically).

    Args:
        run_dir: the run directory.
        trainer: the run's trainer; nothing is written when ``trainer.params`` is ``None``.
        state: its training state.
        iteration, env_steps: where the run is (stored as metadata, and in the file name).

    Returns:
        The path written, or ``None``.
    """
    if trainer.params is None:
        return None
    path = pathlib.Path(run_dir) / SNAPSHOT_DIR / f"params_{int(env_steps)}.npz"
    checkpoint.save(path, trainer.params(state),
                    {"iteration": int(iteration), "env_steps": int(env_steps)})
    return path


def snapshot_paths(run_dir: str | pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """``(env_steps, path)`` of every snapshot of a run, by increasing ``env_steps``."""
    folder = pathlib.Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def params_template(saved: dict[str, Any]) -> Any:
    """Zero parameters of the structure, shapes and dtypes of the run whose ``config.json`` is
    ``saved`` (a dict with ``task``, ``agent``, ``agent_config``, optionally ``task_config``):
    what a snapshot must match. Traced by ``jax.eval_shape``, never compiled or run."""
    import jax
    import numpy as np

    from varibased.inference import agents
    from varibased.models import registry

    task = registry.make(saved["task"], **saved.get("task_config", {}))
    config = agents.config_from_json(saved["agent"], saved["agent_config"])
    trainer = agents.make_trainer(saved["agent"], task, config)
    if trainer.params is None:
        raise checkpoint.CheckpointError(f"agent {saved['agent']!r} exposes no parameters")
    shapes = jax.eval_shape(lambda key: trainer.params(trainer.init(key)), jax.random.key(0))
    return jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes)


def load_params_snapshot(path: str | pathlib.Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """``(params, metadata)`` of one snapshot, checked against ``template``
    (raises :class:`~inference.checkpoint.CheckpointError`)."""
    return checkpoint.load(path, template)


def load_params_snapshots(run_dir: str | pathlib.Path, template: Any = None, *,
                          last_only: bool = False) -> list[tuple[int, Any]]:
    """The parameter snapshots of a run, ``[(env_steps, params), ...]`` by increasing steps.

    Args:
        run_dir: a run directory (read only).
        template: parameters of the run's structure; built from its ``config.json`` by
            :func:`params_template` when ``None``.
        last_only: load only the last snapshot.

    Raises:
        inference.checkpoint.CheckpointError: a snapshot is unreadable or of another structure.
        inference.rundir.RunError: the directory holds no run (when ``template`` is ``None``).
    """
    paths = snapshot_paths(run_dir)
    if last_only:
        paths = paths[-1:]
    if paths and template is None:
        from varibased.inference.rundir import load_run

        template = params_template(load_run(run_dir))
    return [(steps, load_params_snapshot(path, template)[0]) for steps, path in paths]
