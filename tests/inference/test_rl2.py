"""RL^2 (S5 + PPO): config validation, acting == re-encoding, learning the bandit,
determinism and no re-tracing."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference import ppo, rl2
from varibased.models import registry
from varibased.models import task as task_lib
from varibased.models.agent import Agent
from varibased.models.rollout import evaluate, run_trials
from varibased.planning.reference_agents import random_agent

TINY = dict(num_envs=4, num_minibatches=2, num_epochs=1, hidden_size=8, state_size=4, head_size=8)


@pytest.fixture(scope="module")
def bandit():
    return registry.make("bernoulli_bandit", num_arms=2, horizon=20)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(num_envs=0), "num_envs"),
        (dict(num_envs=2.0), "num_envs"),
        (dict(num_epochs=True), "num_epochs"),
        (dict(num_envs=6, num_minibatches=4), "divide"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(entropy_coef=-0.1), "entropy_coef"),
        (dict(clip_eps=-0.2), "clip_eps"),
        (dict(gamma=1.5), "gamma"),
        (dict(gae_lambda=-0.1), "gae_lambda"),
        (dict(value_coef="0.5"), "value_coef"),
        (dict(max_grad_norm=0), "max_grad_norm"),
        (dict(state_size=0), "state_size"),
        (dict(s5_mode="fast"), "mode: unknown value .fast."),
        (dict(normalize_advantages=1), "normalize_advantages"),
    ],
)
def test_bad_config_values_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        rl2.RL2Config.for_task("my_task", **overrides)


def test_config_for_task_and_hashable(bandit):
    config = rl2.RL2Config.for_task("gridworld", num_envs=16)
    assert config.num_envs == 16 and config.gamma == 0.95
    assert hash(config) == hash(rl2.RL2Config.for_task("gridworld", num_envs=16))
    assert rl2.RL2Config.for_task("my_task") == rl2.RL2Config()
    with pytest.raises(ValueError, match="no field"):
        rl2.RL2Config.for_task("gridworld", num_env=16)
    with pytest.raises(ValueError, match="num_iterations"):
        rl2.make_train(bandit, rl2.RL2Config.for_task("my_task", **TINY), 0)
    with pytest.raises(ValueError, match="RL2Config"):
        rl2.make_trainer(bandit, {"num_envs": 4})


def test_inputs_carry_previous_action_reward_and_done():
    task = registry.make("gridworld")
    actions = jnp.array([2, 1] * (task.trial_length // 2))
    scripted = Agent(
        init=lambda k, p: jnp.zeros((), jnp.int32),
        act=lambda k, s, e, o: (actions[s], ()),
        update=lambda s, tr: s + 1,
    )
    params = task_lib.sample_task(jax.random.key(0), task)
    traj = jax.jit(lambda k: run_trials(k, task, scripted, 1, jax.tree.map(lambda x: x[None], params)))(
        jax.random.key(1)
    )
    tr = jax.tree.map(lambda x: x[0], traj.transitions)
    inputs, resets = rl2.trial_inputs(task, tr)
    assert inputs.shape == (task.trial_length, rl2.input_dim(task))
    A = task.num_actions
    np.testing.assert_array_equal(resets, np.eye(task.trial_length)[0])
    start = np.asarray(task.observe(task.initial_state()))
    np.testing.assert_array_equal(inputs[0], np.concatenate([start, np.zeros(A + 2)]))  # nothing before
    for t in (1, 15, 16, 59):
        expected = np.concatenate([tr.obs[t], np.eye(A)[int(tr.action[t - 1])],
                                   [tr.reward[t - 1], tr.done[t - 1]]])
        np.testing.assert_array_equal(inputs[t], expected)
    assert inputs[15, -1] == 1.0 and inputs[14, -1] == 0.0  # first step of episode 2 carries done = 1


def test_sequence_form_matches_acting(bandit):
    """Re-encoding a stored trial from its start (both S5 sequence forms) gives the acting
    policy's log-probs and values."""
    config = rl2.RL2Config.for_task("my_task", **{**TINY, "hidden_size": 16, "state_size": 8,
                                                  "num_layers": 2})
    params = rl2.network_init(jax.random.key(0), bandit, config)
    agent = rl2.make_agent(bandit, config, params, evaluation=False)

    @jax.jit
    def run(key):
        traj = run_trials(key, bandit, agent, 3)
        inputs, resets = jax.vmap(lambda tr: rl2.trial_inputs(bandit, tr))(traj.transitions)
        out = {}
        for mode in ("sequential", "parallel"):
            sequence = lambda u, r, mode=mode: rl2.policy_sequence(params, u, r, mode=mode)
            logits, values = jax.vmap(sequence)(inputs, resets)
            out[mode] = (ppo.log_prob(logits, traj.transitions.action), values)
        return traj, out

    traj, out = run(jax.random.key(1))
    for log_prob, values in out.values():
        np.testing.assert_allclose(log_prob, traj.info.log_prob, atol=1e-5)
        np.testing.assert_allclose(values, traj.info.value, atol=1e-5)


