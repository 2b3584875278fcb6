"""The learned planning model: consistent with the belief's sequence encoder, valid outcomes."""

import jax
import jax.numpy as jnp
import numpy as np

from varibased.models import belief as belief_lib
from varibased.models import history
from varibased.models.gridworld import make_gridworld
from varibased.models.rollout import run_trials
from varibased.planning.learned_model import learned_model
from varibased.planning.reference_agents import random_agent

CONFIG = belief_lib.BeliefConfig(hidden_size=16, state_size=8, head_hidden=16, input_hidden=16,
                                 decoder_hidden=(16,), decoder_inputs=("moved_obs",))


def _setup():
    task = make_gridworld(size=3, episode_length=4, num_episodes=2, excluded=1)
    params = belief_lib.init_params(jax.random.key(0), task, CONFIG)
    trajectory = run_trials(jax.random.key(1), task, random_agent(task), 2)
    return task, params, jax.tree.map(lambda x: x[0], trajectory)


def test_real_updates_match_the_sequence_encoder():
    task, params, trajectory = _setup()
    model = learned_model(task, CONFIG, params)
    node = model.init(jax.random.key(2))
    batch = history.batch_from_trajectory(task, trajectory)
    inputs = history.history_inputs(batch, task.num_actions, task.trial_length)
    _, features = history.encode_history(params, inputs, CONFIG)
    np.testing.assert_allclose(node.features, features[0], atol=1e-5)
    for t in range(task.trial_length):
        node = model.update(node, jax.tree.map(lambda x, t=t: x[t], trajectory.transitions))
        np.testing.assert_allclose(node.features, features[t + 1], atol=1e-5)
        assert int(node.t) == t + 1


def test_imagined_steps_are_valid_and_stop_at_the_trial_end():
    task, params, _ = _setup()
    model = learned_model(task, CONFIG, params)
    node = model.init(jax.random.key(3))
    omegas = model.sample_tasks(jax.random.key(4), node, 5)
    assert omegas.shape == (5, CONFIG.latent_dim)
    keys = jax.random.split(jax.random.key(5), 200)
    rewards, outcomes = jax.vmap(lambda k: model.simulate(k, node, jnp.int32(2), omegas, False))(keys)
    values = np.asarray(task.reward_values, np.float32)
    assert np.isin(np.asarray(outcomes), values).all()
    np.testing.assert_array_equal(rewards, outcomes)
    expected, _ = model.simulate(keys[0], node, jnp.int32(2), omegas, True)
    assert min(task.reward_values) <= float(expected) <= max(task.reward_values)
    # advance: the known move; without a belief update the features stay the root's
    frozen = model.advance(node, jnp.int32(2), outcomes[0], False)
    np.testing.assert_array_equal(frozen.features, node.features)
    np.testing.assert_array_equal(frozen.state, task.transition(node.state, jnp.int32(2)))
    moved = model.advance(node, jnp.int32(2), outcomes[0], True)
    assert not np.allclose(moved.features, node.features)
    # past the trial's end: reward 0, node unchanged, value 0
    end = node._replace(t=jnp.int32(task.trial_length))
    reward, _ = model.simulate(keys[0], end, jnp.int32(1), omegas, False)
    assert float(reward) == 0.0 and float(model.value(end, omegas)) == 0.0
    after = model.advance(end, jnp.int32(1), jnp.float32(1.0), True)
    jax.tree.map(np.testing.assert_array_equal, after, end)
    assert model.policy_logits(node).shape == (task.num_actions,)


def test_enumerated_outcomes_are_the_mixture_predictive():
    task, params, _ = _setup()
    model = learned_model(task, CONFIG, params)
    node = model.init(jax.random.key(3))
    omegas = model.sample_tasks(jax.random.key(4), node, 5)
    rewards, probs = model.outcomes(node, jnp.int32(2), omegas)
    np.testing.assert_array_equal(rewards, np.asarray(task.reward_values, np.float32))
    np.testing.assert_allclose(float(probs.sum()), 1.0, atol=1e-5)
    # the mixture mean is simulate's expected reward
    expected, _ = model.simulate(jax.random.key(5), node, jnp.int32(2), omegas, True)
    np.testing.assert_allclose(float(probs @ rewards), float(expected), atol=1e-5)
    # and the empirical frequencies of simulate's draws match the probabilities
    keys = jax.random.split(jax.random.key(6), 4000)
    _, draws = jax.vmap(lambda k: model.simulate(k, node, jnp.int32(2), omegas, False))(keys)
    freq = (np.asarray(draws)[:, None] == np.asarray(rewards)[None]).mean(0)
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(0.25 / 4000))
    end = node._replace(t=jnp.int32(task.trial_length))
    assert np.all(np.asarray(model.outcomes(end, jnp.int32(1), omegas)[0]) == 0.0)
