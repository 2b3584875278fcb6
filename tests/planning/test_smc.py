"""Belief-SMC planner: known answers on tasks whose optimum is known.

* a two-armed Bernoulli bandit with KNOWN arm means and a horizon of 1: the improved
  policy converges to the tilted target ``pi(a) ∝ E[exp(r_a / alpha)]`` and its argmax is
  the best arm with probability -> 1 as K grows;
* resampling leaves a weighted mean unbiased (every blackjax scheme);
* K = 1 without resampling samples the policy prior;
* one compilation per configuration; clear errors on bad configurations.
"""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from varibased.models.task import Task
from varibased.planning import smc
from varibased.planning.config import RESAMPLING_SCHEMES, PlannerConfig
from varibased.planning.model import exact_model

MEANS = (0.2, 0.8)


def known_bandit(means=MEANS, horizon: int = 1) -> Task:
    """A Bernoulli bandit whose arm means are known: the prior is a point mass."""
    means = jnp.asarray(means, jnp.float32)

    def prior():
        return {"means": numpyro.sample("means", dist.Delta(means, event_dim=1))}

    def reward_distribution(params, state, action, next_state):
        p = params["means"][action]
        return dist.Categorical(probs=jnp.stack([1.0 - p, p]))

    return Task(
        name="known_bandit",
        num_actions=len(means),
        obs_dim=1,
        episode_length=horizon,
        num_episodes=1,
        prior=prior,
        initial_state=lambda: jnp.zeros((), jnp.int32),
        transition=lambda state, action: state,
        observe=lambda state: jnp.zeros((1,), jnp.float32),
        reward_distribution=reward_distribution,
        reward_values=(0.0, 1.0),
        belief_init=lambda: means,
        belief_update=lambda belief, state, action, reward: belief,
        belief_sample=lambda key, belief: {"means": belief},
        optimal_value=lambda params, state, t: jnp.maximum(horizon - t, 0) * params["means"].max(),
    )


def two_hypotheses_bandit(horizon: int = 4) -> Task:
    """Arm means are (0.2, 0.8) or (0.8, 0.2), each a priori 1/2: a belief that moves."""
    table = jnp.asarray([[0.2, 0.8], [0.8, 0.2]], jnp.float32)

    def prior():
        which = numpyro.sample("which", dist.Categorical(probs=jnp.array([0.5, 0.5])))
        return {"which": which}

    def reward_distribution(params, state, action, next_state):
        p = table[params["which"], action]
        return dist.Categorical(probs=jnp.stack([1.0 - p, p]))

    def belief_update(belief, state, action, reward):
        likelihood = jnp.where(reward > 0.5, table[:, action], 1.0 - table[:, action])
        posterior = belief * likelihood
        return posterior / posterior.sum()

    def optimal_value(params, state, t):
        return jnp.maximum(horizon - t, 0) * 0.8

    return Task(
        name="two_hypotheses",
        num_actions=2,
        obs_dim=1,
        episode_length=horizon,
        num_episodes=1,
        prior=prior,
        initial_state=lambda: jnp.zeros((), jnp.int32),
        transition=lambda state, action: state,
        observe=lambda state: jnp.zeros((1,), jnp.float32),
        reward_distribution=reward_distribution,
        reward_values=(0.0, 1.0),
        belief_init=lambda: jnp.array([0.5, 0.5], jnp.float32),
        belief_update=belief_update,
        belief_sample=lambda key, belief: {"which": jax.random.categorical(key, jnp.log(belief))},
        optimal_value=optimal_value,
    )


def tilted_target(alpha: float, means=MEANS) -> np.ndarray:
    """``pi(a) ∝ E[exp(r_a / alpha)]`` for Bernoulli rewards and a uniform prior."""
    means = np.asarray(means, np.float64)
    mass = (1.0 - means) + means * math.exp(1.0 / alpha)
    return mass / mass.sum()


def plan_many(model, config, num_seeds: int, seed: int = 0):
    """Improved policies ``[num_seeds, A]`` and argmax actions from independent seeds."""
    root = model.init(jax.random.key(0))

    @jax.jit
    def run(keys):
        def one(key):
            plan_key, select_key = jax.random.split(key)
            result = smc.plan(plan_key, model, root, config)
            return result.policy, smc.select_action(select_key, result.policy, "argmax")

        return jax.vmap(one)(keys)

    policies, actions = run(jax.random.split(jax.random.key(seed), num_seeds))
    return np.asarray(policies, np.float64), np.asarray(actions)


