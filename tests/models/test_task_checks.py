"""Registration checks (models/task_checks.py): each with a bad example, refused by name."""

import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.test_task import _coin_task
from varibased.models import registry
from varibased.models.task import TaskError
from varibased.planning import references as references_lib


def _oracle(key, params, state, t):
    return jnp.argmax(params["p"]).astype(jnp.int32)


BAD = [
    # oracle_action: an action index, not a float (a float was read as action 0 before)
    (dict(oracle_action=lambda k, p, s, t: jnp.max(p["p"])), r"oracle_action\(key, task, state, t\) must "
     r"return an integer action of shape \(\) \(e.g. jnp.argmax\(...\)\), got float32\[\]"),
    (dict(oracle_action=lambda k, p, s, t: jnp.zeros(2, jnp.int32)), r"oracle_action.*got int32\[2\]"),
    (dict(oracle_action=lambda k, p, s, t: p["nope"]), r"oracle_action\(key, task, state, t\) failed"),
    # belief_update: belief_init's structure, shapes and dtypes
    (dict(belief_init=lambda: jnp.ones(2), belief_update=lambda b, s, a, r: jnp.ones(3)),
     r"belief_update\(belief, state, action, reward\) must return a belief of belief_init\(\)'s structure, "
     r"shapes and dtypes: got float32\[3\], expected float32\[2\]"),
    (dict(belief_init=lambda: jnp.ones(2), belief_update=lambda b, s, a, r: b.astype(jnp.int32)),
     r"belief_update.*got int32\[2\]"),
    (dict(belief_init=lambda: {"n": jnp.ones(2)}, belief_update=lambda b, s, a, r: jnp.ones(2)),
     r"belief_update.*belief_init\(\)'s structure"),
    (dict(belief_init=lambda: jnp.ones(2), belief_update=lambda b, s, a, r: b @ jnp.ones(5)),
     r"belief_update\(belief, state, action, reward\) failed"),
    # optimal_value: a float scalar
    (dict(optimal_value=lambda p, s, t: t),
     r"optimal_value\(task, state, t\) must return float32.* of shape \(\), got int32\[\]"),
    (dict(optimal_value=lambda p, s, t: p["p"]), r"optimal_value.*got float32\[2\]"),
    # observe: floats
    (dict(observe=lambda s: jnp.zeros(1, jnp.int32)),
     r"observe\(state\) must return float32.*got int32\[1\]"),
    (dict(observe=lambda s: jnp.zeros(1, jnp.float16)), r"observe\(state\) must return.*got float16\[1\]"),
    # reward_values: numeric, finite, distinct
    (dict(reward_values=("a", "b")), r"reward_values must be numbers, got 'a'"),
    (dict(reward_values=(True, False)), "reward_values must be numbers, got True"),
    (dict(reward_values=(0.0, float("nan"))), "reward_values must be finite, got nan"),
    (dict(reward_values=(0.0, float("inf"))), "reward_values must be finite, got inf"),
    (dict(reward_values=(0, 0.0)), "reward_values must be >= 2 distinct numbers"),
    (dict(reward_values=3), "reward_values must be a tuple of numbers"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[f"{sorted(c)}-{i}" for i, (c, _) in enumerate(BAD)])
def test_bad_task_functions_are_refused_by_name(changes, message):
    with pytest.raises(TaskError, match=r"task 'coin': " + message):
        _coin_task(**changes)


def test_good_optional_functions_pass():
    task = _coin_task(oracle_action=_oracle, optimal_value=lambda p, s, t: jnp.max(p["p"]) * (6 - t),
                      belief_init=lambda: jnp.ones(2), belief_update=lambda b, s, a, r: b.at[a].add(r),
                      reward_values=(np.float32(0.0), 1))
    assert task.oracle_action is _oracle


def test_a_builtin_id_cannot_be_shadowed():
    def shadow():
        return _coin_task(name="bernoulli_bandit")

    for overwrite in (False, True):
        with pytest.raises(TaskError, match="'bernoulli_bandit' is a built-in task id and cannot be"):
            registry.register("bernoulli_bandit", shadow, overwrite=overwrite)
    assert registry.make("bernoulli_bandit").num_actions == 2
    assert registry.make("bernoulli_bandit").description.startswith("2-armed Bernoulli bandit")


def test_overwrite_invalidates_cached_references(monkeypatch, tmp_path):
    """The cache is what is tested: the references themselves are faked (no compilation), and
    any cache on disk is a fresh one."""
    monkeypatch.setenv("VARIBASED_CACHE", str(tmp_path))
    calls = []

    def fake(task, *, num_trials, seed):
        calls.append(task.reward_values)
        return {"random": {"mean": float(task.reward_values[1])}}

    monkeypatch.setattr(references_lib, "compute_references", fake)
    registry.register("coin", _coin_task)
    try:
        before = references_lib.references("coin", num_trials=16)
        assert references_lib.references("coin", num_trials=16) == before and len(calls) == 1  # cached
        registry.register("coin", lambda: _coin_task(reward_values=(0.0, 2.0)), overwrite=True)
        after = references_lib.references("coin", num_trials=16)
        assert (before["random"]["mean"], after["random"]["mean"]) == (1.0, 2.0)
    finally:
        registry.unregister("coin")
