"""Function optimization: exact GP posterior vs float64 references, env vs model, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

from varibased.models import function_optimization as fo
from varibased.models import registry
from varibased.models import task as task_lib
from varibased.models.task import TaskError

NOISE = 0.1


@pytest.fixture(scope="module")
def task():
    return fo.make_function_optimization()


def _reference_kernel(num_points=32, lengthscale=0.1, jitter=1e-6):
    x = np.linspace(0.0, 1.0, num_points)
    return np.exp(-0.5 * ((x[:, None] - x[None, :]) / lengthscale) ** 2) + jitter * np.eye(num_points)


def _reference_posterior(actions, rewards, kernel=None):
    """Textbook GP conditioning on the raw (repeated) observations, float64."""
    kernel = _reference_kernel() if kernel is None else kernel
    gram = kernel[np.ix_(actions, actions)] + NOISE**2 * np.eye(len(actions))
    cross = kernel[:, actions]
    mean = cross @ np.linalg.solve(gram, rewards)
    cov = kernel - cross @ np.linalg.solve(gram, cross.T)
    return mean, cov


def _history(seed, length=16):
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 32, length)
    actions[3] = actions[5] = actions[0]  # repeated queries of one point
    rewards = rng.normal(size=length)
    return actions, rewards


def _belief_after(task, actions, rewards):
    update = jax.jit(task.belief_update)
    belief = task.belief_init()
    for a, r in zip(actions, rewards, strict=True):
        belief = update(belief, jnp.zeros((), jnp.int32), a, r)
    return belief


def test_belief_is_counts_and_sums(task):
    actions, rewards = _history(0)
    belief = _belief_after(task, actions, rewards)
    np.testing.assert_array_equal(belief.counts, np.bincount(actions, minlength=32))
    np.testing.assert_allclose(belief.sums, np.bincount(actions, rewards, minlength=32), atol=1e-5)


@pytest.mark.parametrize("length", [0, 1, 16])
def test_posterior_matches_float64_reference(task, length):
    actions, rewards = _history(1, 16)
    actions, rewards = actions[:length], rewards[:length]
    belief = _belief_after(task, actions, rewards)
    mean, cov = fo.posterior_moments(belief)
    ref_mean, ref_cov = _reference_posterior(actions, rewards)
    np.testing.assert_allclose(mean, ref_mean, atol=2e-5)
    np.testing.assert_allclose(cov, ref_cov, atol=2e-5)
    marginal_mean, std = fo.posterior_marginals(belief)
    np.testing.assert_allclose(marginal_mean, ref_mean, atol=2e-5)
    np.testing.assert_allclose(std, np.sqrt(np.clip(np.diag(ref_cov), 0, None)), atol=2e-5)


def test_posterior_log_prob_matches_reference(task):
    from scipy.stats import multivariate_normal

    actions, rewards = _history(2)
    for belief, (ref_mean, ref_cov) in [
        (task.belief_init(), (np.zeros(32), _reference_kernel())),
        (_belief_after(task, actions, rewards), _reference_posterior(actions, rewards)),
    ]:
        f = task.belief_sample(jax.random.key(3), belief)["f"]
        expected = multivariate_normal(ref_mean, ref_cov).logpdf(np.asarray(f, np.float64))
        assert float(task.belief_log_prob(belief, {"f": f})) == pytest.approx(expected, abs=5e-3)


def test_posterior_samples_have_the_posterior_moments(task):
    actions, rewards = _history(4)
    belief = _belief_after(task, actions, rewards)
    num = 20_000
    draws = jax.vmap(lambda k: task.belief_sample(k, belief)["f"])(jax.random.split(jax.random.key(5), num))
    draws = np.asarray(draws, np.float64)
    mean, cov = (np.asarray(x, np.float64) for x in fo.posterior_moments(belief))
    var = np.clip(np.diag(cov), 1e-12, None)
    assert np.all(np.abs(draws.mean(0) - mean) <= 5 * np.sqrt(var / num) + 1e-5)
    emp_cov = np.cov(draws, rowvar=False)
    se_cov = np.sqrt((np.outer(var, var) + cov**2) / num)
    assert np.all(np.abs(emp_cov - cov) <= 5 * se_cov + 1e-5)


def test_chain_rule_of_predictives_equals_marginal_likelihood(task):
    """sum_t log N(y_t; mu_{t-1}(a_t), s2_{t-1}(a_t) + noise^2) = log N(y; 0, K_aa + noise^2 I)."""
    from scipy.stats import multivariate_normal

    actions, rewards = _history(6)
    marginals, update = jax.jit(fo.posterior_marginals), jax.jit(task.belief_update)
    belief = task.belief_init()
    total = 0.0
    for a, r in zip(actions, rewards, strict=True):
        mean, std = (np.asarray(x, np.float64) for x in marginals(belief))
        var = std[a] ** 2 + NOISE**2
        total += -0.5 * (math.log(2 * math.pi * var) + (r - mean[a]) ** 2 / var)
        belief = update(belief, jnp.zeros((), jnp.int32), a, r)
    kernel = _reference_kernel()
    expected = multivariate_normal(
        np.zeros(len(actions)), kernel[np.ix_(actions, actions)] + NOISE**2 * np.eye(len(actions))
    ).logpdf(rewards)
    assert total == pytest.approx(expected, abs=2e-3)
    got = fo.lengthscale_log_marginal(0.1, actions, rewards)
    assert float(got) == pytest.approx(expected, abs=2e-3)
    other = multivariate_normal(
        np.zeros(len(actions)),
        _reference_kernel(lengthscale=0.2)[np.ix_(actions, actions)] + NOISE**2 * np.eye(len(actions)),
    ).logpdf(rewards)
    assert float(fo.lengthscale_log_marginal(0.2, actions, rewards)) == pytest.approx(other, abs=2e-3)
    grad = jax.grad(lambda ell: fo.lengthscale_log_marginal(ell, actions, rewards))(0.15)
    assert np.isfinite(grad)


def test_env_rewards_have_the_model_moments(task):
    """Env-simulated rewards over prior tasks: mean 0, covariance (K + jitter I)[a, a] + noise^2 I."""
    actions = jnp.array([0, 3, 3, 10, 31, 4, 5, 0], jnp.int32)
    num = 20_000

    def simulate(rng_key):
        task_key, run_key = jax.random.split(rng_key)
        params = task_lib.sample_task(task_key, task)
        env_state, _ = task_lib.reset(run_key, params, task)

        def body(env_state, inputs):
            key, action = inputs
            env_state, _, reward, _ = task_lib.step(key, env_state, action, params, task)
            return env_state, reward

        keys = jax.random.split(run_key, actions.shape[0])
        return jax.lax.scan(body, env_state, (keys, actions))[1]

    rewards = np.asarray(jax.jit(jax.vmap(simulate))(jax.random.split(jax.random.key(7), num)))
    a = np.asarray(actions)
    cov = _reference_kernel()[np.ix_(a, a)] + NOISE**2 * np.eye(len(a))
    var = np.diag(cov)
    assert np.all(np.abs(rewards.mean(0)) <= 5 * np.sqrt(var / num))
    se_cov = np.sqrt((np.outer(var, var) + cov**2) / num)
    assert np.all(np.abs(np.cov(rewards, rowvar=False) - cov) <= 5 * se_cov)
    # The NumPyro trial model gives these rewards a finite log density, equal to the
    # prior's plus the Gaussian likelihood's.
    params = task_lib.sample_task(jax.random.key(8), task)
    log_joint, _ = log_density(task_lib.trial_model, (task, actions, rewards[0]), {}, params)
    from scipy.stats import multivariate_normal, norm

    f = np.asarray(params["f"], np.float64)
    expected = multivariate_normal(np.zeros(32), _reference_kernel()).logpdf(f)
    expected += norm(f[a], NOISE).logpdf(rewards[0]).sum()
    assert np.isfinite(float(log_joint))
    assert float(log_joint) == pytest.approx(expected, abs=5e-2)


def test_optimal_value_and_oracle(task):
    params = task_lib.sample_task(jax.random.key(9), task)
    f = np.asarray(params["f"])
    state = task.initial_state()
    assert float(task.optimal_value(params, state, 0)) == pytest.approx(16 * f.max(), rel=1e-6)
    assert float(task.optimal_value(params, state, 10)) == pytest.approx(6 * f.max(), rel=1e-6)
    assert int(task.oracle_action(jax.random.key(0), params, state, 0)) == int(np.argmax(f))
    flat = {"f": jnp.zeros(32).at[jnp.array([4, 20])].set(1.0)}
    keys = jax.random.split(jax.random.key(1), 200)
    picks = jax.vmap(lambda k: task.oracle_action(k, flat, state, 0))(keys)
    assert set(np.asarray(picks).tolist()) == {4, 20}  # ties broken at random


def test_registry_and_lengthscale_variant():
    assert registry.make("function_optimization", num_points=8, num_queries=4).num_actions == 8
    variant = registry.make("function_optimization_lengthscale")
    assert not variant.has_exact_belief
    params = task_lib.sample_task(jax.random.key(0), variant)
    assert params["f"].shape == (32,) and params["lengthscale"].shape == ()
    lengthscales = jax.vmap(lambda k: task_lib.sample_task(k, variant)["lengthscale"])(
        jax.random.split(jax.random.key(1), 4000)
    )
    logs = np.log(np.asarray(lengthscales))
    assert abs(logs.mean() - math.log(0.1)) < 5 * 0.5 / math.sqrt(4000)
    actions = jnp.arange(16) * 2
    rewards = params["f"][actions]
    log_joint, _ = log_density(task_lib.trial_model, (variant, actions, rewards), {}, params)
    assert np.isfinite(float(log_joint))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_points": 0}, "num_points"),
        ({"num_points": 2.5}, "num_points"),
        ({"num_queries": -1}, "num_queries"),
        ({"lengthscale": 0.0}, "lengthscale"),
        ({"variance": -1.0}, "variance"),
        ({"noise": 0.0}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"jitter": -1e-6}, "jitter"),
        ({"lengthscale": "0.1"}, "lengthscale"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(TaskError, match=match):
        fo.make_function_optimization(**kwargs)


def test_bad_lengthscale_variant_arguments_raise():
    with pytest.raises(TaskError, match="lengthscale_scale"):
        fo.make_function_optimization_lengthscale(lengthscale_scale=0.0)
    with pytest.raises(TaskError, match="lengthscale_loc"):
        fo.make_function_optimization_lengthscale(lengthscale_loc=float("inf"))
    with pytest.raises(ValueError, match="shape"):
        fo.lengthscale_log_marginal(0.1, jnp.arange(3), jnp.zeros(4))
