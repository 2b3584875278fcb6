"""ELBO subsampling (BeliefConfig.elbo_steps / decode_steps, models/subsample.py): off, the
loss is the exact one; on, the sites have the kept shapes, the estimate is finite and
unbiased within Monte Carlo error, and updates refuse to run without an explicit key."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers

from varibased.inference import configs, em
from varibased.inference.svi import make_belief_svi
from varibased.models import belief, history, registry, rollout, subsample
from varibased.models.gridworld import make_gridworld
from varibased.planning.reference_agents import random_agent

CONFIG = belief.BeliefConfig(latent_dim=3, hidden_size=16, state_size=8, decoder_hidden=(8, 8),
                             head_hidden=8, decoder_inputs=("moved_obs",))


@pytest.fixture(scope="module")
def grid():
    task = make_gridworld(size=3, episode_length=4, num_episodes=2, excluded=1)
    traj = jax.jit(lambda k: rollout.run_trials(k, task, random_agent(task), 6))(jax.random.key(0))
    batch = history.batch_from_trajectory(task, traj)
    B, T, A = 6, task.trial_length, task.num_actions
    targets = (jnp.full((B, T, A), 1.0 / A), jnp.zeros((B, T)))
    return task, batch, targets


def _loss(task, config, batch, targets, rng_key, subsample_key):
    trainer = make_belief_svi(task, config)
    params = belief.init_params(jax.random.key(1), task, config)
    return trainer.loss(rng_key, params, batch, *targets, 1.0, 1.0, subsample_key)


def test_indices_are_distinct_per_row_and_taken_along_steps():
    index = subsample.draw_indices(jax.random.key(0), 5, 9, 4)
    assert index.shape == (5, 4) and index.dtype == jnp.int32
    assert all(len(set(row)) == 4 and max(row) < 9 for row in np.asarray(index).tolist())
    x = jnp.arange(5 * 9 * 2).reshape(5, 9, 2)
    np.testing.assert_array_equal(subsample.take_steps(x, index), np.asarray(x)[np.arange(5)[:, None], index])
    assert subsample.elbo_indices(None, dataclasses.replace(CONFIG, elbo_steps=2), 5, 9, 8) == (None, None)


@pytest.mark.parametrize("decode", ["trial", "past"])
def test_off_or_keeping_everything_gives_the_exact_loss(grid, decode):
    task, batch, targets = grid
    T = task.trial_length
    config = dataclasses.replace(CONFIG, decode=decode)
    exact = _loss(task, config, batch, targets, jax.random.key(2), None)
    same_key = _loss(task, config, batch, targets, jax.random.key(2), jax.random.key(3))
    everything = _loss(task, dataclasses.replace(config, elbo_steps=T + 1, decode_steps=T), batch,
                       targets, jax.random.key(2), jax.random.key(3))
    assert float(exact) == float(same_key) == float(everything)


def test_subsampled_sites_have_the_kept_shapes_and_scale(grid):
    task, batch, targets = grid
    B, T, L = 6, task.trial_length, CONFIG.latent_dim
    config = dataclasses.replace(CONFIG, elbo_steps=3, decode_steps=2)
    pair = belief.make_belief_model(task, config)
    params = belief.init_params(jax.random.key(1), task, config)._asdict()
    args = (batch, *targets, 1.0, 1.0, None, jax.random.key(5))
    guide = handlers.trace(handlers.seed(handlers.substitute(pair.guide, params), 0)).get_trace(*args)
    assert guide["m"]["value"].shape == (B, 3, L)
    model = handlers.trace(handlers.seed(handlers.substitute(
        handlers.replay(pair.model, guide), params), 0)).get_trace(*args)
    rewards = model["rewards"]
    assert rewards["fn"].batch_shape == (B, 3) and rewards["value"].shape == (B, 3, 2)
    assert rewards["scale"] == pytest.approx(T / 2 / (B * 3))
    assert model["m"]["scale"] == pytest.approx(CONFIG.kl_weight / (B * 3))
    with pytest.raises(ValueError, match="subsample_key"):  # generating takes no key
        pair.model(batch._replace(rewards=None), subsample_key=jax.random.key(0))


def test_subsampled_loss_is_an_unbiased_estimate(grid):
    task, batch, targets = grid
    sub = dataclasses.replace(CONFIG, elbo_steps=2, decode_steps=3)
    num = 400
    keys = jax.random.split(jax.random.key(7), num)
    full = jax.vmap(lambda k: _loss(task, CONFIG, batch, targets, k, None))(keys)
    estimates = jax.vmap(lambda k: _loss(task, sub, batch, targets, jax.random.fold_in(k, 1),
                                         jax.random.fold_in(k, 2)))(keys)
    full, estimates = np.asarray(full), np.asarray(estimates)
    assert np.all(np.isfinite(estimates)) and estimates.std() > full.std()
    se = np.sqrt(full.var() / num + estimates.var() / num)
    assert abs(estimates.mean() - full.mean()) < 4 * se


def test_updates_need_a_key_and_em_runs_subsampled(grid):
    task, batch, targets = grid
    config = dataclasses.replace(CONFIG, elbo_steps=2, decode_steps=3)
    trainer = make_belief_svi(task, config)
    state = trainer.init(jax.random.key(0), batch, *targets)
    with pytest.raises(ValueError, match="subsample_key"):
        trainer.update(state, batch, *targets)
    state, loss = trainer.update(state, batch, *targets, subsample_key=jax.random.key(1))
    assert np.isfinite(float(loss))
    bandit = registry.make("bernoulli_bandit", num_arms=2, horizon=5)
    em_config = em.EMConfig.for_task(
        "bernoulli_bandit", num_envs=4, num_particles=4, num_nested=2, depth=2, svi_updates=2,
        batch_trials=4, replay_trials=8, latent_dim=2, hidden_size=8, state_size=4,
        decoder_hidden=(8,), head_hidden=8, **{"belief.elbo_steps": 2, "belief.decode_steps": 2})
    em_trainer = em.make_trainer(bandit, em_config)
    _, metrics = jax.jit(em_trainer.iteration)(em_trainer.init(jax.random.key(0)))
    assert np.isfinite(float(metrics["loss"]))


def test_saved_configs_without_the_fields_load_the_exact_objective():
    saved = configs.to_json(em.EMConfig(belief=belief.BeliefConfig(elbo_steps=8, decode_steps=4)))
    del saved["belief"]["elbo_steps"], saved["belief"]["decode_steps"]
    loaded = configs.from_json("varibased", em.EMConfig, saved)
    assert (loaded.belief.elbo_steps, loaded.belief.decode_steps) == (0, 0)
    assert configs.LEGACY["BeliefConfig"]["elbo_steps"] == 0 == configs.LEGACY["BeliefConfig"]["decode_steps"]
    with pytest.raises(ValueError, match="elbo_steps"):
        belief.BeliefConfig(elbo_steps=-1)
