"""V*(belief state) of GridNavi: the start value, hand-checked states, the known-goal optimum,
and an expectimax over every policy from mid-trial belief states on a small grid."""

import functools
from fractions import Fraction

import jax.numpy as jnp
import numpy as np
import pytest

from varibased.models import gridworld_dp, registry
from varibased.models.gridworld import MOVES

CANDIDATES_5x5 = [c for c in range(25) if not (c % 5 < 2 and c // 5 < 2)]


def test_start_belief_state_equals_the_start_value():
    mean, _ = gridworld_dp.bayes_optimal_value_exact()
    assert gridworld_dp.belief_state_value_exact((0, 0), 0, CANDIDATES_5x5) == mean
    prior = np.asarray(registry.make("gridworld").belief_init())
    assert gridworld_dp.belief_state_value((0, 0), 0, prior) == pytest.approx(float(mean))


def test_hand_checked_states():
    # (1, 1) neighbours the candidates 7 = (2, 1) and 11 = (1, 2).
    # Last step: one move, finds the goal with probability 1/2: -0.1 + 1.1 / 2.
    assert gridworld_dp.belief_state_value_exact((1, 1), 59, [7, 11]) == Fraction(9, 20)
    # Two steps left: enter 7 and stay on it if it is the goal (2 hits), else 11 is two
    # moves away: -0.2 + 1.1 * 2 / 2.
    assert gridworld_dp.belief_state_value_exact((1, 1), 58, [7, 11]) == Fraction(9, 10)
    assert gridworld_dp.belief_state_value_exact((1, 1), 60, [7, 11]) == 0


def test_a_single_candidate_is_the_known_goal_optimum():
    task = registry.make("gridworld")
    for goal, position, t in [(24, (0, 0), 0), (12, (2, 2), 17), (7, (4, 4), 44), (20, (0, 3), 59)]:
        expected = float(task.optimal_value({"goal": jnp.int32(goal)}, jnp.asarray(position), t))
        assert gridworld_dp.belief_state_value((position), t, [goal]) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("bad", [dict(position=(5, 0)), dict(t=61), dict(candidates=[]),
                                 dict(candidates=[0, 12])])
def test_bad_belief_states_are_refused(bad):
    args = dict(position=(0, 0), t=0, candidates=CANDIDATES_5x5) | bad
    with pytest.raises(ValueError):
        gridworld_dp.belief_state_value_exact(args["position"], args["t"], args["candidates"])


def _expectimax(size, episode_length, num_episodes):
    """Bayes-optimal value of every ``(cell, t, goals)`` by expectimax over all actions."""
    trial_length = episode_length * num_episodes
    step, goal_reward = Fraction(-1, 10), Fraction(1)

    def move(cell, action):
        x, y = cell % size, cell // size
        nx = min(max(x + int(MOVES[action][0]), 0), size - 1)
        ny = min(max(y + int(MOVES[action][1]), 0), size - 1)
        return ny * size + nx

    @functools.cache
    def value(cell, t, goals):
        if t == trial_length:
            return Fraction(0)
        best = None
        for action in range(5):
            moved = move(cell, action)
            nxt = 0 if (t + 1) % episode_length == 0 else moved
            q = Fraction(0)
            for hit in (False, True):
                kept = frozenset(g for g in goals if (g == moved) == hit)
                if kept:
                    q += Fraction(len(kept), len(goals)) * (
                        (goal_reward if hit else step) + value(nxt, t + 1, kept))
            best = q if best is None else max(best, q)
        return best

    return value


def test_mid_trial_belief_states_equal_expectimax_on_a_small_grid():
    size, episode_length, num_episodes, excluded = 3, 3, 3, 1
    value = _expectimax(size, episode_length, num_episodes)
    rng = np.random.default_rng(0)
    candidates = [c for c in range(1, size * size)]
    for _ in range(40):
        t = int(rng.integers(0, episode_length * num_episodes))
        cell = 0 if t % episode_length == 0 else int(rng.integers(0, size * size))
        kept = [c for c in candidates if c != cell and rng.random() < 0.6] or [8]
        exact = gridworld_dp.belief_state_value_exact(
            (cell % size, cell // size), t, kept, size=size, episode_length=episode_length,
            num_episodes=num_episodes, excluded=excluded)
        assert exact == value(cell, t, frozenset(kept)), (cell, t, kept)
