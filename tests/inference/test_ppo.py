"""PPO's pieces against hand-computed values and float64 numpy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference import ppo


def _gae_reference(rewards, values, dones, last_value, gamma, lam):
    """The textbook backward loop in float64."""
    rewards, values, dones = (np.asarray(x, np.float64) for x in (rewards, values, dones))
    T = len(rewards)
    advantages = np.zeros(T)
    next_value, next_advantage = float(last_value), 0.0
    for t in reversed(range(T)):
        keep = 1.0 - dones[t]
        delta = rewards[t] + gamma * keep * next_value - values[t]
        next_advantage = delta + gamma * lam * keep * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


def test_gae_hand_computed():
    # delta = [1 + .5*1 - .5, 0 - 1 (done), 2 + .5*3 - 0] = [1, -1, 3.5]
    # A_2 = 3.5; A_1 = -1 (done cuts the trace); A_0 = 1 + .25 * (-1) = .75
    advantages, returns = ppo.gae(
        jnp.array([1.0, 0.0, 2.0]), jnp.array([0.5, 1.0, 0.0]), jnp.array([0, 1, 0]),
        jnp.array(3.0), gamma=0.5, gae_lambda=0.5,
    )
    np.testing.assert_allclose(advantages, [0.75, -1.0, 3.5], rtol=1e-6)
    np.testing.assert_allclose(returns, [1.25, 0.0, 3.5], rtol=1e-6)


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0)])
def test_gae_matches_float64_reference(gamma, lam):
    rng = np.random.default_rng(0)
    T = 23
    rewards = rng.normal(size=T).astype(np.float32)
    values = rng.normal(size=T).astype(np.float32)
    dones = (rng.uniform(size=T) < 0.2).astype(np.int32)
    last_value = np.float32(rng.normal())
    advantages, returns = jax.jit(lambda *a: ppo.gae(*a, gamma=gamma, gae_lambda=lam))(
        rewards, values, dones, last_value
    )
    ref_adv, ref_ret = _gae_reference(rewards, values, dones, last_value, gamma, lam)
    np.testing.assert_allclose(advantages, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, ref_ret, rtol=1e-5, atol=1e-5)


def test_gae_lambda_one_is_discounted_return_minus_value():
    rewards = jnp.array([1.0, 2.0, 3.0])
    values = jnp.array([0.1, 0.2, 0.3])
    _, returns = ppo.gae(rewards, values, jnp.array([0, 0, 1]), jnp.array(9.0), gamma=0.5, gae_lambda=1.0)
    np.testing.assert_allclose(returns, [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0], rtol=1e-6)


def test_policy_loss_hand_computed():
    # ratios 1.5 and 0.5, advantages 1 and -2, eps 0.2:
    # min(1.5, 1.2) = 1.2; min(-1.0, -1.6) = -1.6; loss = -mean = 0.2
    old = jnp.log(jnp.array([0.2, 0.4]))
    new = old + jnp.log(jnp.array([1.5, 0.5]))
    loss = ppo.policy_loss(new, old, jnp.array([1.0, -2.0]), 0.2)
    np.testing.assert_allclose(loss, 0.2, rtol=1e-6)


def test_value_loss_hand_computed():
    # step 0: max((1-2)^2, (0.7-2)^2) = 1.69; step 1: max((0-.4)^2, (.3-.4)^2) = .16
    loss = ppo.value_loss(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]), jnp.array([2.0, 0.4]), 0.2)
    np.testing.assert_allclose(loss, 0.5 * (1.69 + 0.16) / 2, rtol=1e-6)


def test_entropy_and_log_prob_hand_computed():
    logits = jnp.array([[0.0, math.log(3.0)], [5.0, 5.0]])
    np.testing.assert_allclose(
        ppo.entropy(logits), [-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), math.log(2.0)], rtol=1e-6
    )
    np.testing.assert_allclose(ppo.log_prob(logits, jnp.array([1, 0])), [math.log(0.75), math.log(0.5)],
                               rtol=1e-6)


def test_ppo_loss_total_and_info():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(4, 5, 3)), jnp.float32)
    actions = jnp.asarray(rng.integers(0, 3, size=(4, 5)))
    old_log_prob = ppo.log_prob(logits, actions)  # on-policy: ratio 1
    values = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    advantages = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    returns = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    loss, info = ppo.ppo_loss(logits, values, actions, old_log_prob, values, advantages, returns,
                              clip_eps=0.2, value_coef=0.5, entropy_coef=0.01)
    # at ratio 1 the surrogate is -mean(A), the value loss 0.5 mean (V - R)^2
    adv64, val64, ret64 = (np.asarray(x, np.float64) for x in (advantages, values, returns))
    np.testing.assert_allclose(info.policy_loss, -adv64.mean(), atol=1e-6)
    np.testing.assert_allclose(info.value_loss, 0.5 * np.mean((val64 - ret64) ** 2), rtol=1e-5)
    total = info.policy_loss + 0.5 * info.value_loss - 0.01 * info.entropy
    np.testing.assert_allclose(loss, total, rtol=1e-6)
    assert float(info.approx_kl) == pytest.approx(0.0, abs=1e-7)
    assert float(info.clip_fraction) == 0.0


def test_normalize():
    x = jnp.array([1.0, 2.0, 3.0, 6.0])
    y = np.asarray(ppo.normalize(x), np.float64)
    assert y.mean() == pytest.approx(0.0, abs=1e-6)
    assert y.std() == pytest.approx(1.0, abs=1e-6)
