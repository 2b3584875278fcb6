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


def test_a_sampled_outcome_decodes_the_picked_task_as_the_whole_mixture_did():
    """simulate decodes only m_j: the same draw, key for key, as picking row j of the
    decoder's predictive over every nested task (the code before issue 16)."""
    from varibased.models import decoder as decoder_lib

    task, params, _ = _setup()
    model = learned_model(task, CONFIG, params)
    node = model.init(jax.random.key(3))
    omegas = model.sample_tasks(jax.random.key(4), node, 5)
    values = jnp.asarray(task.reward_values, jnp.float32)

    def whole_mixture(key, action):
        pick_key, draw_key = jax.random.split(key)
        moved = task.transition(node.state, action)
        queries = (task.observe(node.state)[None], action[None], task.observe(moved)[None])
        predictive = decoder_lib.predictive_rewards(params, omegas, queries, task, CONFIG)[:, 0]
        j = jax.random.randint(pick_key, (), 0, omegas.shape[0])
        return values[jax.random.categorical(draw_key, jnp.log(predictive[j] + 1e-12))]

    keys = jax.random.split(jax.random.key(7), 300)
    actions = jnp.arange(300, dtype=jnp.int32) % task.num_actions
    _, outcomes = jax.vmap(lambda k, a: model.simulate(k, node, a, omegas, False))(keys, actions)
    np.testing.assert_array_equal(outcomes, jax.vmap(whole_mixture)(keys, actions))


def test_one_nested_draw_per_particle_on_the_learned_model_only():
    import pytest

    from varibased.planning import smc
    from varibased.planning.config import PlannerConfig
    from varibased.planning.model import exact_model

    task, params, _ = _setup()
    model = learned_model(task, CONFIG, params)
    assert not model.value_reads_tasks
    config = PlannerConfig(num_particles=8, num_nested=4, depth=2, nested_draws="used")
    root = model.init(jax.random.key(0))
    state = smc.init(jax.random.key(1), model, root, config)
    assert state.particles.omegas.shape == (8, 1, CONFIG.latent_dim)
    result = smc.plan(jax.random.key(2), model, root, config)
    assert np.isfinite(float(result.value)) and abs(float(result.policy.sum()) - 1.0) < 1e-5
    exact = exact_model(task)
    with pytest.raises(ValueError, match="nested_draws='used'"):
        smc.plan(jax.random.key(2), exact, exact.init(jax.random.key(0)), config)
    with pytest.raises(ValueError, match="nested_draws='used' needs outcome='sample'"):
        PlannerConfig(outcome="expected", nested_draws="used")
    from varibased.inference import configs, em

    saved = configs.to_json(em.EMConfig())
    del saved["planner"]["nested_draws"]
    assert configs.from_json("varibased", em.EMConfig, saved).planner.nested_draws == "all"
