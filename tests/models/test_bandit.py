"""Bernoulli bandit: conjugate belief, env vs model, exact Bayes-optimal value, errors."""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

from varibased.models import bandit, registry, rollout
from varibased.models import task as task_lib
from varibased.models.task import TaskError
from varibased.planning import reference_agents


def test_beta_counts_after_a_history():
    task = bandit.make_bernoulli_bandit(num_arms=3, horizon=8, alpha=2.0, beta=[1.0, 2.0, 3.0])
    actions = [0, 2, 2, 1, 0, 2, 0, 0]
    rewards = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    update = jax.jit(task.belief_update)
    belief = task.belief_init()
    for a, r in zip(actions, rewards, strict=True):
        belief = update(belief, task.initial_state(), a, r)
    np.testing.assert_array_equal(belief.successes, [3, 0, 1])
    np.testing.assert_array_equal(belief.failures, [1, 1, 2])
    from scipy.stats import beta as beta_dist

    p = {"p": jnp.array([0.3, 0.6, 0.45])}
    expected = sum(
        beta_dist(a, b).logpdf(x)
        for a, b, x in zip([5, 2, 3], [2, 3, 5], [0.3, 0.6, 0.45], strict=True)
    )
    assert float(task.belief_log_prob(belief, p)) == pytest.approx(expected, abs=1e-4)
    keys = jax.random.split(jax.random.key(0), 20_000)
    draws = jax.vmap(lambda k: task.belief_sample(k, belief)["p"])(keys)
    means = np.array([5 / 7, 2 / 5, 3 / 8])
    sds = np.sqrt(means * (1 - means) / (np.array([7, 5, 8]) + 1))
    assert np.all(np.abs(np.asarray(draws).mean(0) - means) <= 5 * sds / math.sqrt(20_000))


def test_env_reward_frequency_matches_p_and_model_density_is_finite():
    task = bandit.make_bernoulli_bandit(num_arms=2, horizon=20, alpha=2.0, beta=3.0)
    params = {"p": jnp.array([0.2, 0.7], jnp.float32)}
    env_state, _ = task_lib.reset(jax.random.key(0), params, task)
    num = 20_000

    def pull(key, action):
        return task_lib.step(key, env_state, action, params, task)[2]

    pulls = jax.jit(jax.vmap(pull, (0, None)))
    for arm, p in enumerate([0.2, 0.7]):
        rewards = pulls(jax.random.split(jax.random.key(arm + 1), num), arm)
        assert set(np.unique(np.asarray(rewards)).tolist()) <= {0.0, 1.0}
        assert abs(float(rewards.mean()) - p) <= 5 * math.sqrt(p * (1 - p) / num)
    # A whole env-simulated trial: the trial model's log density is the Beta prior's plus
    # the Bernoulli likelihood's.
    agent = reference_agents.random_agent(task)
    trajectory = jax.jit(lambda k: rollout.run_trial(k, task, agent, params))(jax.random.key(9))
    actions, rewards = trajectory.transitions.action, trajectory.transitions.reward
    log_joint = jax.jit(
        lambda a, r, p: log_density(task_lib.trial_model, (task, a, r), {}, p)[0]
    )(actions, rewards, params)
    from scipy.stats import beta as beta_dist

    p = np.asarray(params["p"], np.float64)[np.asarray(actions)]
    r = np.asarray(rewards, np.float64)
    expected = beta_dist(2, 3).logpdf([0.2, 0.7]).sum() + np.sum(r * np.log(p) + (1 - r) * np.log1p(-p))
    assert np.isfinite(float(log_joint))
    assert float(log_joint) == pytest.approx(expected, abs=1e-3)


