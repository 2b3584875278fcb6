"""What a long command says while it works, and the persistent compilation cache.

Each phase announces itself on stderr in one line ("computing references…" or "references:
cached", "compiling…", then progress). On a terminal progress is a tqdm bar; without one
(a log file, a pipe, CI) it is line-based: one line every tenth of the work and at the end,
never a carriage return.

JAX's persistent compilation cache is on under ``<cache folder>/jax`` (the cache folder of
:func:`varibased.planning.reference_cache.cache_dir`; ``$JAX_COMPILATION_CACHE_DIR`` when set),
unless ``VARIBASED_NO_COMPILE_CACHE=1`` or ``--no-compile-cache``.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
from typing import Any

__all__ = ["NO_COMPILE_CACHE_ENV", "announce", "progress_bar", "LineProgress", "set_compile_cache",
           "compile_cache_wanted"]

#: Environment variable: set to 1 to turn the persistent compilation cache off.
NO_COMPILE_CACHE_ENV = "VARIBASED_NO_COMPILE_CACHE"
#: Compilations faster than this are not written to the persistent cache.
_MIN_COMPILE_SECONDS = 0.2


def announce(message: str, enabled: bool = True) -> None:
    """Print one phase line on stderr (flushed at once)."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


class LineProgress:
    """A tqdm-like progress report for logs: a line every ``1/lines`` of ``total`` and at
    :meth:`close`, with the latest :meth:`set_postfix` values; never a carriage return."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it", lines: int = 10,
                 file=None):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.file = file or sys.stderr
        self.every = max(1, total // max(lines, 1))
        self.postfix = ""
        self.start = time.perf_counter()
        self._printed_at = initial

    def update(self, n: int = 1) -> None:
        """Advance by ``n``; print a line when another tenth is done."""
        self.n += n
        if self.n - self._printed_at >= self.every and self.n < self.total:
            self._print()

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line (``key=value``)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _print(self) -> None:
        self._printed_at = self.n
        percent = 100 * self.n / self.total if self.total else 100
        elapsed = time.perf_counter() - self.start
        postfix = f" [{self.postfix}]" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({percent:.0f}%, {elapsed:.0f} s){postfix}",
              file=self.file, flush=True)

    def close(self) -> None:
        """Print the last line (once)."""
        if self._printed_at != self.n or self.n == 0:
            self._print()
        self._printed_at = self.n


class _Silent:
    """The progress bar of a run with progress off: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, initial: int = 0, enabled: bool = True, desc: str = "", unit: str = "it"):
    """A tqdm bar on a terminal, a :class:`LineProgress` without one, nothing when disabled."""
    if not enabled:
        return _Silent()
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True)
    return LineProgress(total, initial, desc, unit)


def compile_cache_wanted(flag_off: bool = False) -> bool:
    """Whether the persistent compilation cache should be on (not turned off by the flag or
    by ``VARIBASED_NO_COMPILE_CACHE``)."""
    return not flag_off and os.environ.get(NO_COMPILE_CACHE_ENV, "").strip() in ("", "0")


def set_compile_cache(enabled: bool) -> pathlib.Path | None:
    """Turn JAX's persistent compilation cache on (returns its folder: ``$JAX_COMPILATION_CACHE_DIR``
    if set, else ``jax/`` in the project's cache folder) or off (returns None). Takes effect for
    the next compilation."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from varibased.planning.reference_cache import cache_dir

    path = None
    if enabled:  # a folder or threshold the user set for JAX itself is kept
        path = pathlib.Path(os.environ.get("JAX_COMPILATION_CACHE_DIR") or cache_dir() / "jax")
        jax.config.update("jax_compilation_cache_dir", str(path))
        if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    jax.config.update("jax_enable_compilation_cache", bool(enabled))
    compilation_cache.reset_cache()
    return path
