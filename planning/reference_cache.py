"""The on-disk cache of reference values and the project's cache folder.

The cache folder is ``$VARIBASED_CACHE`` if set, else ``$XDG_CACHE_HOME/varibased``, else
``~/.cache/varibased``. References live in its ``references/`` folder, one JSON file per key;
the key is the task's full configuration (the factory's keyword arguments with its defaults),
the number of trials, the seed, the code version (``varibased.__version__`` and a hash of the
sources of ``models`` and ``planning``) and a hash of the source of the module that defines
the task's factory (so an edited custom task is recomputed). A task whose factory's source
cannot be read (defined interactively, or registered as a ready ``Task``) is not cached on
disk. A corrupt cache file is reported and recomputed, never trusted.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["CACHE_ENV", "cache_dir", "code_version", "cache_key", "load", "store"]

#: Environment variable: the project's cache folder.
CACHE_ENV = "VARIBASED_CACHE"


def cache_dir() -> pathlib.Path:
    """The project's cache folder (not created here)."""
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base).expanduser() / "varibased"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``__version__`` plus a hash of the library's ``models`` and ``planning`` sources."""
    digest = hashlib.sha256()
    for package in ("varibased.models", "varibased.planning"):  # imported by now (this is planning)
        for path in sorted(pathlib.Path(sys.modules[package].__file__).parent.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{sys.modules['varibased'].__version__}+{digest.hexdigest()[:16]}"


def _module_source_hash(factory: Callable) -> str | None:
    module = inspect.getmodule(factory)
    if module is None or module.__name__ == "varibased.models.registry":  # a ready Task, wrapped
        return None
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def _full_config(factory: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        bound = inspect.signature(factory).bind_partial(**kwargs)
    except (TypeError, ValueError):
        return dict(kwargs)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items()
            if inspect.signature(factory).parameters[k].kind not in (inspect.Parameter.VAR_KEYWORD,
                                                                     inspect.Parameter.VAR_POSITIONAL)}


def cache_key(name: str, factory: Callable, kwargs: dict[str, Any], num_trials: int, seed: int) -> str | None:
    """The cache key of a task's references (a sha256), or None when it cannot be cached."""
    source = _module_source_hash(factory)
    if source is None:
        return None
    fields = {"task": name, "config": _full_config(factory, kwargs), "num_trials": num_trials, "seed": seed,
              "code": code_version(), "factory": getattr(factory, "__qualname__", repr(factory)),
              "source": source}
    try:
        text = json.dumps(fields, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _path(name: str, key: str) -> pathlib.Path:
    return cache_dir() / "references" / f"{name}-{key[:24]}.json"


def load(name: str, key: str) -> tuple[dict[str, Any] | None, pathlib.Path]:
    """``(references, path)`` from the cache, ``(None, path)`` on a miss or a corrupt file
    (reported on stderr; it will be overwritten)."""
    path = _path(name, key)
    if not path.exists():
        return None, path
    try:
        entry = json.loads(path.read_text())
        refs = entry["references"]
        if entry.get("key") != key or not isinstance(refs, dict) or "reference" not in refs \
                or "random" not in refs:
            raise ValueError("not a references entry of this key")
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"warning: the cached references {path} are corrupt ({error}); recomputing them",
              file=sys.stderr)
        return None, path
    return refs, path


def store(path: pathlib.Path, key: str, refs: dict[str, Any]) -> None:
    """Write a cache entry atomically; a cache folder that cannot be written is reported, not fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "references": refs}, indent=1))
        tmp.replace(path)
    except OSError as error:
        print(f"warning: could not write the references cache {path} ({error})", file=sys.stderr)
