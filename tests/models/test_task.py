"""The task interface: validation before compilation, the generic env, the registry."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from varibased.models import registry
from varibased.models import task as task_lib
from varibased.models.task import Task, TaskError


def _coin_task(**overrides) -> Task:
    """Two arms with known transition: reward 1 w.p. p[action], else 0; 3 steps, 2 episodes."""

    def prior():
        return {"p": numpyro.sample("p", dist.Beta(jnp.ones(2), jnp.ones(2)).to_event(1))}

    fields = dict(
        name="coin",
        num_actions=2,
        obs_dim=1,
        episode_length=3,
        num_episodes=2,
        prior=prior,
        initial_state=lambda: jnp.zeros((), jnp.int32),
        transition=lambda s, a: s + 1,
        observe=lambda s: jnp.asarray(s, jnp.float32)[None],
        reward_distribution=lambda p, s, a, n: dist.Categorical(probs=jnp.stack([1 - p["p"][a], p["p"][a]])),
        reward_values=(0.0, 1.0),
    )
    fields.update(overrides)
    return Task(**fields)


def test_env_resets_each_episode_and_keeps_the_task():
    task = _coin_task()
    params = {"p": jnp.array([0.0, 1.0])}
    env_state, obs = task_lib.reset(jax.random.key(0), params, task)
    rewards, dones, observations = [], [], [obs]
    for t in range(task.trial_length):
        env_state, obs, reward, done = task_lib.step(jax.random.key(t), env_state, t % 2, params, task)
        rewards.append(float(reward))
        dones.append(int(done))
        observations.append(obs)
    assert rewards == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert dones == [0, 0, 1, 0, 0, 1]
    assert [float(o[0]) for o in observations] == [0, 1, 2, 0, 1, 2, 0]
    assert int(env_state.t) == 6


def test_trial_model_conditions_on_rewards():
    task = _coin_task()
    actions = jnp.array([1, 1, 0, 1, 0, 0])
    rewards = jnp.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    params = {"p": jnp.array([0.3, 0.8])}
    log_joint, _ = numpyro.infer.util.log_density(
        lambda: task_lib.trial_model(task, actions, rewards), (), {}, params
    )
    expected = 3 * np.log(0.8) + np.log(0.7) * 2 + np.log(0.3)  # Beta(1,1) prior density is 1
    assert np.isclose(float(log_joint), expected, atol=1e-5)


def test_trial_model_generates():
    task = _coin_task()
    trace = numpyro.handlers.trace(numpyro.handlers.seed(task_lib.trial_model, 0)).get_trace(
        task, jnp.zeros(6, jnp.int32)
    )
    assert trace["reward"]["value"].shape == (6,)
    assert set(np.unique(trace["reward_value"]["value"])) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_actions=0), "num_actions must be a positive int"),
        (dict(episode_length=2.5), "episode_length must be a positive int"),
        (dict(name="not a name"), "task name"),
        (dict(observe=lambda s: jnp.zeros(3)), r"observe\(state\) must have shape"),
        (dict(transition=lambda s, a: jnp.zeros(2, jnp.int32)), "transition must return a state shaped"),
        (dict(reward_values=(1.0,)), "reward_values"),
        (dict(reward_distribution=lambda p, s, a, n: dist.Normal(p["p"][a], 1.0)), "integer index"),
        (dict(reward_distribution=lambda p, s, a, n: dist.Normal(p["p"], 1.0), reward_values=None),
         "must be a scalar"),
        (dict(thompson_resample="sometimes"), "thompson_resample"),
        (dict(prior=lambda: numpyro.sample("p", dist.Beta(jnp.ones(2), jnp.ones(3)))), "prior failed"),
        (dict(belief_init=3), "belief_init must be a function"),
    ],
)
def test_invalid_tasks_are_named(overrides, message):
    with pytest.raises(TaskError, match=message):
        _coin_task(**overrides)


def test_require_names_missing_fields():
    with pytest.raises(TaskError, match="does not provide belief_init"):
        _coin_task().require("belief_init")


def test_registry():
    registry.register("coin", _coin_task)
    try:
        assert registry.make("coin").name == "coin"
        with pytest.raises(TaskError, match="already registered"):
            registry.register("coin", _coin_task)
        with pytest.raises(TaskError, match="calls itself"):
            registry.register("coin2", _coin_task)
    finally:
        registry.unregister("coin")
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        registry.make("nope")
    with pytest.raises(TaskError, match="bad arguments"):
        registry.register("coin", lambda: _coin_task())
        registry.make("coin", size=3)
    registry.unregister("coin")


def test_task_is_frozen():
    task = _coin_task()
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.num_actions = 3
