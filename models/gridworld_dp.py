r"""The exact Bayes-optimal value of GridNavi, by a dynamic program over search orders.

Why a search over orders suffices. Until the goal is stepped on, every step yields the
same observation (the known position and reward -0.1), so a policy is, until then, a fixed
(open-loop) walk; once the goal is stepped on it is known and the rest is the known-goal
optimum (shortest path, then noops on it, walking back after each episode reset). Every
step earns -0.1 except the steps that move into the goal, which earn +1, so the return of
a trial is :math:`-0.1\,T + 1.1\,H`, with :math:`H` the number of steps on the goal, and

.. math::

    V^* = -0.1\,T + \frac{1.1}{|C|} \max_{\text{walks } w} \sum_{g \in C} f_g(\tau_g(w)),

where :math:`C` is the set of candidate goals, :math:`\tau_g(w)` the trial step at which
the walk first moves into :math:`g` and :math:`f_g(\tau)` the steps on the goal of the
known-goal optimum when :math:`g` is found at :math:`\tau` (0 if never). With
:math:`L` steps per episode and :math:`K` episodes, finding :math:`g` at step :math:`s` of
episode :math:`k` gives :math:`L - s` steps on it in that episode and
:math:`L - d_g + 1` in each later one, :math:`d_g` being its distance from the start.

The walk is searched by the next *candidate not yet stepped on* it moves into. Given that
next cell :math:`c`, arriving as early as possible (a shortest path through cells already
ruled out, from the current position in this episode, else from the start in the next) is
never worse: a later arrival is matched by arriving early, waiting on :math:`c` (noops, or
the episode reset) and replaying the later walk. The memoised state is (position, trial
step, remaining candidates), and the values are integers (steps on the goal), so the result
is exact (a :class:`fractions.Fraction`). Ties in the total are broken toward more return in
earlier episodes, which fixes the per-episode split reported beside the mean.

The search is a depth-first branch and bound with memoised exact values and upper bounds
(fail-soft, as in alpha-beta with a transposition table). The bound: with :math:`c` episodes
after the current one, a candidate found now at offset :math:`s` is worth at most
:math:`(L - s) + c\,h_g` (:math:`h_g = L - d_g + 1`) and one found later at most
:math:`c\,h_g`; only one find per step. It is exact at the start of GridNavi, so the 5 x 5
value takes about a second. Tests compare it with an expectimax over all policies on small
grids.
"""

from __future__ import annotations

import functools
from collections import deque
from fractions import Fraction

import numpy as np

__all__ = ["bayes_optimal_value", "bayes_optimal_value_exact", "goal_hits",
           "belief_state_value", "belief_state_value_exact"]

STEP_REWARD = Fraction(-1, 10)
GOAL_REWARD = Fraction(1)


def _neighbours(size: int) -> list[tuple[int, ...]]:
    """The cells one move (up/right/down/left, clipped) away from each cell, itself excluded."""
    result = []
    for cell in range(size * size):
        y, x = divmod(cell, size)
        moves = [(x, y + 1), (x + 1, y), (x, y - 1), (x - 1, y)]
        result.append(
            tuple(ny * size + nx for nx, ny in moves if 0 <= nx < size and 0 <= ny < size)
        )
    return result


def goal_hits(distance_from_start: int, step: int, episode_length: int,
              num_episodes: int) -> tuple[int, ...]:
    """Steps on the goal per episode when it is first moved into at trial ``step``.

    Known-goal optimum afterwards: noops on it until the episode ends, then in every later
    episode a shortest path from the start (``distance_from_start`` >= 1 moves) and noops.
    """
    episode, offset = divmod(step, episode_length)
    later = max(episode_length - distance_from_start + 1, 0)
    return tuple(
        0 if k < episode else episode_length - offset if k == episode else later
        for k in range(num_episodes)
    )


