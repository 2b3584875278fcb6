"""Validation helpers shared by every configuration class (frozen dataclasses).

Each helper checks one field, raises ``ValueError`` naming the owner, the field and the
value, and returns the value normalized (a Python ``int`` / ``float``), so that equal
configurations hash equally and serialize to JSON. Bools are not numbers here; numpy
integer and float scalars are accepted and converted::

    def __post_init__(self):
        set_fields(self, num_envs=positive_int("EMConfig", "num_envs", self.num_envs))
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["positive_int", "nonnegative_int", "number", "choice", "boolean", "set_fields",
           "MAX_COUNT", "MEMORY_LIMIT_ENV", "memory_limit", "check_memory", "parse_count"]

#: Counts (particles, environments, trials, ...) stay below 2**31: int32 indices.
MAX_COUNT = 2**31 - 1


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool | np.bool_) and isinstance(value, int | np.integer)


def positive_int(owner: str, name: str, value: Any, *, maximum: int = MAX_COUNT) -> int:
    """``value`` as an int in ``[1, maximum]``."""
    if not _is_int(value) or not 1 <= value <= maximum:
        raise ValueError(f"{owner}.{name} must be an int in [1, {maximum}], got {value!r}")
    return int(value)


def nonnegative_int(owner: str, name: str, value: Any, *, maximum: int = MAX_COUNT) -> int:
    """``value`` as an int in ``[0, maximum]``."""
    if not _is_int(value) or not 0 <= value <= maximum:
        raise ValueError(f"{owner}.{name} must be an int in [0, {maximum}], got {value!r}")
    return int(value)


def number(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval given by ``low`` / ``high`` (closed unless
    ``low_open`` / ``high_open``)."""
    ok = not isinstance(value, bool | np.bool_) and isinstance(value, int | float | np.integer | np.floating)
    ok = ok and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{lo}, {hi}{right}"
        raise ValueError(f"{owner}.{name} must be a finite number in {interval}, got {value!r}")
    return float(value)


def choice(owner: str, name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """``value`` if it is one of ``allowed``."""
    allowed = tuple(allowed)
    if not isinstance(value, str | bool | int | float) or value not in allowed:
        raise ValueError(f"{owner}.{name}: unknown value {value!r}; choose one of "
                         f"{', '.join(map(repr, allowed))}")
    return value


def boolean(owner: str, name: str, value: Any) -> bool:
    """``value`` if it is a bool (``True`` / ``False``, not 0 / 1)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{owner}.{name} must be a bool, got {value!r}")
    return bool(value)


def set_fields(instance: Any, **values: Any) -> None:
    """Store normalized values on a frozen dataclass instance (inside ``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(instance, name, value)


#: Environment variable overriding :func:`memory_limit` (bytes, e.g. ``8e9`` or ``8000000000``).
MEMORY_LIMIT_ENV = "VARIBASED_MEMORY_LIMIT"


def parse_count(name: str, text: str, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """An integer written as ``100000``, ``1e5`` or ``100_000`` (an environment variable, a
    command-line value); a ValueError naming ``name`` if it is not a whole number in range."""
    try:
        value = int(text)
    except ValueError:
        try:
            number_ = float(text)
        except ValueError:
            number_ = math.nan
        if not math.isfinite(number_) or number_ != int(number_):
            raise ValueError(f"{name} must be a whole number, got {text!r}") from None
        value = int(number_)
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {text!r}")
    return value


def memory_limit() -> int:
    """The largest memory estimate a configuration may have, in bytes: ``$VARIBASED_MEMORY_LIMIT``
    if set, else half the machine's physical memory."""
    text = os.environ.get(MEMORY_LIMIT_ENV)
    if text is not None:
        return parse_count(MEMORY_LIMIT_ENV, text, minimum=1)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def check_memory(owner: str, what: str, estimate: int, limit: int | None = None) -> int:
    """``estimate`` (bytes) if it is at most ``limit`` (default :func:`memory_limit`); else a
    ValueError with the estimate, ``what`` it counts, and how to raise the limit."""
    limit = memory_limit() if limit is None else limit
    if estimate > limit:
        raise ValueError(f"{owner}: {what} needs about {estimate / 2**30:.3g} GiB ({estimate} bytes), above "
                         f"the limit of {limit / 2**30:.3g} GiB (half the machine's memory unless "
                         f"{MEMORY_LIMIT_ENV} is set); lower the budget")
    return estimate
