"""The learned BAMDP model: shapes, the step-0 prior read-out, the pure planner functions
against the batched model, and the model/guide pair's sites."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers

from varibased.models import belief, guides, history, registry, rollout
from varibased.models import decoder as decoder_lib
from varibased.models.gridworld import make_gridworld
from varibased.models.task import TaskError
from varibased.planning.reference_agents import random_agent

CONFIG = belief.BeliefConfig(latent_dim=3, hidden_size=16, state_size=8, decoder_hidden=(8, 8),
                             head_hidden=8)


@pytest.fixture(scope="module")
def grid():
    task = make_gridworld(size=3, episode_length=4, num_episodes=2, excluded=1)
    traj = jax.jit(lambda k: rollout.run_trials(k, task, random_agent(task), 3))(jax.random.key(0))
    return task, traj, history.batch_from_trajectory(task, traj)


def test_batch_and_history_inputs(grid):
    task, traj, batch = grid
    B, T, d = 3, task.trial_length, task.obs_dim
    assert batch.actions.shape == (B, T) and batch.moved_obs.shape == (B, T, d)
    # moved_obs is the cell moved into, next_obs the next episode's start after a done.
    tr = traj.transitions
    done = np.asarray(tr.done) == 1
    np.testing.assert_array_equal(np.asarray(batch.moved_obs)[~done], np.asarray(tr.next_obs)[~done])
    start = np.asarray(task.observe(task.initial_state()))
    np.testing.assert_array_equal(np.asarray(batch.next_obs)[done], np.broadcast_to(start, (done.sum(), d)))
    inputs = history.history_inputs(jax.tree.map(lambda x: x[0], batch), task.num_actions)
    assert inputs.shape == (T + 1, history.input_dim(task))
    np.testing.assert_array_equal(inputs[0, d:], 0.0)  # no previous action/reward/done; t = 0
    np.testing.assert_array_equal(inputs[1:, :d], batch.next_obs[0])
    np.testing.assert_array_equal(jnp.argmax(inputs[1:, d:d + 5], -1), batch.actions[0])
    np.testing.assert_allclose(inputs[1:, d + 5], batch.rewards[0])
    np.testing.assert_array_equal(inputs[1:, d + 6], batch.dones[0])
    np.testing.assert_allclose(inputs[1:, d + 7], np.arange(1, T + 1) / T)  # the trial step


def test_step_zero_belief_is_the_prior_readout(grid):
    task, _, batch = grid
    params = belief.init_params(jax.random.key(1), task, CONFIG)
    for b in range(3):
        mean, log_scale = belief.trial_beliefs(params, jax.tree.map(lambda x, b=b: x[b], batch), task,
                                               CONFIG)
        assert mean.shape == (task.trial_length + 1, CONFIG.latent_dim)
        _, _, prior_mean, prior_log_scale = belief.prior_belief(params, task, CONFIG)
        np.testing.assert_allclose(mean[0], prior_mean, atol=1e-6)
        np.testing.assert_allclose(log_scale[0], prior_log_scale, atol=1e-6)


@pytest.mark.parametrize("decoder", ["bilinear", "mlp"])
def test_pure_functions_match_the_batched_model(grid, decoder):
    task, _, batch = grid
    config = belief.BeliefConfig(**{**CONFIG.__dict__, "decoder": decoder})
    params = belief.init_params(jax.random.key(2), task, config)
    trial = jax.tree.map(lambda x: x[1], batch)
    inputs = history.history_inputs(trial, task.num_actions)
    _, features = history.encode_history(params, inputs, config)
    # The planner's step mode gives the same features as the sequence encoder.
    carry = history.initial_carry(config)
    step = jax.jit(history.encoder_step)
    for t in range(inputs.shape[0]):
        carry, f = step(params, carry, inputs[t])
        np.testing.assert_allclose(f, features[t], atol=1e-5)
    # The one-pair reward distribution matches the all-pairs decoding.
    m = jax.random.normal(jax.random.key(3), (4, config.latent_dim))
    loglik = decoder_lib.decoder_log_likelihood(params, m, trial, task, config)
    assert loglik.shape == (4, task.trial_length)
    index = jnp.argmin(jnp.abs(jnp.asarray(task.reward_values) - trial.rewards[:, None]), -1)
    for i, s in [(0, 0), (3, 5), (2, 7)]:
        d = decoder_lib.reward_distribution(params, m[i], trial.obs[s], trial.actions[s],
                                       trial.moved_obs[s], task, config)
        np.testing.assert_allclose(d.log_prob(index[s]), loglik[i, s], atol=1e-5)
    assert belief.policy_logits(params, features).shape == (task.trial_length + 1, task.num_actions)
    assert belief.value(params, features).shape == (task.trial_length + 1,)


def test_gaussian_decoder_on_continuous_rewards():
    task = registry.make("function_optimization")
    params = belief.init_params(jax.random.key(0), task, CONFIG)
    d = decoder_lib.reward_distribution(params, jnp.zeros(3), jnp.ones(1), jnp.asarray(4), jnp.ones(1),
                                   task, CONFIG)
    assert d.mean.shape == () and float(d.scale) == pytest.approx(1.0)
    queries = decoder_lib.query_inputs(task, jnp.zeros((32,), jnp.int32), jnp.arange(32))
    assert decoder_lib.predictive_rewards(params, jnp.zeros((5, 3)), queries, task, CONFIG).shape == (5, 32)


def test_model_and_guide_sites(grid):
    task, _, batch = grid
    pair = belief.make_belief_model(task, CONFIG)
    B, T, A = 3, task.trial_length, task.num_actions

    def sites(fn, *args):
        tr = handlers.trace(handlers.seed(fn, jax.random.key(0))).get_trace(batch, *args)
        return {k: v for k, v in tr.items()}

    guide = sites(pair.guide)
    assert guide["m"]["value"].shape == (B, T + 1, CONFIG.latent_dim)
    assert set(belief.SITES) - {"decoder"} <= set(guide)
    model = sites(pair.model)
    assert model["m"]["value"].shape == (B, T + 1, CONFIG.latent_dim)
    assert "policy" not in model and "value" not in model
    full = sites(pair.model, jnp.full((B, T, A), 1.0 / A), jnp.zeros((B, T)))
    assert {"policy", "value", "encoder", "policy_head", "value_head"} <= set(full)
    with pytest.raises(ValueError, match="policy_targets"):
        sites(pair.model, jnp.zeros((B, T, A + 1)))


def test_bad_input_is_rejected(grid):
    task, _, batch = grid
    with pytest.raises(ValueError, match="latent_dim"):
        belief.BeliefConfig(latent_dim=0)
    with pytest.raises(ValueError, match="decoder_inputs"):
        belief.BeliefConfig(decoder_inputs=("goal",))
    with pytest.raises(ValueError, match="decode"):
        belief.BeliefConfig(decode="future")
    with pytest.raises(TaskError):
        belief.make_belief_model("gridworld")
    pair = belief.make_belief_model(task, CONFIG)
    with pytest.raises(ValueError, match="moved_obs"):
        pair.guide(batch._replace(moved_obs=batch.moved_obs[..., :1]))


def test_window_from_cached_carries_matches_the_whole_trial(grid):
    """Encoding a window from the cached S5 state gives the whole trial's beliefs there, and
    the windowed model/guide pair reduces to the whole-trial one on the same beliefs."""
    task, _, batch = grid
    T, W = task.trial_length, 3
    params = belief.init_params(jax.random.key(2), task, CONFIG)
    carries = jax.vmap(lambda trial: history.history_carries(params, trial, task, CONFIG))(batch)
    starts = jnp.array([0, 2, T - W], jnp.int32)
    window = history.make_window(batch, carries, starts, W, task)
    assert window.inputs.shape == (3, W, history.input_dim(task))
    for b in range(3):
        trial = jax.tree.map(lambda x, b=b: x[b], batch)
        mean, log_scale = belief.trial_beliefs(params, trial, task, CONFIG)
        carry = jax.tree.map(lambda c, b=b: c[b], window.carry)
        _, features = history.encode_history(params, window.inputs[b], CONFIG, carry=carry)
        w_mean, w_log_scale = guides.belief_head(params, features)
        s = int(starts[b])
        np.testing.assert_allclose(w_mean, mean[s:s + W], atol=1e-5)
        np.testing.assert_allclose(w_log_scale, log_scale[s:s + W], atol=1e-5)

    # a window covering beliefs 0..T-1 weighs the same per-belief terms as the whole trial
    # minus its last belief: compare the rewards site on a shared latent draw
    model = belief.make_belief_model(task, belief.BeliefConfig(**{**CONFIG.__dict__, "decode": "past"}))
    full_window = history.make_window(batch, carries, jnp.zeros(3, jnp.int32), T, task)
    values = dict(zip(belief.SITES, params, strict=True))
    m = jax.random.normal(jax.random.key(3), (3, T + 1, CONFIG.latent_dim))

    def rewards(window, m):
        conditioned = handlers.substitute(handlers.condition(model.model, {"m": m}), values)
        trace = handlers.trace(handlers.seed(conditioned, 0)).get_trace(batch, window=window)
        site = trace["rewards"]  # log-likelihood per belief, before the plates' scaling
        return site["fn"].log_prob(site["value"])

    whole = rewards(None, m)  # [B, T+1]
    windowed = rewards(full_window, m[:, :T])  # [B, T]
    np.testing.assert_allclose(windowed, whole[:, :T], atol=1e-5)


def test_bad_window_is_rejected(grid):
    task, _, batch = grid
    model = belief.make_belief_model(task, CONFIG)
    params = belief.init_params(jax.random.key(2), task, CONFIG)
    carries = jax.vmap(lambda trial: history.history_carries(params, trial, task, CONFIG))(batch)
    window = history.make_window(batch, carries, jnp.zeros(3, jnp.int32), 2, task)
    with pytest.raises(ValueError, match="policy_targets must have shape"):
        model.model(batch, jnp.ones((3, task.trial_length, task.num_actions)), window=window)
    with pytest.raises(TypeError, match="window must be a Window"):
        model.model(batch, window=(1, 2, 3))
    short = window._replace(start=jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="Window.start"):
        model.model(batch, window=short)


@pytest.mark.parametrize("task_name", ["bernoulli_bandit", "gridworld"])
def test_model_generates_rewards_from_the_decoder(task_name):
    """With ``batch.rewards=None`` the model draws rewards from the decoder given its latent:
    on a fixed latent, the frequencies of the drawn reward values match the decoder's
    probabilities at every step (within 5 binomial standard errors)."""
    task = registry.make(task_name)
    config = belief.BeliefConfig(latent_dim=3, hidden_size=16, state_size=8, decoder_hidden=(8, 8),
                                 head_hidden=8)
    params = belief.init_params(jax.random.key(4), task, config)
    # a sharper decoder than at initialization, so that the probabilities are far from uniform
    params = params._replace(decoder=jax.tree.map(lambda x: 4.0 * x, params.decoder))
    traj = rollout.run_trials(jax.random.key(5), task, random_agent(task), 2)
    batch = history.batch_from_trajectory(task, traj)
    B, T = batch.actions.shape
    N, L, K, S = T + 1, config.latent_dim, len(task.reward_values), 400
    m = jax.random.normal(jax.random.key(6), (L,))
    model = handlers.substitute(
        handlers.condition(belief.make_belief_model(task, config).model,
                           {"m": jnp.broadcast_to(m, (B, N, L))}),
        dict(zip(belief.SITES, params, strict=True)))

    def draw(rng_key):  # every belief of every trial: one independent reward sequence
        return handlers.trace(handlers.seed(model, rng_key)).get_trace(
            batch._replace(rewards=None))["rewards"]["value"]  # [B, N, T] reward indices

    draws = jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(7), S))
    assert draws.shape == (S, B, N, T)
    frequencies = jax.nn.one_hot(draws, K).mean(axis=(0, 2))  # [B, T, K]
    probs = jax.vmap(jax.vmap(lambda o, a, mo: decoder_lib.reward_distribution(
        params, m, o, a, mo, task, config).probs))(batch.obs, batch.actions, batch.moved_obs)
    assert float(jnp.min(probs)) < 0.3  # a non-trivial check
    standard_error = np.sqrt(probs * (1 - probs) / (S * N))
    np.testing.assert_array_less(np.abs(frequencies - probs), 5 * standard_error + 1e-3)

    # with the rewards given, the same site is observed at their indices
    site = handlers.trace(handlers.seed(model, 0)).get_trace(batch)["rewards"]
    assert site["is_observed"]
    expected = decoder_lib.reward_targets(task, batch.rewards)
    np.testing.assert_array_equal(site["value"], jnp.broadcast_to(expected[:, None], (B, N, T)))
    pair = belief.make_belief_model(task, config)
    with pytest.raises(ValueError, match="batch.rewards"):
        pair.guide(batch._replace(rewards=None))
    with pytest.raises(ValueError, match="batch.rewards"):
        pair.model(batch._replace(rewards=None), value_targets=jnp.zeros((B, T)))
