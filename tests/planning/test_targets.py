"""The planning step's options (issue 15): stratified root actions, the per-action ``q``
target and the adaptive temperature, checked against exact answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.planning import smc, targets
from varibased.planning.config import PlannerConfig
from varibased.planning.model import PlanningModel, exact_model

from .test_smc import known_bandit


def test_q_estimates_compare_actions_at_one_depth():
    # depth 1: all three actions present; depth 2: action 2 resampled away
    first = jnp.array([[0, 0, 1, 2], [0, 1, 1, 1]])
    est = jnp.array([[1.0, 3.0, 5.0, 7.0], [10.0, 20.0, 30.0, 40.0]])
    q = targets.q_estimates(first, est, 4, jnp.float32(-1.0))
    # action 2 is missing at depth 2, so every action is scored at depth 1; action 3 untried
    np.testing.assert_allclose(q, [2.0, 5.0, 7.0, -1.0])
    q = targets.q_estimates(jnp.array([[0, 1], [1, 0]]), jnp.array([[1.0, 2.0], [5.0, 9.0]]), 2,
                            jnp.float32(0.0))
    np.testing.assert_allclose(q, [9.0, 5.0])  # both present at depth 2: scored there


@pytest.mark.parametrize("epsilon", [0.05, 0.3, 1.0])
def test_adaptive_temperature_meets_the_kl_bound_tightly(epsilon):
    prior = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    q = jnp.array([3.0, 1.0, 0.0, -2.0])
    eta = targets.adaptive_temperature(prior, q, epsilon)
    kl = targets.kl_divergence(targets.tilted_policy(prior, q, eta), prior)
    assert float(kl) <= epsilon * (1 + 1e-4)
    # the smallest such eta: a slightly smaller one breaks the bound
    kl_smaller = targets.kl_divergence(targets.tilted_policy(prior, q, 0.98 * eta), prior)
    assert float(kl_smaller) > epsilon


def test_adaptive_temperature_when_even_greedy_is_within_the_bound():
    prior = jnp.log(jnp.array([0.9, 0.1]))
    eta = targets.adaptive_temperature(prior, jnp.array([1.0, 0.0]), epsilon=1.0)  # KL(greedy) = 0.105
    assert float(eta) == pytest.approx(targets.ETA_RANGE[0], rel=1e-5)


def _biased_prior(model: PlanningModel, probs) -> PlanningModel:
    logits = jnp.log(jnp.asarray(probs, jnp.float32))
    return model._replace(policy_logits=lambda node: logits)


@pytest.mark.parametrize("num_particles", [2, 5, 15])
def test_stratified_roots_cover_every_action_and_keep_the_prior(num_particles):
    """With rewards that do not depend on the action and V = 0, the weighted first actions
    must follow the policy prior exactly: the weight's pi(a) / q(a) corrects the proposal."""
    task = known_bandit(means=(0.5, 0.5, 0.5, 0.5, 0.5))
    prior = np.array([0.05, 0.1, 0.15, 0.3, 0.4])
    model = _biased_prior(exact_model(task, value="zero"), prior)
    config = PlannerConfig(num_particles=num_particles, num_nested=1, depth=1, alpha=1.0,
                           outcome="expected", root_actions="stratified")
    root = model.init(jax.random.key(0))
    result = jax.jit(lambda k: smc.plan(k, model, root, config))(jax.random.key(1))
    first = np.asarray(result.info.actions[0])
    if num_particles >= 5:
        assert set(first.tolist()) == set(range(5))
        np.testing.assert_allclose(result.policy, prior, rtol=1e-5)
    else:
        assert len(set(first.tolist())) == num_particles  # K distinct actions


def test_q_target_prefers_the_better_arm_and_legacy_options_unchanged():
    task = known_bandit(means=(0.2, 0.8))
    model = exact_model(task)
    root = model.init(jax.random.key(0))
    config = PlannerConfig(num_particles=16, num_nested=2, depth=1, alpha=0.5, outcome="enumerate",
                           root_actions="stratified", target="q", temperature="adaptive", kl_target=0.2)
    result = smc.plan(jax.random.key(2), model, root, config)
    assert float(result.policy[1]) > float(result.policy[0])
    prior = jax.nn.log_softmax(model.policy_logits(root))
    assert float(targets.kl_divergence(result.policy, prior)) <= 0.2 + 1e-4
    # the default options: the weighted marginal of the particles' first actions
    legacy = smc.plan(jax.random.key(2), model, root, PlannerConfig(num_particles=16, num_nested=2,
                                                                   depth=1, alpha=0.5))
    marginal = np.bincount(np.asarray(legacy.info.actions[0]), weights=np.asarray(legacy.info.weights[0]),
                           minlength=2)
    np.testing.assert_allclose(legacy.policy, marginal, rtol=1e-5)
    with pytest.raises(ValueError, match="root_actions"):
        PlannerConfig(root_actions="all")
    with pytest.raises(ValueError, match="kl_target"):
        PlannerConfig(kl_target=0.0)
