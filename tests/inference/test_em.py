"""The VariBASeD EM trainer: traced once, replay, lambda-returns, learning, the CLI."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference import cli, em
from varibased.models import registry
from varibased.models.rollout import evaluate
from varibased.planning.reference_agents import random_agent

TINY = dict(num_envs=8, num_particles=4, num_nested=2, depth=2, svi_updates=2, batch_trials=8,
            replay_trials=16, hidden_size=16, state_size=8, head_hidden=16, input_hidden=16,
            decoder_hidden=(16,))


def test_lambda_returns_match_a_float64_reference():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=7), rng.normal(size=7)
    gamma, lam = 0.9, 0.7
    expected = np.zeros(7)
    following = 0.0
    for t in reversed(range(7)):
        next_value = values[t + 1] if t + 1 < 7 else 0.0
        following = rewards[t] + gamma * ((1 - lam) * next_value + lam * following)
        expected[t] = following
    got = em.lambda_returns(jnp.asarray(rewards, jnp.float32), jnp.asarray(values, jnp.float32), gamma, lam)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # lambda = 1: Monte Carlo returns-to-go, whatever the values
    mc = em.lambda_returns(jnp.ones(4), jnp.full(4, 100.0), 1.0, 1.0)
    np.testing.assert_allclose(mc, [4, 3, 2, 1])


def test_iteration_is_traced_once_and_fills_the_replay():
    task = registry.make("bernoulli_bandit")
    config = em.EMConfig.for_task(task.name, **TINY)
    trainer = em.make_trainer(task, config)
    iteration = jax.jit(chex.assert_max_traces(trainer.iteration, n=1))
    state = trainer.init(jax.random.key(0))
    sizes = []
    for _ in range(3):
        state, metrics = iteration(state)
        sizes.append(int(state.replay.size))
        assert all(np.isfinite(float(v)) for v in metrics.values())
    assert sizes == [8, 16, 16] and int(state.replay.cursor) == 8  # a ring of 16 trials
    assert int(state.env_steps) == 3 * 8 * task.trial_length and int(state.iteration) == 3
    targets = np.asarray(state.replay.policy_targets)
    np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (dict(num_envs=0), r"num_envs must be an int in \[1, "),
    (dict(replay_trials=12), "multiple of num_envs"),
    (dict(batch_trials=32), "must not exceed replay_trials"),
    (dict(num_particles=0), "num_particles"),
    (dict(ess_threshold=1.5), "ess_threshold"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(value_lambda=2.0), "value_lambda"),
    (dict(kl_weight=0.0), "kl_weight"),
    (dict(resampling="magic"), "resampling"),
])
def test_bad_config_is_named(bad, message):
    with pytest.raises(ValueError, match=message):
        em.EMConfig.for_task("bernoulli_bandit", **{**TINY, **bad})


def test_unknown_field_is_named():
    with pytest.raises(ValueError, match="no field"):
        em.EMConfig.for_task("gridworld", particles=3)


def test_short_bandit_training_beats_random():
    """A short EM run on the two-armed bandit beats the random agent by a clear margin."""
    task = registry.make("bernoulli_bandit")
    config = em.EMConfig.for_task(task.name)
    trainer = em.make_trainer(task, config)
    iteration = jax.jit(trainer.iteration)
    state = trainer.init(jax.random.key(0))
    for _ in range(32):
        state, _ = iteration(state)
    key = jax.random.key(123)
    learned = evaluate(key, task, trainer.agent(state, True), 1000)
    random = evaluate(key, task, random_agent(task), 1000)
    assert learned.mean - random.mean > 4 * np.hypot(learned.se, random.se), (learned, random)


def test_cli_train_and_evaluate_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "run"
    sets = [f"--set={k}={v}" for k, v in TINY.items() if k != "decoder_hidden"]
    sets.append("--set=decoder_hidden=[16]")
    code = cli.main(["train", "--task", "bernoulli_bandit", "--steps", "320", "--out", str(run_dir),
                     "--eval-trials", "16", "--reference-trials", "50", "--quiet", *sets])
    assert code == 0
    assert {"config.json", "metrics.csv", "checkpoint.npz", "learning_curve.png"} <= {
        p.name for p in run_dir.iterdir()}
    code = cli.main(["evaluate", str(run_dir), "--particles", "8", "--depth", "1", "--trials", "16"])
    assert code == 0
    out = capsys.readouterr().out
    assert "normalized score" in out
    # an existing run without --resume is refused, nothing overwritten
    before = (run_dir / "checkpoint.npz").read_bytes()
    code = cli.main(["train", "--task", "bernoulli_bandit", "--steps", "320", "--out", str(run_dir),
                     "--quiet"])
    assert code == 2 and "already holds files" in capsys.readouterr().err
    assert (run_dir / "checkpoint.npz").read_bytes() == before


def test_window_mode_iterates_traced_once_and_caches_carries():
    """The paper's fixed-window mode: S5 states cached in the replay, windows of W steps."""
    task = registry.make("bernoulli_bandit")
    config = em.EMConfig.for_task(task.name, **TINY, window=5)
    trainer = em.make_trainer(task, config)
    iteration = jax.jit(chex.assert_max_traces(trainer.iteration, n=1))
    state = trainer.init(jax.random.key(0))
    for _ in range(2):
        state, metrics = iteration(state)
        assert all(np.isfinite(float(v)) for v in metrics.values())
    carries = jax.tree.leaves(state.replay.carries)
    assert carries and all(c.shape[:2] == (16, task.trial_length) for c in carries)
    # the first cached state of every trial is the empty history's (zeros)
    assert all(np.all(np.asarray(c[:, 0]) == 0) for c in carries)
    # the default mode keeps no carries (and the structure of its checkpoints is unchanged)
    default = em.make_trainer(task, em.EMConfig.for_task(task.name, **TINY)).init(jax.random.key(0))
    assert type(default.replay) is em.Replay and em.Replay._fields == (
        "batch", "policy_targets", "value_targets", "size", "cursor")


