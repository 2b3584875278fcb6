"""A small RL^2 hyperparameter sweep (learning rate x entropy coefficient), for a fair
comparison with VariBASeD (issue: "give RL^2 the same care").

    .venv/bin/python benchmarks/rl2_sweep.py --task gridworld --steps 400000 --out results/rl2_sweep.json

Each cell trains RL^2 from the task's defaults with one (learning rate, entropy coefficient)
pair for ``--steps`` environment steps and evaluates greedy actions on 512 held-out trials.
Writes JSON and a PNG heat map of the normalized score.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")
_ROOT = pathlib.Path(__file__).resolve().parents[1]

import jax  # noqa: E402
import numpy as np  # noqa: E402

from varibased.inference import rl2  # noqa: E402
from varibased.models import registry  # noqa: E402
from varibased.models.rollout import run_trials  # noqa: E402
from varibased.planning.references import normalized_scores, references  # noqa: E402


def cell(task, task_name: str, learning_rate: float, entropy: float, steps: int, seed: int,
         trials: int) -> dict:
    config = rl2.RL2Config.for_task(task_name, learning_rate=learning_rate, entropy_coef=entropy)
    trainer = rl2.make_trainer(task, config)
    iteration = jax.jit(trainer.iteration)
    state = jax.jit(trainer.init)(jax.random.key(seed))
    start = time.perf_counter()
    for _ in range(max(1, steps // trainer.env_steps_per_iteration)):
        state, _ = iteration(state)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    returns = jax.jit(lambda s: run_trials(jax.random.key(10_000), task, trainer.agent(s, True), trials)
                      .transitions.reward.sum(-1))(state)
    score, se = normalized_scores(np.asarray(returns, np.float64), references(task_name))
    return {"learning_rate": learning_rate, "entropy_coef": entropy, "normalized_score": score, "se": se,
            "train_seconds": seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="gridworld")
    parser.add_argument("--steps", type=int, default=400_000)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--entropy-coefs", type=float, nargs="+", default=[0.0, 0.01, 0.03])
    parser.add_argument("--trials", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.trials < 2:
        parser.error("--steps must be >= 1 and --trials >= 2")
    task = registry.make(args.task)
    rows = [cell(task, args.task, lr, ent, args.steps, args.seed, args.trials)
            for lr in args.learning_rates for ent in args.entropy_coefs]
    for row in rows:
        print(f"lr {row['learning_rate']:.0e} entropy {row['entropy_coef']:.3f}: "
              f"{row['normalized_score']:.3f} ± {row['se']:.3f} ({row['train_seconds']:.0f} s)")
    best = max(rows, key=lambda r: r["normalized_score"])
    result = {"task": args.task, "steps": args.steps, "seed": args.seed, "cells": rows, "best": best,
              "command": " ".join(sys.argv),
              "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                       cwd=_ROOT).stdout.strip()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    import matplotlib.pyplot as plt

    grid = np.array([[r["normalized_score"] for r in rows if r["learning_rate"] == lr]
                     for lr in args.learning_rates])
    fig, ax = plt.subplots(figsize=(5, 3.8))
    image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w")
    ax.set_xticks(range(len(args.entropy_coefs)), args.entropy_coefs)
    ax.set_yticks(range(len(args.learning_rates)), args.learning_rates)
    ax.set_xlabel("entropy coefficient")
    ax.set_ylabel("learning rate")
    ax.set_title(f"RL^2 on {args.task}, {args.steps} steps")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    print(f"best: {best}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