@pytest.mark.parametrize(
    "depth, threshold, scheme, value",
    [
        (1, 0.5, "systematic", "qmdp"),
        (1, 0.5, "systematic", "zero"),
        # past the horizon imagined steps are no-ops; resampling at every depth
        (3, 1.0, "systematic", "qmdp"),
        (3, 1.0, "multinomial", "zero"),
    ],
)
def test_policy_converges_to_tilted_target(depth, threshold, scheme, value):
    alpha = 1.0
    config = PlannerConfig(num_particles=1024, num_nested=2, depth=depth, alpha=alpha,
                           ess_threshold=threshold, resampling=scheme)
    policies, _ = plan_many(exact_model(known_bandit(), value=value), config, num_seeds=64)
    np.testing.assert_allclose(policies.sum(-1), 1.0, atol=1e-5)
    target = tilted_target(alpha)
    mean = policies.mean(0)
    se = policies.std(0, ddof=1) / math.sqrt(len(policies))
    assert np.all(np.abs(mean - target) < 4 * se + 1e-3), (mean, target, se)
    # the target is a proper distribution, not a point mass on the best arm
    assert 0.6 < mean[1] < 0.7


def test_argmax_picks_best_arm_with_probability_to_one():
    model = exact_model(known_bandit())
    rates = []
    for num_particles in (1, 16, 256):
        config = PlannerConfig(num_particles=num_particles, num_nested=1, depth=1, alpha=1.0)
        _, actions = plan_many(model, config, num_seeds=1000, seed=num_particles)
        rates.append((actions == 1).mean())
    # K = 1: one draw from the uniform prior, whatever its reward -> 1/2
    assert abs(rates[0] - 0.5) < 4 * math.sqrt(0.25 / 1000)
    assert all(b >= a - 0.02 for a, b in zip(rates, rates[1:], strict=False)), rates
    assert rates[-1] >= 0.99, rates


def test_expected_outcome_gives_exact_tilt():
    """With the expected reward the weight of a particle is exp(mean_a / alpha) exactly."""
    alpha = 0.5
    config = PlannerConfig(num_particles=512, num_nested=1, depth=1, alpha=alpha,
                           outcome="expected")
    policies, _ = plan_many(exact_model(known_bandit(), value="zero"), config, num_seeds=4)
    counts = policies > 0  # every arm is proposed with K = 512
    assert counts.all()
    target = np.exp(np.asarray(MEANS) / alpha)
    target /= target.sum()
    # pi_hat(a) = n_a e^{m_a/alpha} / sum_b n_b e^{m_b/alpha}: recover n_a and compare
    ratio = policies[:, 1] / policies[:, 0] * math.exp((MEANS[0] - MEANS[1]) / alpha)
    assert np.all(ratio > 0.7) and np.all(ratio < 1.4)  # n_1 / n_0 for 512 uniform draws
    np.testing.assert_allclose(policies.mean(0), target, atol=0.05)


@pytest.mark.parametrize("scheme", RESAMPLING_SCHEMES)
def test_resampling_is_unbiased(scheme):
    log_weights = jnp.log(jnp.array([0.05, 0.3, 0.01, 0.14, 0.2, 0.1, 0.15, 0.05])) + 3.0
    values = jnp.array([1.0, -2.0, 5.0, 0.5, 3.0, -1.0, 2.0, 4.0])
    exact = float(jnp.sum(jax.nn.softmax(log_weights) * values))

    @jax.jit
    def resampled_means(keys):
        idx = jax.vmap(lambda k: smc.resample(k, log_weights, 8, scheme))(keys)
        return values[idx].mean(-1)

    estimates = np.asarray(resampled_means(jax.random.split(jax.random.key(3), 20000)))
    se = estimates.std(ddof=1) / math.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 4 * se + 1e-4, (estimates.mean(), exact, se)


def test_single_particle_samples_the_policy_prior():
    prior = np.array([0.1, 0.2, 0.7])
    model = exact_model(known_bandit(means=(0.2, 0.5, 0.8)))
    model = model._replace(policy_logits=lambda node: jnp.log(jnp.asarray(prior, jnp.float32)))
    config = PlannerConfig(num_particles=1, num_nested=1, depth=3, alpha=0.1)
    policies, actions = plan_many(model, config, num_seeds=4000)
    # one particle: the improved policy is the one-hot of its first action, never resampled
    np.testing.assert_array_equal(policies.max(-1), 1.0)
    np.testing.assert_array_equal(policies.argmax(-1), actions)
    freq = np.bincount(actions, minlength=3) / len(actions)
    se = np.sqrt(prior * (1 - prior) / len(actions))
    assert np.all(np.abs(freq - prior) < 4 * se), (freq, prior)


