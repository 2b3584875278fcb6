"""VariBASeD vs RL^2: sample efficiency, runtime efficiency and planning-budget scaling.

    .venv/bin/python benchmarks/efficiency.py --out results/efficiency.json           # hours
    .venv/bin/python benchmarks/efficiency.py --out /tmp/eff.json --smoke             # minutes

For GridNavi and function optimization, trains both agents with ``--seeds`` seeds each in
one invocation (the evaluation protocol of DESIGN.md), then writes, per task: both agents'
``benchmarks/train.py`` results (learning curves vs environment steps and wall-clock), the
ratios VariBASeD / RL^2 of environment steps and of wall-clock to reach normalized scores
0.8 and 0.9 (``None`` where either agent did not reach the level within its budget), and
the test-time planning-budget sweep of the trained VariBASeD agent (seed 0) over K and D at
the training K_omega and one other. JSON + PNGs (curves; one budget heat map per task).
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

import numpy as np  # noqa: E402
import train as train_bench  # noqa: E402

from varibased.inference import runner  # noqa: E402

TASKS = ("gridworld", "function_optimization")
#: default budgets (environment steps per seed); RL^2 gets up to VariBAD's 2e7 on GridNavi
BUDGETS = {"gridworld": {"varibased": 1_000_000, "rl2": 20_000_000},
           "function_optimization": {"varibased": 500_000, "rl2": 5_000_000}}


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def budget_sweep(run_dir: pathlib.Path, particles, depths, nested, trials: int) -> list[dict]:
    """Normalized score of a trained run at every (K, K_omega, D) of the grid."""
    rows = []
    grid = [(kw, k, d) for kw in nested for k in particles for d in depths]
    for i, (num_nested, num_particles, depth) in enumerate(grid, 1):
        start = time.perf_counter()
        budget = {"planner.num_particles": num_particles, "planner.num_nested": num_nested,
                  "planner.depth": depth}
        result = runner.evaluate_run(run_dir, trials=trials, seed=40_000, overrides=budget)
        rows.append({"K": num_particles, "K_omega": num_nested, "D": depth,
                     "normalized_score": result["normalized_score"],
                     "se": result["normalized_score_se"]})
        print(f"budget sweep {i}/{len(grid)}: K={num_particles} K_omega={num_nested} D={depth} "
              f"score {result['normalized_score']:.3f} ± {result['normalized_score_se']:.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def plot(out: pathlib.Path, results: dict) -> None:
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if t in results]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.6 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks, strict=True):
        for agent, color in (("varibased", "tab:blue"), ("rl2", "tab:orange")):
            curve = results[task][agent]["curve"]
            for ax, xs in ((row[0], curve["env_steps"]), (row[1], curve["wall_seconds_mean"])):
                points = [(x, y) for x, y in zip(xs, curve["normalized_score_mean"], strict=True) if x > 0]
                ax.plot(*zip(*points, strict=True), "o-", color=color, label=agent)  # log axes: x > 0
        for ax, label in ((row[0], "environment steps"), (row[1], "wall-clock seconds (no compile)")):
            ax.set_xscale("log")
            ax.axhline(1.0, color="k", ls="--", lw=1)
            ax.axhline(0.0, color="k", ls=":", lw=1)
            ax.set_xlabel(label)
            ax.set_ylabel("normalized score")
            ax.set_title(task)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)
    for task in tasks:
        sweep = results[task].get("budget_sweep") or []
        if not sweep:
            continue
        nested = sorted({r["K_omega"] for r in sweep})
        fig, axes = plt.subplots(1, len(nested), figsize=(4.5 * len(nested), 3.6), squeeze=False)
        for ax, kw in zip(axes[0], nested, strict=True):
            rows = [r for r in sweep if r["K_omega"] == kw]
            ks, ds = sorted({r["K"] for r in rows}), sorted({r["D"] for r in rows})
            grid = np.full((len(ds), len(ks)), np.nan)
            for r in rows:
                grid[ds.index(r["D"]), ks.index(r["K"])] = r["normalized_score"]
            image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
            for (i, j), value in np.ndenumerate(grid):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=8)
            ax.set_xticks(range(len(ks)), ks)
            ax.set_yticks(range(len(ds)), ds)
            ax.set_xlabel("K (particles)")
            ax.set_ylabel("D (depth)")
            ax.set_title(f"{task}: K_omega = {kw}")
            fig.colorbar(image, ax=ax)
        fig.tight_layout()
        fig.savefig(out.with_name(f"{out.stem}-budget-{task}.png"), dpi=120)
        plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--eval-trials", type=int, default=512)
    parser.add_argument("--budget", action="append", default=[], metavar="TASK.AGENT=STEPS",
                        help="environment steps per seed, e.g. gridworld.varibased=500000 "
                             f"(defaults: {BUDGETS})")
    parser.add_argument("--evals", type=int, default=10, help="evaluations per learning curve")
    parser.add_argument("--sweep-trials", type=int, default=256,
                        help="held-out trials per point of the planning-budget sweep")
    parser.add_argument("--smoke", action="store_true", help="minutes, not hours")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.evals < 1:
        parser.error(f"--evals must be >= 1, got {args.evals}")
    if args.sweep_trials < 2:
        parser.error(f"--sweep-trials must be >= 2, got {args.sweep_trials}")
    budgets = {task: dict(per_agent) for task, per_agent in BUDGETS.items()}
    for item in args.budget:
        name, _, raw = item.partition("=")
        task, _, agent = name.partition(".")
        if task not in budgets or agent not in budgets[task] or not raw.isdigit() or int(raw) < 1:
            parser.error(f"--budget {item!r}: expected TASK.AGENT=STEPS with TASK in {TASKS}, "
                         "AGENT in ('varibased', 'rl2') and STEPS a positive integer")
        budgets[task][agent] = int(raw)
    runs = args.out.parent / f"{args.out.stem}-runs"
    start = time.perf_counter()
    results: dict = {}
    for task in args.tasks:
        per_agent = {}
        for agent in ("varibased", "rl2"):
            steps = budgets[task][agent]
            overrides: dict = {}
            eval_trials = args.eval_trials
            if args.smoke:
                steps, eval_trials = 2 * 16 * 60, 32
                overrides = {"num_envs": 16, **({"replay_trials": 32, "batch_trials": 16,
                                                  "num_particles": 4, "depth": 2, "svi_updates": 2}
                                                 if agent == "varibased" else {"num_minibatches": 2})}
            per_agent[agent] = train_bench.run(
                task, agent, seeds=args.seeds, steps=steps, out=args.out, runs=runs,
                eval_every=max(steps // args.evals, 1), eval_trials=eval_trials, overrides=overrides,
                with_ablations=False)
        entry = dict(per_agent)
        for level in ("0.8", "0.9"):
            entry[f"ratio_env_steps_to_{level}"] = _ratio(per_agent["varibased"]["steps_to"][level],
                                                          per_agent["rl2"]["steps_to"][level])
            entry[f"ratio_seconds_to_{level}"] = _ratio(per_agent["varibased"]["seconds_to"][level],
                                                        per_agent["rl2"]["seconds_to"][level])
        trained_nested = per_agent["varibased"]["config"]["num_nested"]
        other_nested = 1 if trained_nested != 1 else 4
        particles, depths = ((1, 4), (1, 2)) if args.smoke else ((1, 4, 16, 64, 256), (1, 2, 4, 8))
        entry["budget_sweep"] = budget_sweep(runs / f"varibased-{task}-seed0", particles, depths,
                                             (trained_nested, other_nested),
                                             32 if args.smoke else args.sweep_trials)
        results[task] = entry
    results["meta"] = {"seconds": time.perf_counter() - start, "command": " ".join(sys.argv),
                       "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                                text=True, cwd=_ROOT).stdout.strip(),
                       "budgets": budgets, "smoke": args.smoke}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    plot(args.out, results)
    for task in args.tasks:
        r = results[task]
        print(f"{task}: steps to 0.9 varibased {r['varibased']['steps_to']['0.9']} rl2 "
              f"{r['rl2']['steps_to']['0.9']} (ratio {r['ratio_env_steps_to_0.9']}); seconds ratio "
              f"{r['ratio_seconds_to_0.9']}; final varibased {r['varibased']['final_normalized_score']} "
              f"rl2 {r['rl2']['final_normalized_score']}")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
