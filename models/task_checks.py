"""The registration checks of a :class:`~varibased.models.task.Task`'s functions.

Every function of a task is evaluated abstractly (``jax.eval_shape``: shapes and dtypes, no
compilation, no data) on the shapes the library will call it with, so that a wrong output
fails when the task is built, with the task, the function and the problem named, and not
later inside a compiled program (or, worse, silently: an ``oracle_action`` returning a float
would be read as an action of 0 and make every normalized score wrong).

What is checked, besides the fields' types (:func:`varibased.models.task.validate`):

* ``reward_values``: at least two distinct finite numbers;
* ``prior``, ``initial_state``, ``transition``: they evaluate, and a move keeps the state's shape;
* ``observe``: floats of shape ``(obs_dim,)``;
* ``reward_distribution``: a scalar draw (an integer index when ``reward_values`` is given);
* ``belief_update``: a belief of ``belief_init``'s structure, shapes and dtypes;
* ``belief_sample``: a task shaped like the prior's;
* ``optimal_value``: a float scalar; ``oracle_action``: an integer scalar.

"Floats" are float32 or the default float dtype (``jnp.zeros(()).dtype``: float64 in x64
runs), so tasks written for float32 also pass with ``JAX_ENABLE_X64=1``.

:class:`TaskError` is defined here (and re-exported by :mod:`varibased.models.task`) so that
this module does not import the task module that calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

__all__ = ["TaskError", "check_reward_values", "check_functions", "float_dtypes"]

Task = Any  # a varibased.models.task.Task (not imported: task.py imports this module)


class TaskError(ValueError):
    """A task definition or its configuration is invalid."""


def float_dtypes() -> tuple[np.dtype, ...]:
    """The float dtypes a task's outputs may have: float32 and the default float dtype."""
    return tuple(dict.fromkeys((jnp.dtype(jnp.float32), jnp.zeros(()).dtype)))


