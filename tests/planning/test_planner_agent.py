"""The planner in the loop: whole trials, targets and Info, against known answers."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from tests.planning.test_smc import two_hypotheses_bandit
from varibased.planning.config import PlannerConfig
from varibased.planning.model import exact_model
from varibased.planning.planner_agent import PlannerInfo, run_planner_trials

TABLE = ((0.2, 0.8), (0.8, 0.2))  # arm means under hypothesis 0 / 1


def bayes_optimal_value(horizon: int) -> float:
    """Exact Bayes-optimal expected return by recursion over (P(hypothesis 0), steps left)."""
    table = np.asarray(TABLE)

    @functools.cache
    def value(p0: float, steps: int) -> float:
        if steps == 0:
            return 0.0
        best = -math.inf
        for arm in range(2):
            p_hit = p0 * table[0, arm] + (1 - p0) * table[1, arm]
            hit = p0 * table[0, arm] / p_hit
            miss = p0 * (1 - table[0, arm]) / (1 - p_hit)
            total = p_hit * (1 + value(round(hit, 12), steps - 1)) + (1 - p_hit) * value(
                round(miss, 12), steps - 1
            )
            best = max(best, total)
        return best

    return value(0.5, horizon)


def test_trial_shapes_targets_and_info():
    horizon = 5
    task = two_hypotheses_bandit(horizon)
    config = PlannerConfig(num_particles=16, num_nested=2, depth=3)
    trajectory = run_planner_trials(jax.random.key(0), task, exact_model(task), config, 8,
                                    detailed_info=True)
    info = trajectory.info
    assert isinstance(info, PlannerInfo)
    assert trajectory.transitions.action.shape == (8, horizon)
    assert info.policy.shape == (8, horizon, 2)
    np.testing.assert_allclose(info.policy.sum(-1), 1.0, atol=1e-5)
    assert info.ess.shape == (8, horizon, 3)
    assert info.resampled.shape == (8, horizon, 3)
    assert info.smc.weights.shape == (8, horizon, 3, 16)
    # the agent's node follows the real trial step: V(h_t) = 0.8 (horizon - t) exactly
    expected_root = 0.8 * (horizon - np.arange(horizon))
    np.testing.assert_allclose(info.root_value, np.broadcast_to(expected_root, (8, horizon)),
                               rtol=1e-6)
    # argmax acting: the real action is a mode of the improved policy
    chosen = np.take_along_axis(np.asarray(info.policy),
                                np.asarray(trajectory.transitions.action)[..., None], -1)[..., 0]
    np.testing.assert_allclose(chosen, np.asarray(info.policy).max(-1), rtol=1e-5)


def test_planner_is_near_bayes_optimal_on_two_hypotheses():
    horizon = 4
    task = two_hypotheses_bandit(horizon)
    config = PlannerConfig(num_particles=64, num_nested=4, depth=2, alpha=0.1)
    trajectory = run_planner_trials(jax.random.key(1), task, exact_model(task), config, 2048)
    returns = np.asarray(trajectory.transitions.reward, np.float64).sum(-1)
    mean, se = returns.mean(), returns.std(ddof=1) / math.sqrt(len(returns))
    optimum = bayes_optimal_value(horizon)  # 2.66 to the rounding of the recursion
    assert mean <= optimum + 3 * se, (mean, optimum, se)  # above Bayes-optimal is a bug
    assert mean >= optimum - 3 * se - 0.02, (mean, optimum, se)


def test_sampled_actions_follow_the_tilted_target():
    """D = 1, QMDP value constant across arms: the improved policy is ∝ E[exp(r / alpha)]."""
    horizon = 4
    table = jnp.asarray([[0.2, 0.8]], jnp.float32)
    task = two_hypotheses_bandit(horizon)
    # a known task (hypothesis 0 with probability 1): the belief never moves
    base = exact_model(task)
    model = base._replace(init=lambda key: base.init(key)._replace(
        belief=jnp.array([1.0, 0.0], jnp.float32)))
    config = PlannerConfig(num_particles=1024, num_nested=1, depth=1, alpha=1.0,
                           action_selection="sample")
    params = {"which": jnp.zeros((512,), jnp.int32)}
    trajectory = run_planner_trials(jax.random.key(2), task, model, config, 512, params)
    mass = (1 - table[0]) + table[0] * math.e
    target = float(mass[1] / mass.sum())  # 0.6386
    freq = float((trajectory.transitions.action == 1).mean())
    se = math.sqrt(target * (1 - target) / trajectory.transitions.action.size)
    assert abs(freq - target) < 4 * se + 0.01, (freq, target)
    np.testing.assert_allclose(np.asarray(trajectory.info.policy)[..., 1].mean(), target,
                               atol=0.01)


def test_run_planner_trials_compiles_once():
    horizon = 3
    task = two_hypotheses_bandit(horizon)
    traces = []
    model = exact_model(task)
    logits = model.policy_logits

    def counting_logits(node):
        traces.append(1)
        return logits(node)

    model = model._replace(policy_logits=counting_logits)
    config = PlannerConfig(num_particles=4, num_nested=2, depth=2)
    run_planner_trials(jax.random.key(0), task, model, config, 4).transitions.reward.block_until_ready()
    first = len(traces)
    assert first > 0
    for seed in (1, 2):
        out = run_planner_trials(jax.random.key(seed), task, model, config, 4)
        out.transitions.reward.block_until_ready()
    assert len(traces) == first