def test_learns_two_armed_bandit_and_is_deterministic(bandit):
    """A short run beats the random agent by a wide margin on held-out tasks (fixed seeds)."""
    config = rl2.RL2Config.for_task(
        "bernoulli_bandit", num_envs=64, hidden_size=32, state_size=16, head_size=32
    )
    num_iterations = 120  # 120 x 64 x 20 = 153,600 environment steps
    train = jax.jit(rl2.make_train(bandit, config, num_iterations))
    state, metrics = train(jax.random.key(0))
    assert metrics["return"].shape == (num_iterations,)
    assert all(np.all(np.isfinite(v)) for v in metrics.values())

    # determinism: the same seed gives bit-identical metrics and parameters
    state_again, metrics_again = train(jax.random.key(0))
    for name in metrics:
        np.testing.assert_array_equal(metrics[name], metrics_again[name])
    jax.tree.map(np.testing.assert_array_equal, state.params, state_again.params)

    trainer = rl2.make_trainer(bandit, config)
    num_trials = 2000
    task_keys = jax.random.split(jax.random.key(99), num_trials)
    held_out = jax.vmap(lambda k: task_lib.sample_task(k, bandit))(task_keys)
    eval_key = jax.random.key(7)
    learned = evaluate(eval_key, bandit, trainer.agent(state, True), num_trials, held_out)
    rand = evaluate(eval_key, bandit, random_agent(bandit), num_trials, held_out)
    bayes, _ = bandit.bayes_optimal_value()
    margin = learned.mean - rand.mean
    se = math.hypot(learned.se, rand.se)
    assert margin > 8 * se, (learned, rand)
    assert learned.mean > 11.5, learned
    assert learned.mean < bayes + 3 * learned.se, (learned, bayes)  # above Bayes-optimal is a bug


def test_trainer_interface_and_no_retracing():
    """On GridNavi: iterations keep the state's shapes and dtypes, so one trace serves all."""
    task = registry.make("gridworld")
    config = rl2.RL2Config.for_task("gridworld", **TINY)
    trainer = rl2.make_trainer(task, config)
    assert trainer.env_steps_per_iteration == 4 * 60
    assert trainer.config is config
    state = trainer.init(jax.random.key(3))
    iteration = jax.jit(chex.assert_max_traces(rl2.make_iteration(task, config), n=1))
    avals = lambda s: jax.tree.map(lambda x: (x.shape, x.dtype, getattr(x, "weak_type", False)), s)
    first = avals(state)
    for _ in range(3):
        state, metrics = iteration(state)
    assert avals(state) == first
    assert int(state.iteration) == 3
    assert set(metrics) >= {"return", "loss", "policy_loss", "value_loss", "entropy"}
    assert all(v.shape == () and v.dtype == jnp.float32 and np.isfinite(v) for v in metrics.values())

    # the evaluation agent acts greedily: its action is the argmax of its logits
    agent = trainer.agent(state, True)
    agent_state = agent.init(jax.random.key(0), None)
    actions = [int(agent.act(jax.random.key(i), agent_state, None, None)[0]) for i in range(3)]
    assert actions == [int(jnp.argmax(agent_state.logits))] * 3


def test_make_train_on_function_optimization():
    task = registry.make("function_optimization")
    config = rl2.RL2Config.for_task("function_optimization", **TINY)
    state, metrics = jax.jit(rl2.make_train(task, config, 2))(jax.random.key(0))
    assert metrics["return"].shape == (2,)
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert int(state.iteration) == 2