def _expectimax_over_histories(alphas, betas, horizon):
    """Bayes-optimal value by explicit recursion over whole histories (no counts, no memo).

    The predictive of a reward comes from the marginal likelihood of the history,
    P(history + (a, r)) / P(history), with P(history) = prod_a B(alpha + s, beta + f) / B(alpha, beta).
    """

    def log_marginal(history):
        total = 0.0
        for arm, (a, b) in enumerate(zip(alphas, betas, strict=True)):
            s = sum(1 for x, r in history if x == arm and r == 1)
            f = sum(1 for x, r in history if x == arm and r == 0)
            total += (
                math.lgamma(a + s) + math.lgamma(b + f) - math.lgamma(a + b + s + f)
                - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
            )
        return total

    def value(history):
        if len(history) == horizon:
            return 0.0
        base = log_marginal(history)
        best = -math.inf
        for arm in range(len(alphas)):
            q = 0.0
            for r in (0, 1):
                p = math.exp(log_marginal(history + [(arm, r)]) - base)
                q += p * (r + value(history + [(arm, r)]))
            best = max(best, q)
        return best

    return value([])


@pytest.mark.parametrize(
    "alphas, betas, horizon",
    [((1.0, 1.0), (1.0, 1.0), 3), ((1.0, 2.0), (1.0, 0.5), 3), ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 3),
     ((2.0, 1.0), (1.0, 3.0), 4)],
)
def test_dp_equals_brute_force_expectimax(alphas, betas, horizon):
    expected = _expectimax_over_histories(alphas, betas, horizon)
    got = bandit.bayes_optimal_value(len(alphas), horizon, alphas, betas)
    assert got == pytest.approx(expected, rel=1e-12)


def test_dp_exact_small_values():
    # Horizon 2, uniform priors: 1/2 + (1/2)(2/3) + (1/2)(1/2) = 13/12.
    assert bandit.bayes_optimal_value(2, 2) == pytest.approx(float(Fraction(13, 12)), rel=1e-15)
    # One arm: no choice, h * alpha / (alpha + beta).
    assert bandit.bayes_optimal_value(1, 7, 2.0, 3.0) == pytest.approx(7 * 2 / 5, rel=1e-14)


def test_bayes_optimal_value_between_posterior_sampling_and_oracle():
    task = registry.make("bernoulli_bandit")
    value, per_episode = task.bayes_optimal_value()
    assert per_episode == [value]
    oracle = 20 * 2 / 3  # horizon * E[max of 2 uniforms]
    sampling = rollout.evaluate(
        jax.random.key(2024), task, reference_agents.posterior_sampling_agent(task), 2000
    )
    assert sampling.mean - 3 * sampling.se <= value <= oracle
    assert value > sampling.mean  # the gap (~0.5) is far above the MC error (~0.09)


def test_registry_sizes_and_optimal_value():
    task = registry.make("bernoulli_bandit", num_arms=3, horizon=5)
    assert (task.num_actions, task.trial_length, task.reward_values) == (3, 5, (0.0, 1.0))
    params = task_lib.sample_task(jax.random.key(0), task)
    assert params["p"].shape == (3,)
    p = np.asarray(params["p"])
    assert float(task.optimal_value(params, task.initial_state(), 2)) == pytest.approx(3 * p.max())
    assert int(task.oracle_action(jax.random.key(1), params, task.initial_state(), 0)) == int(p.argmax())
    value, _ = task.bayes_optimal_value()
    assert 5 * 0.5 < value < 5 * 0.75


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_arms": 0}, "num_arms"),
        ({"horizon": 0}, "horizon"),
        ({"horizon": 2.0}, "horizon"),
        ({"alpha": 0.0}, "alpha"),
        ({"beta": -1.0}, "beta"),
        ({"alpha": [1.0, 1.0, 1.0]}, r"shape \(2,\)"),
        ({"beta": [[1.0, 1.0]]}, r"shape \(2,\)"),
        ({"alpha": "one"}, "alpha"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(TaskError, match=match):
        bandit.make_bernoulli_bandit(**kwargs)


def test_dp_refuses_huge_state_spaces():
    with pytest.raises(ValueError, match="DP states"):
        bandit.bayes_optimal_value(6, 50)
