"""GP-UCB, expected improvement and GP Thompson sampling on function optimization."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.models import bandit, rollout
from varibased.models import function_optimization as fo
from varibased.models import task as task_lib
from varibased.models.task import TaskError
from varibased.planning import gp_agents, reference_agents


@pytest.fixture(scope="module")
def task():
    return fo.make_function_optimization()


def _belief(task, actions, rewards):
    update = jax.jit(task.belief_update)
    belief = task.belief_init()
    for a, r in zip(actions, rewards, strict=True):
        belief = update(belief, task.initial_state(), a, r)
    return belief


def test_srinivas_beta():
    expected = 2 * math.log(32 * 9 * math.pi**2 / (6 * 0.1))
    assert float(gp_agents.srinivas_beta(3, 32)) == pytest.approx(expected, rel=1e-6)


def test_expected_improvement_equals_quadrature():
    from scipy.stats import norm

    grid = np.linspace(-12, 12, 200_001)
    for mean, std, incumbent in [(0.3, 0.5, 0.0), (-1.0, 0.2, 0.5), (2.0, 1.5, 2.5)]:
        expected = np.trapezoid(np.maximum(grid - incumbent, 0) * norm(mean, std).pdf(grid), grid)
        got = gp_agents.expected_improvement(jnp.float32(mean), jnp.float32(std), jnp.float32(incumbent))
        assert float(got) == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_agents_act_by_their_scores(task):
    """Each agent's action is the numpy argmax of its acquisition on the exact posterior."""
    from scipy.stats import norm

    actions, rewards = [3, 3, 17, 25, 9], [0.4, 0.6, -1.2, 1.1, 0.2]
    belief = _belief(task, actions, rewards)
    mean, std = (np.asarray(x, np.float64) for x in fo.posterior_marginals(belief))
    env_state = task_lib.EnvState(task.initial_state(), jnp.asarray(5, jnp.int32))
    obs = task.observe(task.initial_state())
    state = gp_agents.GPAgentState(belief)
    key = jax.random.key(0)

    beta_6 = 2 * math.log(32 * 36 * math.pi**2 / 0.6)
    ucb = gp_agents.gp_ucb_agent(task)
    assert int(ucb.act(key, state, env_state, obs)[0]) == int(np.argmax(mean + math.sqrt(beta_6) * std))
    fixed = gp_agents.gp_ucb_agent(task, beta=2.0)
    assert int(fixed.act(key, state, env_state, obs)[0]) == int(np.argmax(mean + math.sqrt(2.0) * std))
    greedy = gp_agents.gp_ucb_agent(task, beta=0.0)
    assert int(greedy.act(key, state, env_state, obs)[0]) == int(np.argmax(mean))

    incumbent = mean[actions].max()
    z = (mean - incumbent) / std
    ei = (mean - incumbent) * norm.cdf(z) + std * norm.pdf(z)
    agent = gp_agents.expected_improvement_agent(task)
    assert int(agent.act(key, state, env_state, obs)[0]) == int(np.argmax(ei))

    thompson = gp_agents.gp_thompson_agent(task)
    score_key, _ = jax.random.split(key)
    draw = fo.posterior_sample(score_key, belief)
    assert int(thompson.act(key, state, env_state, obs)[0]) == int(np.argmax(draw))


def test_agents_update_the_exact_belief(task):
    agent = gp_agents.expected_improvement_agent(task)
    params = task_lib.sample_task(jax.random.key(1), task)
    trajectory = jax.jit(lambda k: rollout.run_trial(k, task, agent, params))(jax.random.key(2))
    actions = np.asarray(trajectory.transitions.action)
    rewards = np.asarray(trajectory.transitions.reward)
    belief = _belief(task, actions, rewards)
    assert trajectory.transitions.action.shape == (16,)
    np.testing.assert_array_equal(belief.counts, np.bincount(actions, minlength=32))


def test_gp_agents_beat_random_jitted_and_vmapped(task):
    num_trials = 100  # fixed-beta GP-UCB runs vmapped in test_best_fixed_beta_sweep
    key = jax.random.key(3)  # the same tasks and keys for every agent
    agents = {
        "random": reference_agents.random_agent(task),
        "gp_ucb": gp_agents.gp_ucb_agent(task),
        "expected_improvement": gp_agents.expected_improvement_agent(task),
        "gp_thompson": gp_agents.gp_thompson_agent(task),
    }
    stats = {name: rollout.evaluate(key, task, agent, num_trials) for name, agent in agents.items()}
    random = stats.pop("random")
    for name, s in stats.items():
        gap = s.mean - random.mean
        assert gap > 5 * math.hypot(s.se, random.se), (name, s, random)


def test_best_fixed_beta_sweep(task):
    best, stats = gp_agents.best_fixed_beta(task, jax.random.key(4), betas=(0.5, 8.0), num_trials=16)
    assert set(stats) == {0.5, 8.0}
    assert best == max(stats, key=lambda b: stats[b].mean)
    assert all(np.isfinite(s.mean) and s.se > 0 for s in stats.values())


def test_bad_inputs(task):
    with pytest.raises(TaskError, match="GPBelief"):
        gp_agents.gp_ucb_agent(bandit.make_bernoulli_bandit())
    with pytest.raises(TaskError, match="belief_init"):
        gp_agents.gp_thompson_agent(fo.make_function_optimization_lengthscale())
    with pytest.raises(ValueError, match="beta"):
        gp_agents.gp_ucb_agent(task, beta=-1.0)
    with pytest.raises(ValueError, match="delta"):
        gp_agents.gp_ucb_agent(task, delta=1.5)
    with pytest.raises(ValueError, match="betas"):
        gp_agents.best_fixed_beta(task, jax.random.key(0), betas=())
    with pytest.raises(ValueError, match="num_trials"):
        gp_agents.best_fixed_beta(task, jax.random.key(0), num_trials=1)