def test_no_resampling_with_one_particle_and_info_shapes():
    model = exact_model(known_bandit(horizon=3))
    config = PlannerConfig(num_particles=1, num_nested=2, depth=3, ess_threshold=1.0)
    result = smc.plan(jax.random.key(0), model, model.init(jax.random.key(0)), config)
    assert result.info.ess.shape == (3,)
    np.testing.assert_allclose(result.info.ess, 1.0)
    assert not bool(result.info.resampled.any())
    config = PlannerConfig(num_particles=16, num_nested=2, depth=3, ess_threshold=1.0)
    result = smc.plan(jax.random.key(1), model, model.init(jax.random.key(0)), config)
    assert result.info.weights.shape == (3, 16)
    assert result.info.ancestors.shape == (3, 16)
    assert not bool(result.info.resampled[0])  # the first depth starts from uniform weights
    assert bool(result.info.resampled[1:].all())  # rewards differ -> ESS < K -> resample
    # the value estimate is a weighted average of returns in [0, 3]
    assert 0.0 <= float(result.value) <= 3.0
    assert float(result.root_value) == pytest.approx(3 * 0.8)


@pytest.mark.parametrize("update_belief", [True, False])
def test_belief_update_in_imagination_flag(update_belief):
    task = two_hypotheses_bandit()
    model = exact_model(task)
    config = PlannerConfig(num_particles=32, num_nested=2, depth=3,
                           belief_update_in_imagination=update_belief)
    root = model.init(jax.random.key(0))
    step = smc.build_kernel(model, config)

    @jax.jit
    def run(key):
        init_key, scan_key = jax.random.split(key)
        state = smc.init(init_key, model, root, config)
        state, _ = jax.lax.scan(lambda s, k: step(k, s), state, jax.random.split(scan_key, 3))
        return state

    state = run(jax.random.key(1))
    beliefs = np.asarray(state.particles.node.belief)
    np.testing.assert_array_equal(np.asarray(state.particles.node.t), 3)
    moved = np.abs(beliefs - 0.5).max(-1) > 1e-3
    if update_belief:
        assert moved.all()  # any reward from either arm moves a (0.5, 0.5) belief
    else:
        np.testing.assert_array_equal(beliefs, 0.5)


def test_compiled_once_per_configuration():
    model = exact_model(two_hypotheses_bandit())
    config = PlannerConfig(num_particles=8, num_nested=2, depth=2)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def policy(key, root):
        return smc.plan(key, model, root, config).policy

    root = model.init(jax.random.key(0))
    for i, belief in enumerate(([0.5, 0.5], [0.9, 0.1], [0.2, 0.8])):
        root = root._replace(belief=jnp.asarray(belief, jnp.float32),
                             t=jnp.asarray(i, jnp.int32))
        policy(jax.random.key(i), root).block_until_ready()
    chex.clear_trace_counter()


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"num_particles": 0}, "num_particles"),
        ({"num_nested": 0}, "num_nested"),
        ({"depth": 0}, "depth"),
        ({"depth": 2.0}, "depth"),
        ({"ess_threshold": 0.0}, "ess_threshold"),
        ({"ess_threshold": 1.5}, "ess_threshold"),
        ({"resampling": "bootstrap"}, "resampling"),
        ({"outcome": "mean"}, "outcome"),
        ({"action_selection": "greedy"}, "action_selection"),
        ({"alpha": 0.0}, "alpha"),
        ({"gamma": 1.5}, "gamma"),
    ],
)
def test_bad_configuration_is_a_clear_error(changes, match):
    with pytest.raises(ValueError, match=match):
        PlannerConfig(**changes)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="value"):
        exact_model(known_bandit(), value="optimal")
    with pytest.raises(ValueError, match="how"):
        smc.select_action(jax.random.key(0), jnp.ones(2) / 2, "greedy")


def test_configuration_is_hashable_and_validated_on_replace():
    config = PlannerConfig(num_particles=4)
    assert hash(config) == hash(PlannerConfig(num_particles=4))
    assert config.budget == 4 * 4 * 4
    with pytest.raises(ValueError, match="num_particles"):
        config.replace(num_particles=-1)


