"""One writer per run directory: the ``.lock`` file, and the checks of output paths made
before any work."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import sys
import time
from typing import Any

from varibased.inference.runfiles import LOCK_FILE, RunError

__all__ = ["RunLock", "lock_holder", "check_output_path"]


class RunLock:
    """The lock of a run directory: the file ``.lock`` with the holder's pid, host and start
    time, created atomically (a hard link of a complete file). One process writes a run.

    A lock left by a dead process on this host is taken over, with a message on stderr; a
    lock of a live process, or of another host, is refused with :class:`RunError` naming
    the holder. Re-entrant within one process (``run`` holds it around ``train``)."""

    _held: dict[pathlib.Path, int] = {}

    def __init__(self, run_dir: str | pathlib.Path):
        self.path = pathlib.Path(run_dir).absolute() / LOCK_FILE

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (creating the run directory), or raise :class:`RunError`."""
        if self.path in RunLock._held:
            RunLock._held[self.path] += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(mine))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    RunLock._held[self.path] = 1
                    return
                except FileExistsError:
                    holder = lock_holder(self.path.parent)
                    if holder is None or not _is_stale(holder):
                        raise RunError(_held_message(self.path, holder)) from None
                    # A dead holder on this host: move its lock aside (only one taker wins).
                    stale = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
                    try:
                        os.replace(self.path, stale)
                    except FileNotFoundError:
                        continue
                    stale.unlink(missing_ok=True)
                    print(f"taking over the stale lock of {self.path.parent}: pid {holder.get('pid')} on "
                          f"{holder.get('host')} (since {holder.get('started')}) is no longer running",
                          file=sys.stderr)
            raise RunError(_held_message(self.path, lock_holder(self.path.parent)))
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        """Give the lock back (the outermost release of this process removes ``.lock``)."""
        count = RunLock._held.get(self.path, 0)
        if count > 1:
            RunLock._held[self.path] = count - 1
            return
        RunLock._held.pop(self.path, None)
        holder = lock_holder(self.path.parent)
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)


def lock_holder(run_dir: pathlib.Path) -> dict[str, Any] | None:
    """The holder recorded in ``run_dir/.lock`` (``{}`` if unreadable), or None without a lock."""
    path = pathlib.Path(run_dir) / LOCK_FILE
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_stale(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _held_message(path: pathlib.Path, holder: dict[str, Any] | None) -> str:
    if not holder:
        return (f"{path.parent} is locked ({path} exists but does not say by whom); if no process writes "
                f"this run, remove {path}")
    return (f"{path.parent} is locked by pid {holder.get('pid')} on {holder.get('host')} (since "
            f"{holder.get('started')}): another process is writing this run; wait for it or choose "
            "another --out")


def _held_by_other(run_dir: pathlib.Path) -> None:
    """Raise :class:`RunError` if another live process holds ``run_dir``'s lock."""
    path = (pathlib.Path(run_dir).absolute() / LOCK_FILE)
    if path in RunLock._held:
        return
    holder = lock_holder(run_dir)
    if holder is not None and not _is_stale(holder):
        raise RunError(_held_message(path, holder))


def check_output_path(path: str | pathlib.Path, what: str, *, directory: bool) -> pathlib.Path:
    """Check that ``path`` can be written as a ``directory`` (or a file) before any work.

    Raises:
        RunError: a dangling symlink, an existing path of the other kind, or a parent that is
            not a directory (e.g. a regular file) or not writable.
    """
    path = pathlib.Path(path)
    if path.is_symlink() and not path.exists():
        raise RunError(f"{what} {path} is a dangling symlink (to {os.readlink(path)})")
    if path.exists():
        if directory and not path.is_dir():
            raise RunError(f"{what} {path} is a file, not a directory")
        if not directory and path.is_dir():
            raise RunError(f"{what} {path} is a directory, not a file")
        if not os.access(path if directory else path.parent, os.W_OK):
            raise RunError(f"{what} {path} is not writable")
        return path
    parent = path.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if parent.is_symlink() and not parent.exists():
        raise RunError(f"{what} {path}: {parent} is a dangling symlink")
    if not parent.is_dir():
        raise RunError(f"{what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"{what} {path}: {parent} is not writable")
    return path
