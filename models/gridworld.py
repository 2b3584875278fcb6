"""GridNavi (task id ``gridworld``): find an unobserved goal cell on a small grid.

As in VariBAD's GridNavi: a ``size x size`` grid (5 x 5 by default), every episode starts
at the corner ``(0, 0)``; the goal is fixed for the whole trial, drawn uniformly from the
cells outside the ``excluded x excluded`` corner around the start (the 21 cells other
than (0,0), (0,1), (1,0), (1,1) by default) and never observed. Actions, clipped at the
walls (a move into a wall leaves the agent where it is):

====== ======== ==================
action name     effect on (x, y)
====== ======== ==================
0      noop     (x, y)
1      up       (x, y + 1)
2      right    (x + 1, y)
3      down     (x, y - 1)
4      left     (x - 1, y)
====== ======== ==================

so ``x`` is the column (growing to the right) and ``y`` the row (growing *upwards*: "up"
increases ``y``). A cell ``(x, y)`` has the index ``y * size + x``; a belief of shape
``[size * size]`` reshaped to ``[size, size]`` is indexed ``[y, x]`` (plot it with
``origin="lower"``).

The reward of a step is ``+1`` when the cell moved into (the same cell for a noop or a
bump into a wall) is the goal and ``-0.1`` otherwise; stepping on the goal does not end
the episode. Episodes have 15 steps and a trial has 4 (60 steps); after the last step of
an episode the agent is put back at the start (by :func:`models.task.step`).

The state is the int32 position ``[2] = (x, y)``; the observation is the same two
numbers as float32. The task is ``{"goal": int32 cell index}``.

Exact belief: a probability vector over the ``size * size`` cells, uniform over the
candidate goals not yet stepped on until the goal is stepped on, then a point mass on it.
The exact Bayes-optimal value is in :mod:`models.gridworld_dp`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from varibased.models import registry
from varibased.models.task import Task, TaskError

Array = jax.Array

__all__ = ["make_gridworld", "goal_prior_probs", "ACTION_NAMES", "MOVES", "cell_index", "cell_position"]

ACTION_NAMES = ("noop", "up", "right", "down", "left")
#: The (dx, dy) of each action.
MOVES = np.array([[0, 0], [0, 1], [1, 0], [0, -1], [-1, 0]], np.int32)

STEP_REWARD = -0.1
GOAL_REWARD = 1.0


def cell_index(position: Array, size: int) -> Array:
    """Index ``y * size + x`` of the cell at ``position`` (int32 ``[..., 2] = (x, y)``)."""
    position = jnp.asarray(position, jnp.int32)
    return position[..., 1] * size + position[..., 0]


def cell_position(index: Array, size: int) -> Array:
    """Position int32 ``[..., 2] = (x, y)`` of the cell ``index``."""
    index = jnp.asarray(index, jnp.int32)
    return jnp.stack([index % size, index // size], axis=-1)


def _check_config(size, episode_length, num_episodes, excluded) -> None:
    for name, value in (
        ("size", size),
        ("episode_length", episode_length),
        ("num_episodes", num_episodes),
        ("excluded", excluded),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TaskError(f"gridworld: {name} must be an int, got {value!r}")
    for name, value in (("size", size), ("episode_length", episode_length),
                        ("num_episodes", num_episodes)):
        if value < 1:
            raise TaskError(f"gridworld: {name} must be positive, got {value}")
    if excluded < 1:
        raise TaskError(
            f"gridworld: excluded must be >= 1 (the start cell is never the goal), got {excluded}"
        )
    if excluded >= size:
        raise TaskError(
            f"gridworld: a {size}x{size} grid is too small for its start and the excluded "
            f"{excluded}x{excluded} corner: no cell is left for the goal (need size > excluded)"
        )


def goal_prior_probs(size: int, excluded: int) -> np.ndarray:
    """The prior over the goal, float32 ``[size * size]``: uniform outside the corner."""
    y, x = np.divmod(np.arange(size * size), size)
    candidate = ~((x < excluded) & (y < excluded))
    return (candidate / candidate.sum()).astype(np.float32)


def make_gridworld(
    size: int = 5, episode_length: int = 15, num_episodes: int = 4, excluded: int = 2
) -> Task:
    """Build the GridNavi task.

    Args:
        size: the grid is ``size x size``.
        episode_length: steps per episode (15).
        num_episodes: episodes per trial (4).
        excluded: the goal is never in the ``excluded x excluded`` corner that holds the
            start ``(0, 0)``; at least 1 (the start itself), less than ``size``.

    Returns:
        The validated :class:`~models.task.Task` (name ``"gridworld"``).

    Raises:
        TaskError: for non-integer or non-positive sizes, or a grid too small to leave a
            cell for the goal; raised before anything is traced.
    """
    _check_config(size, episode_length, num_episodes, excluded)
    size, episode_length = int(size), int(episode_length)
    num_episodes, excluded = int(num_episodes), int(excluded)
    trial_length = episode_length * num_episodes
    num_cells = size * size
    prior_probs = goal_prior_probs(size, excluded)
    moves = jnp.asarray(MOVES)

    def prior():
        goal = numpyro.sample("goal", dist.Categorical(probs=jnp.asarray(prior_probs)))
        return {"goal": jnp.asarray(goal, jnp.int32)}

    def initial_state() -> Array:
        return jnp.zeros((2,), jnp.int32)

    def transition(state: Array, action: Array) -> Array:
        return jnp.clip(state + moves[action], 0, size - 1).astype(jnp.int32)

    def observe(state: Array) -> Array:
        # (x, y) as floats, then a one-hot of the cell: learned decoders and encoders read a
        # cell's identity directly (VariBAD's multi-head decoder, in observation form).
        one_hot = jax.nn.one_hot(cell_index(state, size), size * size, dtype=jnp.float32)
        return jnp.concatenate([jnp.asarray(state, jnp.float32), one_hot])

    def reward_distribution(task_params, state, action, next_state) -> dist.Distribution:
        del state, action
        hit = cell_index(next_state, size) == task_params["goal"]
        return dist.Categorical(probs=jax.nn.one_hot(hit.astype(jnp.int32), 2))

    def belief_init() -> Array:
        return jnp.asarray(prior_probs)

    def belief_update(belief: Array, state: Array, action: Array, reward: Array) -> Array:
        """Bayes rule: keep the goals consistent with the reward of moving into a cell.

        ``belief`` float32 ``[size * size]``; ``state`` the position before the move.
        After a history no goal explains, the belief is all zeros.
        """
        moved = cell_index(transition(state, action), size)
        found = jnp.asarray(reward) > 0.5 * (STEP_REWARD + GOAL_REWARD)
        is_cell = jnp.arange(num_cells) == moved
        likelihood = jnp.where(found, is_cell, ~is_cell)
        posterior = jnp.where(likelihood, belief, 0.0)
        total = posterior.sum()
        return jnp.where(total > 0, posterior / jnp.where(total > 0, total, 1.0), 0.0)

    def belief_sample(rng_key, belief: Array):
        # Inverse-CDF draw: one uniform and a search over the cumulative sum (much cheaper
        # under the planner's vmaps than a Gumbel categorical over the cells).
        cdf = jnp.cumsum(belief)
        u = jax.random.uniform(rng_key) * cdf[-1]
        goal = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), belief.shape[0] - 1)
        return {"goal": goal.astype(jnp.int32)}

    def belief_log_prob(belief: Array, task_params) -> Array:
        return jnp.log(belief[task_params["goal"]])

    def _known_goal_hits(distance: Array, steps_left: Array) -> Array:
        """Steps on the goal in ``steps_left`` steps from ``distance`` away (optimal play)."""
        reach = jnp.maximum(distance, 1)  # a noop enters the goal when standing on it
        return jnp.maximum(steps_left - reach + 1, 0)

    def optimal_value(task_params, state: Array, t: Array) -> Array:
        """Optimal return from trial step ``t`` (state at ``t``) to the end, goal known.

        Shortest path to the goal, then noops on it; at every later episode start the
        agent walks back from the start. Float32 scalar (0 for ``t >= trial_length``).
        """
        t = jnp.asarray(t, jnp.int32)
        goal = cell_position(task_params["goal"], size)
        distance = jnp.abs(goal - state).sum()
        distance_from_start = jnp.abs(goal).sum()
        steps_left = jnp.maximum(episode_length - t % episode_length, 0)
        later_episodes = jnp.maximum(num_episodes - 1 - t // episode_length, 0)
        hits = _known_goal_hits(distance, steps_left) + later_episodes * _known_goal_hits(
            distance_from_start, episode_length
        )
        hits = jnp.where(t < trial_length, hits, 0)
        remaining = jnp.maximum(trial_length - t, 0)
        return (STEP_REWARD * remaining + (GOAL_REWARD - STEP_REWARD) * hits).astype(jnp.float32)

    def oracle_action(rng_key, task_params, state: Array, t: Array) -> Array:
        """A shortest-path move toward the goal (uniform among them); noop on the goal."""
        del t
        goal = cell_position(task_params["goal"], size)
        delta = goal - state
        closer = jnp.array([False, delta[1] > 0, delta[0] > 0, delta[1] < 0, delta[0] < 0])
        allowed = closer.at[0].set(~closer.any())
        return jax.random.categorical(rng_key, jnp.where(allowed, 0.0, -jnp.inf)).astype(jnp.int32)

    def bayes_optimal_value() -> tuple[float, list[float]]:
        from varibased.models import gridworld_dp

        return gridworld_dp.bayes_optimal_value(size, episode_length, num_episodes, excluded)

    return Task(
        name="gridworld",
        num_actions=5,
        obs_dim=2 + size * size,
        episode_length=episode_length,
        num_episodes=num_episodes,
        prior=prior,
        initial_state=initial_state,
        transition=transition,
        observe=observe,
        reward_distribution=reward_distribution,
        reward_values=(STEP_REWARD, GOAL_REWARD),
        belief_init=belief_init,
        belief_update=belief_update,
        belief_sample=belief_sample,
        belief_log_prob=belief_log_prob,
        optimal_value=optimal_value,
        oracle_action=oracle_action,
        bayes_optimal_value=bayes_optimal_value,
        thompson_resample="episode",
        description=(
            f"GridNavi {size}x{size}: find a hidden goal, {num_episodes} episodes of "
            f"{episode_length} steps"
        ),
    )


registry.register("gridworld", make_gridworld)
