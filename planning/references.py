"""Reference values of a task: the floor and ceiling every score is normalized by.

:func:`references` returns, for one task, the expected total return per trial of

* ``random`` (the floor), ``oracle`` (knows the task), ``posterior_sampling`` (exact belief),
  by Monte Carlo over ``num_trials`` trials with a fixed seed (mean, standard error and
  per-episode means);
* ``bayes_optimal``: the exact Bayes-optimal value, where the task provides one
  (``Task.bayes_optimal_value``; standard error 0);
* the task's classical baselines (:mod:`varibased.planning.baselines`, e.g. GP-UCB), by Monte Carlo;

and a ``reference`` entry naming ``R_ref``: the exact Bayes-optimal value where it exists,
else the best baseline agent (DESIGN.md, Measures). Values are computed on demand in a few
seconds and cached in memory; nothing is read from a results file.

The normalized score is ``(R - R_random) / (R_ref - R_random)`` (:func:`normalized_score`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import numpy as np

from varibased.models import registry
from varibased.models.rollout import evaluate
from varibased.models.task import Task, TaskError
from varibased.planning import baselines as baseline_registry
from varibased.planning import reference_agents

__all__ = ["references", "normalized_score", "ScoreAboveBayesOptimal"]

DEFAULT_TRIALS = 2000


class ScoreAboveBayesOptimal(RuntimeError):
    """A score beat the exact Bayes-optimal value by more than 3 standard errors: a bug."""


def _entry(stats) -> dict[str, Any]:
    return stats.as_dict()


def compute_references(task: Task, *, num_trials: int = DEFAULT_TRIALS, seed: int = 0) -> dict[str, Any]:
    """Compute every reference value of ``task`` (see the module docstring). Uncached."""
    if num_trials < 2:
        raise ValueError(f"num_trials must be >= 2 for a standard error, got {num_trials}")
    rng_key = jax.random.key(seed)
    agents = {"random": reference_agents.random_agent(task)}
    if task.oracle_action is not None:
        agents["oracle"] = reference_agents.oracle_agent(task)
    if task.has_exact_belief and task.oracle_action is not None:
        agents["posterior_sampling"] = reference_agents.posterior_sampling_agent(task)
    baselines = baseline_registry.baseline_agents(task)
    agents.update(baselines)
    # Every agent sees the same held-out tasks and keys (common random numbers).
    out: dict[str, Any] = {
        name: _entry(evaluate(rng_key, task, agent, num_trials)) for name, agent in agents.items()
    }
    if task.bayes_optimal_value is not None:
        mean, per_episode = task.bayes_optimal_value()
        out["bayes_optimal"] = {
            "mean": float(mean), "se": 0.0, "per_episode": [float(x) for x in per_episode]
        }
        out["reference"] = {"agent": "bayes_optimal", "mean": float(mean), "exact": True}
    elif baselines:
        best = max(baselines, key=lambda name: out[name]["mean"])
        out["reference"] = {"agent": best, "mean": out[best]["mean"], "exact": False}
    elif "oracle" in out:
        out["reference"] = {"agent": "oracle", "mean": out["oracle"]["mean"], "exact": False}
    else:
        raise TaskError(f"task {task.name!r} provides no reference agent beyond random (give it an "
                        "oracle_action, a bayes_optimal_value or a baseline)")
    out["num_trials"] = num_trials
    out["seed"] = seed
    return out


@functools.lru_cache(maxsize=32)
def _cached(name: str, revision: int, kwargs: tuple, num_trials: int, seed: int) -> dict[str, Any]:
    del revision  # part of the key: a task registered again (overwrite=True) is recomputed
    return compute_references(registry.make(name, **dict(kwargs)), num_trials=num_trials, seed=seed)


def references(task: str | Task, *, num_trials: int = DEFAULT_TRIALS, seed: int = 0,
               **task_kwargs) -> dict[str, Any]:
    """Reference values of a task, by id (cached in memory) or as a :class:`Task` (uncached).

    Args:
        task: a task id (with ``task_kwargs`` for the factory) or a task definition.
        num_trials: Monte Carlo trials per agent (>= 2,000 for published tables).
        seed: the seed of the held-out tasks.

    Returns:
        ``{agent: {"mean", "se", "per_episode"}, ..., "reference": {"agent", "mean", "exact"}}``.
    """
    if isinstance(task, Task):
        return compute_references(task, num_trials=num_trials, seed=seed)
    return _cached(task, registry.revision(task), tuple(sorted(task_kwargs.items())), num_trials, seed)


def normalized_score(mean: float, refs: dict[str, Any], se: float = 0.0) -> tuple[float, float]:
    """``(R - R_random) / (R_ref - R_random)`` and its standard error.

    Raises:
        ScoreAboveBayesOptimal: when ``R_ref`` is exact and the score exceeds
            ``1 + 3 se`` (with the random floor's error included): that is a bug.
    """
    low = refs["random"]["mean"]
    high = refs["reference"]["mean"]
    span = high - low
    if span <= 0:
        raise ValueError(f"reference {high} is not above the random floor {low}")
    score = (mean - low) / span
    score_se = math.hypot(se, refs["random"]["se"]) / span
    if refs["reference"].get("exact") and score > 1 + 3 * max(score_se, 1e-9) + 1e-6:
        raise ScoreAboveBayesOptimal(
            f"normalized score {score:.4f} (s.e. {score_se:.4f}) exceeds the exact Bayes-optimal "
            f"value by more than 3 standard errors: this is a bug, not a result"
        )
    return float(score), float(score_se)


def normalized_scores(returns: np.ndarray, refs: dict[str, Any]) -> tuple[float, float]:
    """Normalized score of per-trial returns ``[N]`` (mean and standard error)."""
    returns = np.asarray(returns, np.float64)
    se = returns.std(ddof=1) / math.sqrt(len(returns)) if len(returns) > 1 else 0.0
    return normalized_score(float(returns.mean()), refs, float(se))
