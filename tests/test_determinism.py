"""Determinism on CPU: the same config and seed give bit-identical metrics and states across
two runs and across a checkpoint/resume, for VariBASeD (EM) and RL^2 (tiny configs)."""

import jax
import numpy as np
import pytest

from varibased.inference import checkpoint, em, rl2
from varibased.models import registry

NUM_ITERATIONS = 3


@pytest.fixture(scope="module")
def bandit():
    return registry.make("bernoulli_bandit", num_arms=2, horizon=5)


def _run(iteration, state, num):
    metrics = []
    for _ in range(num):
        state, m = iteration(state)
        metrics.append({k: float(v) for k, v in m.items()})
    return state, metrics


def _bits(state):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree.leaves(state)]


def _assert_identical(state_a, state_b):
    for a, b in zip(_bits(state_a), _bits(state_b), strict=True):
        np.testing.assert_array_equal(a, b)


def _check(make_trainer, tmp_path, fresh_trainer_for_second_run: bool):
    trainer = make_trainer()
    step = jax.jit(trainer.iteration)
    state_a, metrics_a = _run(step, trainer.init(jax.random.key(7)), NUM_ITERATIONS)
    if fresh_trainer_for_second_run:  # a second trainer built from the same config
        other = make_trainer()
        step_b, init_b = jax.jit(other.iteration), other.init
    else:
        step_b, init_b = step, trainer.init
    state_b, metrics_b = _run(step_b, init_b(jax.random.key(7)), NUM_ITERATIONS)
    assert metrics_a == metrics_b
    _assert_identical(state_a, state_b)
    # Resume: stop after one iteration, checkpoint, restore into a fresh template, continue.
    first, metrics_first = _run(step, trainer.init(jax.random.key(7)), 1)
    checkpoint.save(tmp_path / "ckpt.npz", first, {"iteration": 1})
    restored, _ = checkpoint.load(tmp_path / "ckpt.npz", trainer.init(jax.random.key(0)))
    state_c, metrics_rest = _run(step, restored, NUM_ITERATIONS - 1)
    assert metrics_first + metrics_rest == metrics_a
    _assert_identical(state_a, state_c)
    # A different seed gives different numbers (the test could not pass by ignoring the seed).
    _, metrics_d = _run(step, trainer.init(jax.random.key(8)), 1)
    assert metrics_d[0] != metrics_a[0]


def test_rl2_is_deterministic_across_runs_and_resume(bandit, tmp_path):
    config = rl2.RL2Config.for_task("bernoulli_bandit", num_envs=4, num_minibatches=2, num_epochs=1,
                                    hidden_size=8, state_size=4, head_size=8)
    _check(lambda: rl2.make_trainer(bandit, config), tmp_path, fresh_trainer_for_second_run=True)


def test_varibased_em_is_deterministic_across_runs_and_resume(bandit, tmp_path):
    config = em.EMConfig.for_task(
        "bernoulli_bandit", num_envs=4, num_particles=4, num_nested=2, depth=2, svi_updates=2,
        batch_trials=4, replay_trials=8, latent_dim=2, hidden_size=8, state_size=4,
        decoder_hidden=(8,), head_hidden=8)
    # One compilation (EM's is the slow one); the second run starts again from init.
    _check(lambda: em.make_trainer(bandit, config), tmp_path, fresh_trainer_for_second_run=False)