def _shape_text(tree: Any) -> str:
    """``float32[3]``-style text of an abstract value (or of each leaf of a pytree)."""
    def one(x):
        return f"{getattr(x, 'dtype', type(x).__name__)}{list(getattr(x, 'shape', ()))}"

    leaves, structure = jax.tree.flatten(tree)
    if structure.num_leaves == 1 and jax.tree.structure(0) == structure:
        return one(leaves[0])
    return str(jax.tree.unflatten(structure, [one(x) for x in leaves]))


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (not a bool), else None."""
    if isinstance(value, bool | np.bool_):
        return None
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not array-like is not a number
        return None
    numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if array.shape != () or not numeric:
        return None
    return float(array)


def check_reward_values(task: Task) -> None:
    """``reward_values`` (when given): at least two numbers, all finite and distinct.

    Raises:
        TaskError: naming the task and the offending values.
    """
    if task.reward_values is None:
        return
    name = task.name
    try:
        values = tuple(task.reward_values)
    except TypeError as error:
        raise TaskError(f"task {name!r}: reward_values must be a tuple of numbers, got "
                        f"{task.reward_values!r}") from error
    numbers = [_number(v) for v in values]
    not_numbers = [v for v, x in zip(values, numbers, strict=True) if x is None]
    if not_numbers:
        raise TaskError(f"task {name!r}: reward_values must be numbers, got {not_numbers[0]!r} in {values!r}")
    not_finite = [x for x in numbers if not np.isfinite(x)]
    if not_finite:
        raise TaskError(f"task {name!r}: reward_values must be finite, got {not_finite[0]!r} in {values!r}")
    if len(numbers) < 2 or len(set(numbers)) != len(numbers):
        raise TaskError(f"task {name!r}: reward_values must be >= 2 distinct numbers, got {values!r}")


def _evaluate(task: Task, what: str, fn: Callable, *args: Any) -> Any:
    """``jax.eval_shape(fn, *args)``; a failure becomes a :class:`TaskError` naming ``what``."""
    try:
        return jax.eval_shape(fn, *args)
    except Exception as error:  # noqa: BLE001 - re-raised with the task's and function's names
        raise TaskError(f"task {task.name!r}: {what} failed: {error}") from error


def _same_shapes(a: Any, b: Any, *, dtypes: bool = False) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    pairs = list(zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    return all(x.shape == y.shape and (not dtypes or x.dtype == y.dtype) for x, y in pairs)


def _require_floats(task: Task, what: str, value: Any, shape: tuple = ()) -> None:
    ok_shape = getattr(value, "shape", None) == shape
    if not ok_shape or getattr(value, "dtype", None) not in float_dtypes():
        allowed = " or ".join(str(d) for d in float_dtypes())
        raise TaskError(f"task {task.name!r}: {what} must return {allowed} of shape {shape}, got "
                        f"{_shape_text(value)}")


def check_functions(task: Task) -> None:
    """Evaluate every function of ``task`` abstractly and check its output (module docstring).

    Raises:
        TaskError: naming the task, the function and the problem (shape or dtype).
    """
    name = task.name
    key = jax.random.key(0)
    try:
        params = jax.eval_shape(lambda k: numpyro.handlers.seed(task.prior, k)(), key)
    except Exception as error:  # noqa: BLE001 - re-raised with the task's name
        raise TaskError(f"task {name!r}: its prior failed to evaluate: {error}") from error
    state = _evaluate(task, "initial_state", task.initial_state)
    action = jax.ShapeDtypeStruct((), jnp.int32)
    t = jax.ShapeDtypeStruct((), jnp.int32)
    moved = _evaluate(task, "transition(state, action)", task.transition, state, action)
    if not _same_shapes(moved, state):
        raise TaskError(f"task {name!r}: transition must return a state shaped like initial_state(): "
                        f"got {moved}, expected {state}")
    _check_observe(task, state)
    _check_reward_draw(task, params, state, action, moved)
    _check_belief(task, params, state, action)
    if task.optimal_value is not None:
        value = _evaluate(task, "optimal_value(task, state, t)", task.optimal_value, params, state, t)
        _require_floats(task, "optimal_value(task, state, t)", value)
    if task.oracle_action is not None:
        what = "oracle_action(key, task, state, t)"
        chosen = _evaluate(task, what, task.oracle_action, key, params, state, t)
        if getattr(chosen, "shape", None) != () or not jnp.issubdtype(chosen.dtype, jnp.integer):
            raise TaskError(f"task {name!r}: oracle_action(key, task, state, t) must return an integer "
                            f"action of shape () (e.g. jnp.argmax(...)), got {_shape_text(chosen)}")


def _check_observe(task: Task, state: Any) -> None:
    obs = _evaluate(task, "observe(state)", task.observe, state)
    if getattr(obs, "shape", None) != (task.obs_dim,):
        raise TaskError(f"task {task.name!r}: observe(state) must have shape (obs_dim,) = "
                        f"({task.obs_dim},), got {getattr(obs, 'shape', obs)}")
    _require_floats(task, "observe(state)", obs, (task.obs_dim,))


def _check_reward_draw(task: Task, params: Any, state: Any, action: Any, moved: Any) -> None:
    reward = _evaluate(
        task, "reward_distribution",
        lambda p, s, a, n: task.reward_distribution(p, s, a, n).sample(jax.random.key(0)),
        params, state, action, moved)
    if reward.shape != ():
        raise TaskError(f"task {task.name!r}: a reward draw must be a scalar, got shape {reward.shape}")
    if task.categorical_rewards and not jnp.issubdtype(reward.dtype, jnp.integer):
        raise TaskError(f"task {task.name!r}: with reward_values, reward_distribution must be over the "
                        f"integer index into reward_values, got dtype {reward.dtype}")


def _check_belief(task: Task, params: Any, state: Any, action: Any) -> None:
    if task.belief_init is None:
        return
    belief = _evaluate(task, "belief_init()", task.belief_init)
    if task.belief_update is not None:
        reward = jax.ShapeDtypeStruct((), jnp.float32)
        updated = _evaluate(task, "belief_update(belief, state, action, reward)", task.belief_update,
                            belief, state, action, reward)
        if not _same_shapes(updated, belief, dtypes=True):
            raise TaskError(f"task {task.name!r}: belief_update(belief, state, action, reward) must return "
                            "a belief of belief_init()'s structure, shapes and dtypes: got "
                            f"{_shape_text(updated)}, expected {_shape_text(belief)}")
    if task.belief_sample is not None:
        draw = _evaluate(task, "belief_sample(key, belief)", task.belief_sample, jax.random.key(0), belief)
        if not _same_shapes(draw, params):
            raise TaskError(f"task {task.name!r}: belief_sample must return a task shaped like the prior's: "
                            f"got {draw}, expected {params}")
