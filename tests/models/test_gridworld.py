"""GridNavi: dynamics, exact posterior, known-goal optimum and the exact Bayes-optimal value."""

from __future__ import annotations

import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer.util import log_density

from varibased.models import gridworld_dp, registry, rollout
from varibased.models import task as task_lib
from varibased.models.gridworld import cell_index, cell_position, make_gridworld
from varibased.models.task import EnvState, TaskError
from varibased.planning import reference_agents

NOOP, UP, RIGHT, DOWN, LEFT = range(5)


@functools.cache
def _task(**kwargs):
    return make_gridworld(**kwargs)


def _run(task, goal, actions):
    """Env rollout of a fixed action sequence: per step (state before, reward, done, obs)."""

    def body(env_state, action):
        nxt, obs, reward, done = task_lib.step(
            jax.random.key(0), env_state, action, {"goal": goal}, task
        )
        return nxt, (env_state.state, reward, done, obs)

    start, _ = task_lib.reset(jax.random.key(0), {"goal": goal}, task)
    return jax.lax.scan(body, start, jnp.asarray(actions, jnp.int32))[1]


def _position(x, y):
    return jnp.array([x, y], jnp.int32)


# --------------------------------------------------------------------------------------
# Construction and registry
# --------------------------------------------------------------------------------------


def test_registry_builds_default_and_small_instances():
    task = registry.make("gridworld")
    assert task.name == "gridworld"
    assert (task.num_actions, task.obs_dim, task.episode_length, task.num_episodes) == (5, 27, 15, 4)
    assert task.trial_length == 60
    assert task.reward_values == (-0.1, 1.0)
    assert task.thompson_resample == "episode"
    prior = np.asarray(task.belief_init())
    excluded = [cell_index(_position(x, y), 5) for x in (0, 1) for y in (0, 1)]
    assert prior.shape == (25,) and np.isclose(prior.sum(), 1.0)
    assert np.all(prior[np.asarray(excluded)] == 0)
    assert np.allclose(np.delete(prior, np.asarray(excluded)), 1 / 21)
    small = registry.make("gridworld", size=3, episode_length=4, num_episodes=2, excluded=1)
    assert small.trial_length == 8 and small.belief_init().shape == (9,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 2}, "too small"),
        ({"size": 1, "excluded": 1}, "too small"),
        ({"size": 0}, "size must be positive"),
        ({"episode_length": 0}, "episode_length must be positive"),
        ({"num_episodes": -1}, "num_episodes must be positive"),
        ({"excluded": 0}, "excluded must be >= 1"),
        ({"size": 5.0}, "size must be an int"),
        ({"episode_length": True}, "episode_length must be an int"),
    ],
)
def test_bad_sizes_raise_clear_errors(kwargs, message):
    with pytest.raises(TaskError, match=message):
        make_gridworld(**kwargs)
    with pytest.raises(TaskError, match=message):
        registry.make("gridworld", **kwargs)


def test_prior_is_uniform_over_candidates():
    task = _task()
    goals = jax.vmap(lambda k: task_lib.sample_task(k, task)["goal"])(
        jax.random.split(jax.random.key(3), 4200)
    )
    assert goals.dtype == jnp.int32
    counts = np.bincount(np.asarray(goals), minlength=25)
    prior = np.asarray(task.belief_init())
    assert np.all(counts[prior == 0] == 0)
    # 200 expected per cell: a chi-square with 20 dof exceeds 50 with probability < 2e-4
    expected = 4200 * prior[prior > 0]
    assert ((counts[prior > 0] - expected) ** 2 / expected).sum() < 50


# --------------------------------------------------------------------------------------
# Dynamics
# --------------------------------------------------------------------------------------


def test_cell_index_convention():
    assert int(cell_index(_position(2, 1), 5)) == 7
    assert np.array_equal(cell_position(7, 5), [2, 1])
    task = _task()
    # "up" increases y, "right" increases x
    assert np.array_equal(task.transition(_position(2, 2), UP), [2, 3])
    assert np.array_equal(task.transition(_position(2, 2), RIGHT), [3, 2])
    assert np.array_equal(task.transition(_position(2, 2), DOWN), [2, 1])
    assert np.array_equal(task.transition(_position(2, 2), LEFT), [1, 2])
    assert np.array_equal(task.transition(_position(2, 2), NOOP), [2, 2])
    obs = task.observe(_position(3, 1))
    assert np.array_equal(obs[:2], np.array([3.0, 1.0], np.float32))
    assert obs[2:].sum() == 1 and obs[2 + 1 * 5 + 3] == 1  # one-hot of cell y * size + x