@functools.lru_cache(maxsize=8)
def _make_search(size: int, episode_length: int, num_episodes: int, excluded: int):
    """The memoised branch and bound of one GridNavi configuration.

    Returns ``solve(position, t, remaining) -> (total, hits_episode_0, ..., hits_episode_K-1)``:
    the max over walks from cell ``position`` at trial step ``t`` of the steps on the goal
    summed over the ``remaining`` candidates (a bit mask of cells; the goal not yet found),
    per episode (0 for the episodes before ``t``'s). Its tables persist between calls, so
    many belief states of one configuration share the work.
    """
    neighbours = _neighbours(size)
    trial_length = episode_length * num_episodes
    start = 0
    candidates = [
        c for c in range(size * size) if not (c % size < excluded and c // size < excluded)
    ]
    hits = {
        c: {
            step: goal_hits(c % size + c // size, step, episode_length, num_episodes)
            for step in range(trial_length)
        }
        for c in candidates
    }
    zero = (0,) * (num_episodes + 1)

    @functools.cache
    def arrivals(position: int, remaining: int) -> tuple[tuple[int, int], ...]:
        """``(cell, moves)`` for each remaining candidate reachable through ruled-out cells."""
        distance = {position: 0}
        queue = deque([position])
        while queue:
            cell = queue.popleft()
            for nxt in neighbours[cell]:
                if nxt not in distance and not (remaining >> nxt) & 1:
                    distance[nxt] = distance[cell] + 1
                    queue.append(nxt)
        result = []
        for c in candidates:
            if (remaining >> c) & 1:
                reached = [distance[n] for n in neighbours[c] if n in distance]
                if reached:
                    result.append((c, min(reached) + 1))
        return tuple(result)

    distance_from_start = {c: c % size + c // size for c in candidates}
    weight = {c: max(episode_length - distance_from_start[c] + 1, 0) for c in candidates}
    by_distance = [
        sorted(candidates, key=lambda c, p=p: abs(c % size - p % size) + abs(c // size - p // size))
        for p in range(size * size)
    ]

    def upper_bound(position: int, t: int, remaining: int) -> int:
        """An admissible bound on the total from ``(position, t)`` with ``remaining`` candidates.

        With ``c = K - 1 - k`` later episodes, a candidate found in this episode at offset
        ``s`` earns ``(L - s) + c h_g`` (``h_g = L - d_g + 1``), one found in a later episode
        at most ``c h_g`` (it is reached no sooner than at offset ``d_g - 1``). So the total is
        at most ``c * sum(h_g)`` plus the best offsets of this episode: one find per step,
        the ``j``-th no sooner than the ``j``-th nearest candidate (Manhattan) allows.
        """
        if not remaining or t >= trial_length:
            return 0
        episode, offset = divmod(t, episode_length)
        later = num_episodes - 1 - episode
        bound = 0
        if later:
            bound = later * sum(weight[c] for c in candidates if (remaining >> c) & 1)
        px, py = position % size, position // size
        slot = offset - 1
        for c in by_distance[position]:
            if (remaining >> c) & 1:
                slot = max(slot + 1, offset + abs(c % size - px) + abs(c // size - py) - 1)
                if slot >= episode_length:
                    break
                bound += episode_length - slot
        return bound

    exact: dict[tuple[int, int, int], tuple[int, ...]] = {}
    ceiling: dict[tuple[int, int, int], int] = {}

    def children(position: int, t: int, remaining: int) -> list[tuple[int, int, int, int]]:
        """``(optimistic total, cell, step, next position)`` for each next candidate."""
        episode_end = (t // episode_length + 1) * episode_length
        first = {c: t + moves - 1 for c, moves in arrivals(position, remaining)
                 if t + moves <= episode_end}
        if episode_end < trial_length:
            for c, moves in arrivals(start, remaining):
                if c not in first and moves <= episode_length:
                    first[c] = episode_end + moves - 1
        result = []
        for c, step in first.items():
            after = step + 1
            nxt = start if after % episode_length == 0 else c
            rest = remaining & ~(1 << c)
            key = (nxt, after, rest)
            bound = exact[key][0] if key in exact else ceiling.get(key, None)
            if bound is None:
                bound = upper_bound(nxt, after, rest)
                ceiling[key] = bound
            result.append((sum(hits[c][step]) + bound, c, step, nxt))
        result.sort(reverse=True)
        return result

    def search(position: int, t: int, remaining: int, need: int) -> tuple[bool, tuple[int, ...]]:
        """Fail-soft branch and bound: ``(is_exact, value)``.

        If the best total is at least ``need`` the value is exact (and ``is_exact``);
        otherwise ``value[0]`` is an upper bound below ``need``.
        """
        key = (position, t, remaining)
        if key in exact:
            return True, exact[key]
        if not remaining or t >= trial_length:
            exact[key] = zero
            return True, zero
        if key in ceiling and ceiling[key] < need:
            return False, (ceiling[key],)
        best = zero
        failed = -1
        for optimistic, c, step, nxt in children(position, t, remaining):
            threshold = max(need, best[0])
            if optimistic < threshold:
                failed = max(failed, optimistic)
                break
            gain = hits[c][step]
            gain_total = sum(gain)
            found, rest = search(nxt, step + 1, remaining & ~(1 << c), threshold - gain_total)
            if not found:
                failed = max(failed, gain_total + rest[0])
                continue
            per_episode = tuple(h + r for h, r in zip(gain, rest[1:], strict=True))
            candidate = (sum(per_episode),) + per_episode
            if candidate > best:
                best = candidate
        if best[0] >= need:
            exact[key] = best
            return True, best
        bound = max(best[0], failed)
        bound = ceiling[key] = min(bound, ceiling.get(key, bound))
        return False, (bound,)

    def solve(position: int, t: int, remaining: int) -> tuple[int, ...]:
        found, result = search(position, t, remaining, 0)
        if not found:  # need=0 is always met: walking without a find is worth 0
            raise AssertionError("the branch and bound did not finish its root search")
        return result

    solve.candidates = tuple(candidates)
    return solve


def _solve(size: int, episode_length: int, num_episodes: int, excluded: int) -> tuple[int, ...]:
    """Max over walks of the summed steps on the goal over all candidates, per episode, from
    the start of a trial: ``(total, hits_episode_0, ..., hits_episode_K-1)``."""
    solve = _make_search(size, episode_length, num_episodes, excluded)
    return solve(0, 0, sum(1 << c for c in solve.candidates))


@functools.lru_cache(maxsize=32)
def bayes_optimal_value_exact(
    size: int = 5, episode_length: int = 15, num_episodes: int = 4, excluded: int = 2
) -> tuple[Fraction, tuple[Fraction, ...]]:
    """The exact Bayes-optimal expected return per trial and per episode, as fractions.

    Args:
        size, episode_length, num_episodes, excluded: as in
            :func:`models.gridworld.make_gridworld` (validated there).

    Returns:
        ``(mean, per_episode)``: the expected total return of the Bayes-optimal policy and
        its expected return in each of the ``num_episodes`` episodes.
    """
    _check_sizes(size, episode_length, num_episodes, excluded)
    num_candidates = size * size - excluded * excluded
    total, *per_episode = _solve(size, episode_length, num_episodes, excluded)
    bonus = GOAL_REWARD - STEP_REWARD
    episode_values = tuple(
        STEP_REWARD * episode_length + bonus * Fraction(h, num_candidates) for h in per_episode
    )
    mean = STEP_REWARD * episode_length * num_episodes + bonus * Fraction(total, num_candidates)
    return mean, episode_values


def bayes_optimal_value(
    size: int = 5, episode_length: int = 15, num_episodes: int = 4, excluded: int = 2
) -> tuple[float, list[float]]:
    """The exact Bayes-optimal expected return per trial (float) and per episode (list).

    See :func:`bayes_optimal_value_exact` (cached); this converts its fractions to floats.
    """
    mean, per_episode = bayes_optimal_value_exact(size, episode_length, num_episodes, excluded)
    return float(mean), [float(v) for v in per_episode]


def _check_sizes(size: int, episode_length: int, num_episodes: int, excluded: int) -> None:
    if not (1 <= excluded < size) or episode_length < 1 or num_episodes < 1:
        raise ValueError(
            f"bad GridNavi sizes: size={size}, episode_length={episode_length}, "
            f"num_episodes={num_episodes}, excluded={excluded}"
        )


def belief_state_value_exact(
    position: tuple[int, int], t: int, candidates, *, size: int = 5, episode_length: int = 15,
    num_episodes: int = 4, excluded: int = 2,
) -> Fraction:
    r"""The exact Bayes-optimal expected return from a GridNavi belief state to the trial's end.

    The exact posterior of GridNavi is uniform over a set of candidate goals (those not yet
    stepped on), or a point mass once the goal is found, so a belief state is
    ``(position, t, candidates)``. With one candidate the goal is known and the value is the
    known-goal optimum (``Task.optimal_value``); otherwise

    .. math:: V^* = -0.1\,(T - t) + \frac{1.1}{|C|} \max_w \sum_{g \in C} f_g(\tau_g(w))

    by the memoised search of this module (see the module docstring), outside jit.

    Args:
        position: ``(x, y)``, the agent's cell at trial step ``t`` (the start after a reset).
        t: trial step in ``[0, T]`` (``T = episode_length * num_episodes``); 0 at ``T``.
        candidates: the cells (indices ``y * size + x``) the goal may still be: an iterable,
            or a probability vector ``[size * size]`` whose support is taken.
        size, episode_length, num_episodes, excluded: as in
            :func:`models.gridworld.make_gridworld`.

    Returns:
        The value as a :class:`fractions.Fraction`.

    Raises:
        ValueError: bad sizes, a position off the grid, ``t`` outside ``[0, T]``, an empty
            candidate set or a candidate the prior excludes.
    """
    _check_sizes(size, episode_length, num_episodes, excluded)
    trial_length = episode_length * num_episodes
    x, y = (int(v) for v in position)
    if not (0 <= x < size and 0 <= y < size):
        raise ValueError(f"position {position} is off the {size}x{size} grid")
    if not 0 <= int(t) <= trial_length:
        raise ValueError(f"t={t} is outside [0, {trial_length}]")
    t = int(t)
    cells = _support(candidates, size)
    allowed = {c for c in range(size * size) if not (c % size < excluded and c // size < excluded)}
    if not cells or not cells <= allowed:
        raise ValueError(f"candidates {sorted(cells)} must be a non-empty subset of the prior's "
                         f"support {sorted(allowed)}")
    if t == trial_length:
        return Fraction(0)
    bonus = GOAL_REWARD - STEP_REWARD
    floor = STEP_REWARD * (trial_length - t)
    if len(cells) == 1:
        (goal,) = cells
        return floor + bonus * _known_goal_hits(goal, (x, y), t, size, episode_length, num_episodes)
    solve = _make_search(size, episode_length, num_episodes, excluded)
    total = solve(y * size + x, t, sum(1 << c for c in cells))[0]
    return floor + bonus * Fraction(total, len(cells))


def belief_state_value(position: tuple[int, int], t: int, candidates, **sizes) -> float:
    """:func:`belief_state_value_exact` as a float."""
    return float(belief_state_value_exact(position, t, candidates, **sizes))


def _support(candidates, size: int) -> frozenset[int]:
    """Cell indices of a candidate iterable, or of the support of a probability vector."""
    array = np.asarray(list(candidates) if not hasattr(candidates, "shape") else candidates)
    if array.dtype.kind == "f":
        if array.shape != (size * size,):
            raise ValueError(f"a belief vector must have shape ({size * size},), got {array.shape}")
        return frozenset(int(c) for c in np.flatnonzero(array > 0))
    return frozenset(int(c) for c in array.reshape(-1))


def _known_goal_hits(goal: int, position: tuple[int, int], t: int, size: int,
                     episode_length: int, num_episodes: int) -> int:
    """Steps on a known goal from ``position`` at step ``t``: shortest path then noops, and
    from the start in every later episode (as ``Task.optimal_value``)."""
    gx, gy = goal % size, goal // size
    distance = abs(gx - position[0]) + abs(gy - position[1])
    episode, offset = divmod(t, episode_length)
    now = max(episode_length - offset - max(distance, 1) + 1, 0)
    later = max(episode_length - max(gx + gy, 1) + 1, 0)
    return now + (num_episodes - 1 - episode) * later
