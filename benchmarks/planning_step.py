"""The planning step on GridNavi's EXACT model: each option of the planner at several K.

The exact planning model (exact posterior and dynamics, QMDP value, uniform proposal) isolates
the planning step from everything learned. Every option runs on the same 504 held-out trials
(24 per candidate goal) with the same keys; argmax actions; normalized scores (random 0, exact
Bayes-optimal 1)::

    .venv/bin/python benchmarks/planning_step.py --out results/planning_step.json
    .venv/bin/python benchmarks/planning_step.py --out FILE --particles 16 --variants baseline,enumerate

Writes JSON ``{"settings": {...}, "scores": {"VARIANT": {"K": {"score", "se"}}}}`` and a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

_ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLCONFIGDIR", str(_ROOT / ".cache" / "matplotlib"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from varibased.models import registry  # noqa: E402
from varibased.planning.config import PlannerConfig  # noqa: E402
from varibased.planning.model import exact_model  # noqa: E402
from varibased.planning.planner_agent import run_planner_trials  # noqa: E402
from varibased.planning.references import normalized_scores, references  # noqa: E402

#: variant name -> PlannerConfig options
VARIANTS = {
    "baseline": {},
    "stratified": {"root_actions": "stratified"},
    "strat_q_adaptive": {"root_actions": "stratified", "target": "q", "temperature": "adaptive"},
    "enumerate": {"outcome": "enumerate"},
    "enum_strat_q_adaptive": {"outcome": "enumerate", "root_actions": "stratified", "target": "q",
                              "temperature": "adaptive"},
}


def held_out_goals(per_goal: int) -> dict:
    """``per_goal`` tasks of every candidate goal (GridNavi 5x5: the 21 cells off the start corner)."""
    goals = [c for c in range(25) if c not in (0, 1, 5, 6)]
    return {"goal": jnp.asarray(np.repeat(goals, per_goal), jnp.int32)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--particles", default="16,64,256", help="K grid (comma-separated)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {', '.join(VARIANTS)}")
    parser.add_argument("--per-goal", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        particles = [int(k) for k in args.particles.split(",")]
        variants = args.variants.split(",")
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown or any(k < 1 for k in particles) or args.per_goal < 2:
            raise ValueError(f"unknown variants {unknown}" if unknown else "K >= 1 and --per-goal >= 2")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    task = registry.make("gridworld")
    refs = references("gridworld")
    model = exact_model(task)
    tasks = held_out_goals(args.per_goal)
    num = int(tasks["goal"].shape[0])
    settings = {"num_nested": 4, "depth": 4, "alpha": 0.1, "action_selection": "argmax"}
    scores: dict = {}
    for name in variants:
        for K in particles:
            config = PlannerConfig(num_particles=K, **settings, **VARIANTS[name])
            start = time.perf_counter()
            trajectory = run_planner_trials(jax.random.key(args.seed), task, model, config, num, tasks)
            returns = np.asarray(trajectory.transitions.reward.sum(-1), np.float64)
            score, se = normalized_scores(returns, refs)
            scores.setdefault(name, {})[str(K)] = {"score": score, "se": se}
            print(f"{name:24s} K={K:4d} score {score:.3f} ± {se:.3f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    result = {"settings": {**settings, "trials": num, "seed": args.seed, "variants": VARIANTS},
              "scores": scores}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(args.out.with_suffix(".png"), result)
    return result


def plot(path: pathlib.Path, result: dict) -> None:
    """Normalized score against K, one line per variant."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for name, by_k in result["scores"].items():
        ks = sorted(int(k) for k in by_k)
        means = np.array([by_k[str(k)]["score"] for k in ks])
        ses = np.array([by_k[str(k)]["se"] for k in ks])
        ax.errorbar(ks, means, yerr=2 * ses, marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=4)
    ax.axhline(1.0, color="k", ls="--", lw=1, label="exact Bayes-optimal")
    ax.set_xlabel("particles K")
    ax.set_ylabel("normalized score (± 2 s.e.)")
    ax.set_title(f"exact-model planner on GridNavi ({result['settings']['trials']} trials)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
