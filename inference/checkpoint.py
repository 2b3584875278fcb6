"""Checkpoints: a pytree of arrays in a plain ``.npz`` (no pickle), written atomically.

Format (version 1): an uncompressed NumPy ``.npz`` holding ``leaf_00000 ...`` arrays and a
``__meta__`` entry with JSON: the format tag and version, the tree structure (as a string,
to detect a foreign or mismatched checkpoint), each leaf's shape and dtype, which leaves are
typed PRNG keys, and free-form user ``metadata`` (config, iteration, ...). Loading never
unpickles (``allow_pickle=False``) and checks everything against a template state before
returning, so a corrupt, truncated or foreign file is refused with a clear message.

Writes go to a temporary file in the same directory, are flushed and fsynced, and then
renamed over the target (``os.replace`` is atomic on POSIX): an interrupted write never
leaves a corrupt checkpoint under the final name.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import tempfile
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["save", "load", "read_metadata", "CheckpointError"]

FORMAT = "varibased-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, foreign, or does not match the run."""


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def save(path: str | os.PathLike, state: Any, metadata: dict[str, Any] | None = None) -> None:
    """Write ``state`` (a pytree of arrays) and JSON-able ``metadata`` to ``path`` atomically."""
    path = pathlib.Path(path)
    leaves, treedef = jax.tree.flatten(state)
    arrays, keys = {}, []
    for i, leaf in enumerate(leaves):
        if _is_key(leaf):
            keys.append(i)
            leaf = jax.random.key_data(leaf)
        arrays[f"leaf_{i:05d}"] = np.asarray(leaf)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "treedef": str(treedef),
        "leaves": [[list(a.shape), str(a.dtype)] for a in arrays.values()],
        "prng_keys": keys,
        "metadata": metadata or {},
    }
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _open(path: pathlib.Path) -> tuple[dict[str, Any], Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        meta = json.loads(bytes(archive["__meta__"]).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not a readable varibased checkpoint ({error})") from error
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a varibased checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}, expected {VERSION}")
    return meta, archive


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The user metadata of a checkpoint (validates the header, not the arrays)."""
    meta, _ = _open(pathlib.Path(path))
    return meta["metadata"]


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Read a checkpoint into the structure of ``template`` (e.g. a freshly initialized state).

    Returns:
        ``(state, metadata)``.

    Raises:
        CheckpointError: when the file is missing, corrupt, foreign, or its structure, shapes
            or dtypes differ from the template's (a checkpoint of another config or agent).
    """
    path = pathlib.Path(path)
    meta, archive = _open(path)
    leaves, treedef = jax.tree.flatten(template)
    if meta["treedef"] != str(treedef) or len(meta["leaves"]) != len(leaves):
        raise CheckpointError(
            f"{path} holds a state of another structure than this run's "
            f"({len(meta['leaves'])} arrays vs {len(leaves)}): a checkpoint of another agent or config"
        )
    restored = []
    for i, leaf in enumerate(leaves):
        try:
            array = archive[f"leaf_{i:05d}"]
        except (KeyError, ValueError, zipfile.BadZipFile, OSError) as error:
            raise CheckpointError(f"{path} is corrupt: array {i} unreadable ({error})") from error
        if i in meta["prng_keys"]:
            if not _is_key(leaf):
                raise CheckpointError(f"{path}: array {i} is a PRNG key but the run expects data")
            expected = jax.random.key_data(leaf)
            if array.shape != expected.shape:
                raise CheckpointError(
                    f"{path}: PRNG key {i} has shape {array.shape}, expected {expected.shape}"
                )
            restored.append(jax.random.wrap_key_data(jnp.asarray(array), impl=jax.random.key_impl(leaf)))
            continue
        expected = np.asarray(leaf)
        if array.shape != expected.shape or array.dtype != expected.dtype:
            raise CheckpointError(
                f"{path}: array {i} has shape {array.shape} and dtype {array.dtype}, the run expects "
                f"{expected.shape} and {expected.dtype} (a checkpoint of another config?)"
            )
        restored.append(jnp.asarray(array))
    return jax.tree.unflatten(treedef, restored), meta["metadata"]
