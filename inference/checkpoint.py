"""Checkpoints: a pytree of arrays in a plain ``.npz`` (no pickle), written atomically.

Format (version 1): an uncompressed NumPy ``.npz`` holding ``leaf_00000 ...`` arrays and a
``__meta__`` entry with JSON: the format tag and version, the tree structure (as a string,
to detect a foreign or mismatched checkpoint), each leaf's shape and dtype, which leaves are
typed PRNG keys, and free-form user ``metadata`` (config, iteration, ...). Loading never
unpickles (``allow_pickle=False``) and checks everything against a template state before
returning, so a corrupt, truncated or foreign file is refused with a clear message: the
header's types, then each array's stored shape and dtype (read from its ``.npy`` header, so a
crafted header larger than the state is refused before anything is allocated), then the data,
and every float array must be finite (an all-NaN state is not a checkpoint).

Writes go to a temporary file in the same directory, are flushed and fsynced, and then
renamed over the target (``os.replace`` is atomic on POSIX): an interrupted write never
leaves a corrupt checkpoint under the final name. The file gets the mode of any file the user
creates (``0o666`` less the umask), like the run's other files.
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


def _file_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open()`` gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save(path: str | os.PathLike, state: Any, metadata: dict[str, Any] | None = None) -> None:
    """Write ``state`` (a pytree of arrays) and JSON-able ``metadata`` to ``path`` atomically.

    Raises:
        CheckpointError: a leaf is not a numeric, bool or PRNG-key array (e.g. an ``object``
            array, which ``load`` could never read back), or ``metadata`` is not valid JSON;
            nothing is written.
    """
    path = pathlib.Path(path)
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(state)
    arrays, keys = {}, []
    for i, (key_path, leaf) in enumerate(leaves_with_paths):
        if _is_key(leaf):
            keys.append(i)
            leaf = jax.random.key_data(leaf)
        array = np.asarray(leaf)
        if array.dtype.kind not in "biufc":
            raise CheckpointError(f"cannot checkpoint leaf {jax.tree_util.keystr(key_path) or i} of dtype "
                                  f"{array.dtype}: only numeric, bool and PRNG-key arrays are saved")
        arrays[f"leaf_{i:05d}"] = array
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "treedef": str(treedef),
        "leaves": [[list(a.shape), str(a.dtype)] for a in arrays.values()],
        "prng_keys": keys,
        "metadata": metadata or {},
    }
    try:
        meta_bytes = json.dumps(meta, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint metadata for {path} is not valid JSON: {error}") from error
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(meta_bytes, np.uint8), **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_header(path: pathlib.Path, meta: Any) -> dict[str, Any]:
    """``meta`` if every field has the type this module writes; else a CheckpointError."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its header is not a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a varibased checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}, expected {VERSION}")
    problems = []
    if not isinstance(meta.get("treedef"), str):
        problems.append("'treedef' is missing or not a string")
    leaves = meta.get("leaves")
    if not isinstance(leaves, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], list)
            and all(_is_int(n) and n >= 0 for n in e[0]) and isinstance(e[1], str) for e in leaves):
        problems.append("'leaves' is not a list of [shape, dtype]")
    keys = meta.get("prng_keys")
    if not isinstance(keys, list) or not all(_is_int(k) for k in keys):
        problems.append("'prng_keys' is not a list of ints")
    if not isinstance(meta.get("metadata"), dict):
        problems.append("'metadata' is not a JSON object")
    if problems:
        raise CheckpointError(f"{path} has a damaged header: " + "; ".join(problems))
    return meta


def _open(path: pathlib.Path) -> tuple[dict[str, Any], Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a readable varibased checkpoint")
    try:
        archive = np.load(path, allow_pickle=False)
        meta = json.loads(bytes(archive["__meta__"]).decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError,
            AttributeError) as error:
        raise CheckpointError(f"{path} is not a readable varibased checkpoint ({error})") from error
    return _check_header(path, meta), archive


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The user metadata of a checkpoint (validates the header, not the arrays)."""
    meta, _ = _open(pathlib.Path(path))
    return meta["metadata"]


def _stored_header(path: pathlib.Path, archive: Any, name: str) -> tuple[tuple, np.dtype]:
    """Shape and dtype of array ``name`` from its ``.npy`` header, without reading its data."""
    try:
        with archive.zip.open(f"{name}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(handle)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path} is corrupt: array {name} unreadable ({error})") from error
    return tuple(shape), dtype


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Read a checkpoint into the structure of ``template`` (e.g. a freshly initialized state).

    Every array's shape and dtype is checked against the template from the file's headers
    before any data is read; after reading, every float array must be finite.

    Returns:
        ``(state, metadata)``.

    Raises:
        CheckpointError: when the file is missing, empty, corrupt, foreign, has a damaged
            header, its structure, shapes or dtypes differ from the template's (a checkpoint
            of another config or agent), or it holds non-finite floats.
    """
    path = pathlib.Path(path)
    meta, archive = _open(path)
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = [leaf for _, leaf in leaves_with_paths]
    if meta["treedef"] != str(treedef) or len(meta["leaves"]) != len(leaves):
        raise CheckpointError(
            f"{path} holds a state of another structure than this run's "
            f"({len(meta['leaves'])} arrays vs {len(leaves)}): a checkpoint of another agent or config"
        )
    key_leaves = [i for i, leaf in enumerate(leaves) if _is_key(leaf)]
    if sorted(meta["prng_keys"]) != key_leaves:
        raise CheckpointError(f"{path}: its PRNG-key arrays {sorted(meta['prng_keys'])} are not the "
                              f"run's {key_leaves}")
    expected = [np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf) for leaf in leaves]
    for i, want in enumerate(expected):  # headers only: nothing is allocated yet
        shape, dtype = _stored_header(path, archive, f"leaf_{i:05d}")
        if shape != want.shape or dtype != want.dtype:
            raise CheckpointError(
                f"{path}: array {i} has shape {shape} and dtype {dtype}, the run expects "
                f"{want.shape} and {want.dtype} (a checkpoint of another config?)"
            )
    restored = []
    for i, (key_path, leaf) in enumerate(leaves_with_paths):
        try:
            array = archive[f"leaf_{i:05d}"]
        except (KeyError, ValueError, EOFError, zipfile.BadZipFile, OSError) as error:
            raise CheckpointError(f"{path} is corrupt: array {i} unreadable ({error})") from error
        if _is_key(leaf):
            restored.append(jax.random.wrap_key_data(jnp.asarray(array), impl=jax.random.key_impl(leaf)))
            continue
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            raise CheckpointError(f"{path}: array {i} ({jax.tree_util.keystr(key_path)}) holds non-finite "
                                  "values (NaN or inf): not a usable state")
        restored.append(jnp.asarray(array))
    return jax.tree.unflatten(treedef, restored), meta["metadata"]