def test_exact_qmdp_value_on_an_enumerable_prior():
    """V(h) = sum_n b(omega_n) V*(omega_n): exact for a finite prior, the nested mean else."""
    table = jnp.asarray([3.0, 1.0])
    task = two_hypotheses_bandit()
    task = dataclasses.replace(
        task,
        belief_log_prob=lambda belief, params: jnp.log(belief[params["which"]]),
        optimal_value=lambda params, state, t: table[params["which"]] * (4 - t),
    )
    root = exact_model(task).init(jax.random.key(0))._replace(belief=jnp.array([0.25, 0.75]))
    omegas = {"which": jnp.array([0, 0, 0, 1])}
    exact = exact_model(task, value="qmdp").value(root, omegas)
    assert float(exact) == pytest.approx(4 * (0.25 * 3.0 + 0.75 * 1.0))
    nested = exact_model(task, value="qmdp_nested").value(root, omegas)
    assert float(nested) == pytest.approx(4 * (3 * 3.0 + 1.0) / 4)
    past_end = root._replace(t=jnp.asarray(4, jnp.int32))
    assert float(exact_model(task).value(past_end, omegas)) == 0.0


def test_argmax_breaks_ties_at_random_and_sample_follows_the_policy():
    keys = jax.random.split(jax.random.key(5), 4000)
    tied = jnp.array([0.4, 0.0, 0.4, 0.2])
    picks = np.asarray(jax.vmap(lambda k: smc.select_action(k, tied, "argmax"))(keys))
    assert set(np.unique(picks)) == {0, 2}
    assert abs((picks == 0).mean() - 0.5) < 4 * math.sqrt(0.25 / len(picks))
    draws = np.asarray(jax.vmap(lambda k: smc.select_action(k, tied, "sample"))(keys))
    freq = np.bincount(draws, minlength=4) / len(draws)
    se = np.sqrt(np.asarray(tied) * (1 - np.asarray(tied)) / len(draws))
    assert np.all(np.abs(freq - np.asarray(tied)) <= 4 * se)


def safe_risky_bandit() -> Task:
    """Arm 0 pays 0.5 surely, arm 1 pays 1 with probability 0.45 (else 0); known."""
    probs = jnp.asarray([[0.0, 1.0, 0.0], [0.55, 0.0, 0.45]], jnp.float32)

    def prior():
        return {"probs": numpyro.sample("probs", dist.Delta(probs, event_dim=2))}

    return Task(
        name="safe_risky_bandit", num_actions=2, obs_dim=1, episode_length=1, num_episodes=1,
        prior=prior, initial_state=lambda: jnp.zeros((), jnp.int32),
        transition=lambda state, action: state, observe=lambda state: jnp.zeros((1,), jnp.float32),
        reward_distribution=lambda params, state, action, next_state: dist.Categorical(
            probs=params["probs"][action]),
        reward_values=(0.0, 0.5, 1.0),
        belief_init=lambda: probs,
        belief_update=lambda belief, state, action, reward: belief,
        belief_sample=lambda key, belief: {"probs": belief},
        optimal_value=lambda params, state, t: jnp.where(t < 1, 0.5, 0.0),
    )


@pytest.mark.parametrize("outcome, best", [("sample", 1), ("enumerate", 0)])
def test_enumerated_outcomes_are_risk_neutral_towards_nature(outcome, best):
    """At alpha = 0.1 a sampled outcome tilts by E[exp(r / alpha)] and prefers the risky arm
    (mean 0.45); enumerating the outcomes tilts by exp(E[r] / alpha) and keeps the safe one
    (0.5): the planner no longer selects lucky imaginations as K grows."""
    config = PlannerConfig(num_particles=1024, num_nested=1, depth=1, alpha=0.1, outcome=outcome)
    policies, actions = plan_many(exact_model(safe_risky_bandit(), value="zero"), config, num_seeds=32)
    assert (actions == best).mean() >= 0.95, policies.mean(0)
    if outcome == "enumerate":  # the weight of an arm is exactly exp(mean / alpha)
        ratio = policies[:, 0] / policies[:, 1] * math.exp((0.45 - 0.5) / 0.1)
        assert np.all(ratio > 0.7) and np.all(ratio < 1.4)  # n_0 / n_1 of 1024 uniform draws


def test_enumerated_outcomes_need_categorical_rewards():
    from varibased.models import registry

    task = registry.make("function_optimization")
    config = PlannerConfig(num_particles=4, num_nested=1, depth=1, outcome="enumerate")
    model = exact_model(task)
    with pytest.raises(ValueError, match="enumerate"):
        smc.plan(jax.random.key(0), model, model.init(jax.random.key(0)), config)
