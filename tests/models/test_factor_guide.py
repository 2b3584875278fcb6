"""The full-covariance "factors" guide and the linear decoder: the Gaussian algebra, the
sequence form against the planner's incremental form, and the claim that makes the guide
worth having -- with a linear decoder the exact conjugate posterior is in its family (here:
the GP posterior of function optimization, to float32 accuracy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference.em import EMConfig
from varibased.inference.svi import SVIConfig, fit, make_belief_svi
from varibased.models import belief, guides, history, registry, rollout
from varibased.models import decoder as decoder_lib
from varibased.models.function_optimization import posterior_marginals
from varibased.planning.learned_model import learned_model
from varibased.planning.reference_agents import posterior_sampling_agent, random_agent

CONFIG = belief.BeliefConfig(latent_dim=4, hidden_size=16, state_size=8, decoder_hidden=(8,),
                             head_hidden=8, input_hidden=8, decoder_inputs=("action",),
                             decoder="linear", guide="factors", factor_rank=2)


def test_natural_to_moments_inverts_the_precision():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 6, 6))
    precision = np.eye(6) + a @ a.transpose(0, 2, 1)
    eta = rng.normal(size=(5, 6))
    mean, scale_tril = guides.natural_to_moments(jnp.asarray(precision, jnp.float32),
                                                 jnp.asarray(eta, jnp.float32))
    cov = np.linalg.inv(precision)
    np.testing.assert_allclose(np.asarray(scale_tril @ jnp.swapaxes(scale_tril, -1, -2)), cov, atol=1e-5)
    np.testing.assert_allclose(np.asarray(mean), np.einsum("bij,bj->bi", cov, eta), atol=1e-5)
    np.testing.assert_array_equal(np.triu(np.asarray(scale_tril), 1), 0.0)
    assert np.all(np.diagonal(np.asarray(scale_tril), axis1=-2, axis2=-1) > 0)


def test_linear_decoder_is_affine_in_m():
    task = registry.make("function_optimization")
    params = belief.init_params(jax.random.key(0), task, CONFIG)
    queries = decoder_lib.query_inputs(task, jnp.zeros((32,), jnp.int32), jnp.arange(32))
    m = jax.random.normal(jax.random.key(1), (3, CONFIG.latent_dim))
    f = decoder_lib.predictive_rewards(params, jnp.concatenate([m, jnp.zeros((1, 4)), m[:1] + m[1:2]]),
                                  queries, task, CONFIG)
    np.testing.assert_allclose(f[4] - f[3], (f[0] - f[3]) + (f[1] - f[3]), atol=1e-5)


@pytest.fixture(scope="module")
def fo_trials():
    task = registry.make("function_optimization")
    traj = jax.jit(lambda k: rollout.run_trials(k, task, random_agent(task), 4))(jax.random.key(2))
    return task, traj, history.batch_from_trajectory(task, traj)


def test_sequence_beliefs_match_the_planner_and_the_prior_readout(fo_trials):
    task, traj, batch = fo_trials
    params = belief.init_params(jax.random.key(3), task, CONFIG)
    trial = jax.tree.map(lambda x: x[0], batch)
    mean, scale_tril = belief.trial_moments(params, trial, task, CONFIG)
    T, L = task.trial_length, CONFIG.latent_dim
    assert mean.shape == (T + 1, L) and scale_tril.shape == (T + 1, L, L)
    # Belief 0 is the prior read-out, with the marginal scales as its log_scale.
    _, _, prior_mean, prior_log_scale = belief.prior_belief(params, task, CONFIG)
    np.testing.assert_allclose(mean[0], prior_mean, atol=1e-6)
    cov0 = scale_tril[0] @ scale_tril[0].T
    np.testing.assert_allclose(np.exp(2 * prior_log_scale), np.diagonal(cov0), rtol=1e-5)
    # The planner's node sums the same factors one step at a time.
    model = learned_model(task, CONFIG, params)
    node = model.init(jax.random.key(4))
    for t in range(T):
        node = model.update(node, jax.tree.map(lambda x, t=t: x[0, t], traj.transitions))
        m_t, tril_t = guides.natural_to_moments(*node.guide_state)
        np.testing.assert_allclose(m_t, mean[t + 1], atol=1e-4)
        np.testing.assert_allclose(tril_t, scale_tril[t + 1], atol=1e-4)
    # ... and samples it: the sample moments match the belief.
    draws = model.sample_tasks(jax.random.key(5), node, 20000)
    scale = float(jnp.abs(scale_tril[-1]).max())
    np.testing.assert_allclose(draws.mean(0), mean[-1], atol=0.05 * scale + 1e-3)
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), scale_tril[-1] @ scale_tril[-1].T,
                               atol=0.05 * float((scale_tril[-1] @ scale_tril[-1].T).max()))
    # Imagined steps add factors too.
    child = model.advance(node._replace(t=jnp.asarray(3, jnp.int32)), jnp.asarray(5), jnp.asarray(0.3),
                          True)
    assert not np.allclose(child.guide_state[0], node.guide_state[0])


def test_the_exact_gp_posterior_is_in_the_family(fo_trials):
    """A linear decoder with ``w_a = L[a]`` (the prior's Cholesky rows) and the factors of
    the real observations, ``U = w_a / sigma``, ``rho = r / sigma``, give the exact GP posterior."""
    task, traj, batch = fo_trials
    N = task.num_actions
    config = belief.BeliefConfig(latent_dim=N, decoder_inputs=("action",), decoder="linear",
                                 guide="factors", decoder_hidden=(8,))
    belief_init = task.belief_init()
    chol, sigma = np.asarray(belief_init.prior_scale_tril, np.float64), float(belief_init.noise)
    params = belief.init_params(jax.random.key(0), task, config)
    weights = np.concatenate([chol, np.zeros((N, 1))], axis=1)  # [N actions, L + 1 (bias)]
    assert params.decoder["x_net"][0]["w"].shape == weights.shape
    params = params._replace(decoder={**params.decoder, "x_net": (
        {"w": jnp.asarray(weights, jnp.float32), "b": jnp.zeros((N + 1,), jnp.float32)},)})
    queries = decoder_lib.query_inputs(task, jnp.zeros((N,), jnp.int32), jnp.arange(N))
    actions, rewards = np.asarray(traj.transitions.action[0]), np.asarray(traj.transitions.reward[0])
    u = jnp.asarray(chol[actions] / sigma, jnp.float32)  # [T, L]
    precision = jnp.eye(N) + jnp.cumsum(u[:, :, None] * u[:, None, :], 0)
    eta = jnp.cumsum(u * jnp.asarray(rewards / sigma, jnp.float32)[:, None], 0)
    mean, scale_tril = guides.natural_to_moments(precision, eta)
    # The decoder at the queries is W m: its mean and variance under the belief.
    w = decoder_lib.predictive_rewards(params, jnp.eye(N), queries, task, config) \
        - decoder_lib.predictive_rewards(params, jnp.zeros((1, N)), queries, task, config)
    f_mean = mean @ w
    f_sd = jnp.linalg.norm(jnp.einsum("tij,ik->tjk", scale_tril, w), axis=-2)

    def exact(t):
        b = belief_init
        for s in range(t):
            state = jax.tree.map(lambda x, s=s: x[0, s], traj.transitions.env_state.state)
            b = task.belief_update(b, state, actions[s], rewards[s])
        return posterior_marginals(b)

    for t in (1, 4, task.trial_length):
        exact_mean, exact_sd = exact(t)
        np.testing.assert_allclose(f_mean[t - 1], exact_mean, atol=2e-3)
        np.testing.assert_allclose(f_sd[t - 1], exact_sd, atol=2e-3)


def test_svi_trains_the_factor_guide_and_calibrates_function_optimization():
    """A few hundred updates on posterior-sampling trials: the loss falls and the learned 90%
    intervals cover the true f at a calibrated rate (benchmark scale, 4000 updates: 0.87)."""
    task = registry.make("function_optimization")
    config = belief.BeliefConfig(latent_dim=16, decoder_inputs=("action",), decoder="linear",
                                 guide="factors", decode="past")
    agent = posterior_sampling_agent(task)
    run = jax.jit(lambda k, n: rollout.run_trials(k, task, agent, n), static_argnums=1)
    data = history.batch_from_trajectory(task, run(jax.random.key(0), 2048))
    held_traj = run(jax.random.key(1), 128)
    held = history.batch_from_trajectory(task, held_traj)
    trainer = make_belief_svi(task, config, SVIConfig(learning_rate=5e-3))
    state, losses = fit(jax.random.key(2), trainer, data, num_updates=1000, batch_size=64,
                        updates_per_call=50)
    assert losses[-50:].mean() < losses[:50].mean() - 5.0
    params = trainer.get_params(state)
    queries = decoder_lib.query_inputs(task, jnp.zeros((32,), jnp.int32), jnp.arange(32))
    draws = jax.jit(jax.vmap(lambda k, trial: belief.trial_predictive(k, params, trial, queries, task,
                                                                     config, 64)))(
        jax.random.split(jax.random.key(3), 128), held)  # [B, T+1, S, N]
    mean, sd = draws.mean(2), draws.std(2)
    f = np.asarray(held_traj.task_params["f"])[:, None, :]
    coverage = float((np.abs(f - mean) <= 1.6448536 * sd).mean())
    assert 0.85 <= coverage <= 0.95, coverage


def test_factor_guide_rejects_windows():
    with pytest.raises(ValueError, match="guide"):
        belief.BeliefConfig(guide="full")
    with pytest.raises(ValueError, match="window"):
        EMConfig.for_task("my_task", guide="factors", window=5)
    with pytest.raises(ValueError, match="factor_rank"):
        belief.BeliefConfig(factor_rank=0)