def test_walls_clip():
    task = _task()
    for corner, blocked in (((0, 0), (DOWN, LEFT)), ((4, 4), (UP, RIGHT)),
                            ((0, 4), (UP, LEFT)), ((4, 0), (DOWN, RIGHT))):
        for action in blocked:
            assert np.array_equal(task.transition(_position(*corner), action), corner)


def test_rewards_resets_and_goal_kept_across_episodes():
    task = _task()
    goal = cell_index(_position(2, 1), 5)
    # episode: bump the walls, walk to (2, 1) and stay two steps, step off, then noops
    episode = [LEFT, DOWN, NOOP, RIGHT, RIGHT, UP, NOOP, UP] + [NOOP] * 7
    before, rewards, done, obs = _run(task, goal, episode * 4)
    expected_rewards = [-0.1] * 5 + [1.0, 1.0] + [-0.1] * 8
    assert np.allclose(rewards, np.tile(expected_rewards, 4))
    assert np.array_equal(np.nonzero(np.asarray(done))[0] + 1, [15, 30, 45, 60])
    assert done.dtype == jnp.int32
    # after the 15th step the agent is back at the start; the goal (reward) is kept
    assert np.array_equal(obs[14][:2], [0.0, 0.0]) and np.array_equal(before[15], [0, 0])
    assert np.array_equal(before[:9], [[0, 0]] * 4 + [[1, 0], [2, 0], [2, 1], [2, 1], [2, 2]])
    assert np.array_equal(obs[13][:2], [2.0, 2.0])


def test_env_is_jittable_vmappable_and_deterministic():
    task = _task()
    agent = reference_agents.posterior_sampling_agent(task)
    run = jax.jit(lambda k: rollout.run_trials(k, task, agent, 8).transitions.reward)
    first, again = run(jax.random.key(5)), run(jax.random.key(5))
    assert first.shape == (8, 60)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, run(jax.random.key(6)))
    values = np.asarray(task.reward_values, np.float32)
    assert np.all(np.isin(np.asarray(first), values))


# --------------------------------------------------------------------------------------
# Env and NumPyro model agree; the exact posterior equals enumeration
# --------------------------------------------------------------------------------------