@pytest.mark.parametrize("window", [-1, 1.5, True])
def test_bad_window_is_named(window):
    with pytest.raises(ValueError, match="window"):
        em.EMConfig.for_task("bernoulli_bandit", **{**TINY, "window": window})


def test_window_longer_than_the_trial_is_named():
    task = registry.make("bernoulli_bandit")
    with pytest.raises(ValueError, match="exceeds the task's trial length"):
        em.make_trainer(task, em.EMConfig.for_task(task.name, **TINY, window=task.trial_length + 1))


def test_enumerated_outcomes_on_continuous_rewards_are_named_before_compiling():
    task = registry.make("function_optimization")
    with pytest.raises(ValueError, match="enumerate"):
        em.make_trainer(task, em.EMConfig.for_task(task.name, **TINY, outcome="enumerate"))


def test_distillation_trust_region_mixes_the_targets_with_the_lagged_policy():
    task = registry.make("bernoulli_bandit")
    config = em.EMConfig.for_task(task.name, **TINY, distill_trust=1.0)
    trainer = em.make_trainer(task, config)
    state, _ = jax.jit(trainer.iteration)(trainer.init(jax.random.key(0)))
    params = trainer.params(state)
    batch = jax.tree.map(lambda x: x[:4], state.replay.batch)
    targets = jax.nn.one_hot(jnp.zeros((4, task.trial_length), jnp.int32), task.num_actions)
    values = jnp.zeros((4, task.trial_length))
    mixed, same_values = em._current_targets(params, batch, targets, values, task, config)
    features = em.history.batch_features(params, batch, None, task, config.belief)[:, : task.trial_length]
    old = jax.nn.softmax(em.belief_lib.policy_logits(params, features))
    np.testing.assert_allclose(mixed, (targets + old) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mixed.sum(-1), 1.0, atol=1e-5)
    assert same_values is values  # value targets untouched unless value_targets="current"
    plain = em.EMConfig.for_task(task.name, **TINY)
    kept, _ = em._current_targets(params, batch, targets, values, task, plain)
    assert kept is targets
    with pytest.raises(ValueError, match="distill_trust"):
        em.EMConfig.for_task(task.name, **TINY, distill_trust=-0.5)
    with pytest.raises(ValueError, match="window=0"):
        em.EMConfig.for_task(task.name, **TINY, distill_trust=0.5, window=5)