def _histories(task, num_histories, rng_seed, length=None):
    """Random-action histories; half of them with the goal on a cell visited by ``length``."""
    rng = np.random.default_rng(rng_seed)
    prior = np.asarray(task.belief_init())
    result = []
    for i in range(num_histories):
        actions = rng.integers(0, 5, task.trial_length)
        goal = rng.choice(task.belief_init().shape[0], p=prior)
        if i % 2:
            _, moved = task_lib.trajectory_states(task, jnp.asarray(actions[:length]))
            visited = [int(c) for c in cell_index(moved, 5) if prior[int(c)] > 0]
            goal = visited[len(visited) // 2]
        result.append((jnp.asarray(actions, jnp.int32), jnp.int32(goal)))
    return result


def _exact_belief(task, actions, rewards):
    before, _ = task_lib.trajectory_states(task, actions)

    def body(belief, inputs):
        state, action, reward = inputs
        return task.belief_update(belief, state, action, reward), None

    return jax.lax.scan(body, task.belief_init(), (before, actions, rewards))[0]


@pytest.mark.parametrize("length", [20, 60])
def test_exact_posterior_equals_enumeration_and_numpyro_model(length):
    task = _task()
    cells = jnp.arange(25, dtype=jnp.int32)
    prior = np.asarray(task.belief_init())

    @jax.jit
    def check(actions, goal):
        _, rewards, _, _ = _run(task, goal, actions)
        belief = _exact_belief(task, actions, rewards)
        # brute force: the goals under which the env produces exactly the same rewards
        same = jax.vmap(lambda g: jnp.all(_run(task, g, actions)[1] == rewards))(cells)
        densities = jax.vmap(
            lambda g: log_density(task_lib.trial_model, (task, actions, rewards), {},
                                  {"goal": g})[0]
        )(cells)
        return rewards, belief, same, densities

    found_any = False
    for actions, goal in _histories(task, 6, rng_seed=length, length=length):
        rewards, belief, same, densities = check(actions[:length], goal)
        consistent = np.asarray(same) & (prior > 0)
        assert consistent[int(goal)]
        expected = consistent / consistent.sum()
        assert np.allclose(belief, expected, atol=1e-6)
        # the NumPyro model: finite log-likelihood exactly on the support, and Bayes' rule
        assert np.array_equal(np.isfinite(densities), expected > 0)
        assert np.allclose(jax.nn.softmax(densities), expected, atol=1e-6)
        found = bool(np.any(np.asarray(rewards) > 0))
        found_any |= found
        if found:
            assert consistent.sum() == 1
        # belief_sample stays in the support, belief_log_prob is -inf outside it
        draws = jax.vmap(lambda k, b=belief: task.belief_sample(k, b)["goal"])(
            jax.random.split(jax.random.key(0), 64)
        )
        assert np.all(expected[np.asarray(draws)] > 0)
        log_probs = jax.vmap(lambda g, b=belief: task.belief_log_prob(b, {"goal": g}))(cells)
        assert np.allclose(np.exp(log_probs), expected, atol=1e-6)
    assert found_any


def test_env_rewards_have_log_prob_zero_under_the_model():
    task = _task()

    @jax.jit
    def log_likelihood(actions, rewards, goal):
        model = numpyro.handlers.condition(
            numpyro.handlers.seed(task_lib.trial_model, jax.random.key(0)), {"goal": goal}
        )
        site = numpyro.handlers.trace(model).get_trace(task, actions, rewards)["reward"]
        return site["fn"].log_prob(site["value"]).sum()

    for actions, goal in _histories(task, 4, rng_seed=1):
        _, rewards, _, _ = _run(task, goal, actions)
        assert float(log_likelihood(actions, rewards, goal)) == 0.0
        # a reward the env would not give is impossible
        flipped = rewards.at[7].set(jnp.where(rewards[7] < 0, 1.0, -0.1))
        assert float(log_likelihood(actions, flipped, goal)) == -np.inf


def test_impossible_history_gives_an_empty_belief():
    task = _task()
    belief = task.belief_update(task.belief_init(), _position(0, 0), RIGHT, jnp.float32(1.0))
    assert np.all(np.asarray(belief) == 0)


# --------------------------------------------------------------------------------------
# Known goal: optimal value and oracle
# --------------------------------------------------------------------------------------


def _known_goal_values(task, size, goal):
    """Backward induction over (cell, trial step) for a known goal: float64 [T + 1, cells]."""
    num_cells = size * size
    table = np.asarray(jax.vmap(lambda c: jax.vmap(
        lambda a: cell_index(task.transition(cell_position(c, size), a), size))(jnp.arange(5)))(
        jnp.arange(num_cells)))
    values = np.zeros((task.trial_length + 1, num_cells))
    for t in range(task.trial_length - 1, -1, -1):
        reset = (t + 1) % task.episode_length == 0
        rewards = np.where(table == goal, 1.0, -0.1)
        after = values[t + 1][0] if reset else values[t + 1][table]
        values[t] = (rewards + after).max(axis=1)
    return values


def test_optimal_value_equals_backward_induction():
    size = 4
    task = _task(size=size, episode_length=5, num_episodes=3, excluded=1)
    steps = jnp.arange(task.trial_length + 1)
    cells = jnp.arange(size * size)
    values = jax.jit(lambda g: jax.vmap(lambda t: jax.vmap(
        lambda c: task.optimal_value({"goal": g}, cell_position(c, size), t))(cells))(steps))
    for goal in (1, 5, 10, 15):
        expected = _known_goal_values(task, size, goal)
        assert np.allclose(values(jnp.int32(goal)), expected, atol=1e-4)


def test_oracle_takes_shortest_paths_and_breaks_ties_at_random():
    task = _task()
    goal = {"goal": cell_index(_position(2, 2), 5)}
    keys = jax.random.split(jax.random.key(0), 200)
    actions = jax.vmap(lambda k: task.oracle_action(k, goal, _position(0, 0), 0))(keys)
    assert set(np.unique(actions).tolist()) == {UP, RIGHT}
    actions = jax.vmap(lambda k: task.oracle_action(k, goal, _position(4, 2), 0))(keys)
    assert set(np.unique(actions).tolist()) == {LEFT}
    actions = jax.vmap(lambda k: task.oracle_action(k, goal, _position(2, 2), 3))(keys)
    assert set(np.unique(actions).tolist()) == {NOOP}


def test_oracle_return_equals_optimal_value_for_every_goal():
    task = _task()
    goals = jnp.arange(25, dtype=jnp.int32)
    agent = reference_agents.oracle_agent(task)
    rewards = jax.jit(lambda k: rollout.run_trials(
        k, task, agent, 25, {"goal": goals}).transitions.reward)(jax.random.key(0))
    values = jax.vmap(lambda g: task.optimal_value({"goal": g}, _position(0, 0), 0))(goals)
    assert np.allclose(np.asarray(rewards).sum(1), values, atol=1e-4)


# --------------------------------------------------------------------------------------
# The exact Bayes-optimal value
# --------------------------------------------------------------------------------------

_REWARD = (Fraction(-1, 10), Fraction(1))


def _expectimax(task, size):
    """Bayes-optimal (total, per-episode) return by expectimax over every action and reward.

    Uses only the env (``models.task.step``) and the prior: the belief at a node is the set
    of goals consistent with the history (the prior is uniform over its support).
    """
    num_cells = size * size
    cells = jnp.arange(num_cells, dtype=jnp.int32)

    def outcome(goal, cell, action):
        env_state = EnvState(cell_position(cell, size), jnp.int32(0))
        _, _, reward, _ = task_lib.step(jax.random.key(0), env_state, action, {"goal": goal},
                                          task)
        return cell_index(task.transition(env_state.state, action), size), \
            task_lib.reward_index(task, reward)

    moved, reward = jax.vmap(lambda g: jax.vmap(lambda c: jax.vmap(
        lambda a: outcome(g, c, a))(jnp.arange(5)))(cells))(cells)
    moved, reward = np.asarray(moved[0]), np.asarray(reward)
    prior = np.asarray(task.belief_init())
    length, episodes = task.episode_length, task.num_episodes
    zero = (Fraction(0),) * (episodes + 1)

    @functools.cache
    def value(cell, t, goals):
        if t == task.trial_length:
            return zero
        start = 0
        best = None
        for action in range(5):
            nxt = start if (t + 1) % length == 0 else int(moved[cell, action])
            q = [Fraction(0)] * (episodes + 1)
            for index in (0, 1):
                kept = frozenset(g for g in goals if reward[g, cell, action] == index)
                if not kept:
                    continue
                p = Fraction(len(kept), len(goals))
                rest = value(nxt, t + 1, kept)
                q[0] += p * (_REWARD[index] + rest[0])
                for k in range(episodes):
                    q[1 + k] += p * ((_REWARD[index] if k == t // length else 0) + rest[1 + k])
            if best is None or tuple(q) > best:
                best = tuple(q)
        return best

    result = value(0, 0, frozenset(np.nonzero(prior)[0].tolist()))
    return result[0], result[1:]


@pytest.mark.parametrize(
    "size, episode_length, num_episodes, excluded",
    [(3, 3, 2, 1), (3, 3, 3, 2), (3, 5, 3, 1), (4, 3, 2, 1), (4, 5, 2, 2)],
)
def test_bayes_optimal_dp_equals_expectimax_over_all_policies(
    size, episode_length, num_episodes, excluded
):
    task = _task(size=size, episode_length=episode_length, num_episodes=num_episodes,
                 excluded=excluded)
    mean, per_episode = _expectimax(task, size)
    exact = gridworld_dp.bayes_optimal_value_exact(size, episode_length, num_episodes, excluded)
    assert exact == (mean, per_episode)
    value, values = task.bayes_optimal_value()
    assert value == float(mean) and values == [float(v) for v in per_episode]


def test_bayes_optimal_value_of_gridnavi_is_between_posterior_sampling_and_oracle():
    task = registry.make("gridworld")
    mean, per_episode = gridworld_dp.bayes_optimal_value_exact()
    assert mean == sum(per_episode)
    value, values = task.bayes_optimal_value()
    assert value == pytest.approx(float(mean)) and len(values) == 4
    # the oracle's exact expected value: known goal, prior average of optimal_value
    optimal = jax.vmap(lambda g: task.optimal_value({"goal": g}, _position(0, 0), 0))(
        jnp.arange(25, dtype=jnp.int32)
    )
    oracle = float(np.dot(np.asarray(optimal, np.float64), np.asarray(task.belief_init())))
    assert oracle == pytest.approx(-6 + 4.4 * 240 / 21, rel=1e-6)
    assert value < oracle
    stats = rollout.evaluate(jax.random.key(0), task,
                             reference_agents.posterior_sampling_agent(task), 512)
    assert stats.mean + 3 * stats.se < value
