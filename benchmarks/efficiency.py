"""VariBASeD vs RL^2: sample efficiency, runtime efficiency and planning-budget scaling.

    .venv/bin/python benchmarks/efficiency.py --tasks gridworld --seeds 3 --out results/efficiency.json
    .venv/bin/python benchmarks/efficiency.py --out /tmp/eff.json --smoke             # minutes
    .venv/bin/python benchmarks/efficiency.py --sweep-runs RUN0 RUN1 RUN2 --out sweep.json

For each task, trains both agents with ``--seeds`` seeds each in one invocation, every agent
evaluated at the SAME environment-step points: the evaluation grid ``eval_grid``, log-spaced
from 1e4 with ``--per-decade`` points per decade up to each agent's budget (a run evaluates at
the first iteration boundary at or after each point and records both numbers), on the same
``--eval-trials`` held-out trials. ``steps_to`` a level is the first grid point at which the
mean over seeds reaches it. Writes, per task: both agents' ``benchmarks/train.py`` results
(learning curves vs environment steps and wall-clock), the ratios VariBASeD / RL^2 of
environment steps and of wall-clock to reach normalized scores 0.8 and 0.9 (``None`` where
either agent did not reach the level within its budget), and the test-time planning-budget
sweep of the trained VariBASeD agents of every seed over K at the trained K_omega and D
(mean ± s.e. over seeds, ``num_seeds`` per row). JSON + PNGs (curves; the budget sweep).
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
from varibased.inference.schedule import log_grid  # noqa: E402

TASKS = ("gridworld", "function_optimization")
#: default budgets (environment steps per seed); RL^2 gets up to VariBAD's 2e7 on GridNavi
BUDGETS = {"gridworld": {"varibased": 1_000_000, "rl2": 20_000_000},
           "function_optimization": {"varibased": 500_000, "rl2": 5_000_000}}


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


#: test-time numbers of particles of the budget sweep
SWEEP_PARTICLES = (1, 4, 16, 64, 256)


def budget_sweep(run_dirs: list[pathlib.Path], particles, trials: int) -> list[dict]:
    """Normalized score of the trained runs at every K (trained K_omega and D): mean ± s.e.
    over the runs (seeds), each on the same ``trials`` held-out trials."""
    rows = []
    for i, num_particles in enumerate(particles, 1):
        start = time.perf_counter()
        per_seed = [runner.evaluate_run(run_dir, trials=trials, seed=40_000,
                                        overrides={"planner.num_particles": num_particles})
                    for run_dir in run_dirs]
        scores = np.array([r["normalized_score"] for r in per_seed])
        planner = per_seed[0]["config"]["planner"]
        se = (float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1
              else float(per_seed[0]["normalized_score_se"]))
        rows.append({"K": num_particles, "K_omega": planner["num_nested"], "D": planner["depth"],
                     "normalized_score": float(scores.mean()), "se": se, "num_seeds": len(scores),
                     "per_seed": scores.tolist()})
        print(f"budget sweep {i}/{len(particles)}: K={num_particles} score {scores.mean():.3f} ± {se:.3f} "
              f"over {len(scores)} seeds ({time.perf_counter() - start:.0f} s)", flush=True)
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
    sweeps = [t for t in tasks if results[t].get("budget_sweep")]
    if not sweeps:
        return
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.8 * len(sweeps), 3.6), squeeze=False)
    for ax, task in zip(axes[0], sweeps, strict=True):
        rows = results[task]["budget_sweep"]
        ax.errorbar([r["K"] for r in rows], [r["normalized_score"] for r in rows],
                    yerr=[2 * r["se"] for r in rows], fmt="o-", capsize=3, color="tab:blue",
                    label=f"VariBASeD ({rows[0]['num_seeds']} seeds, ± 2 s.e.)")
        ax.set_xscale("log", base=4)
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_xlabel(f"K (particles), K_omega = {rows[0]['K_omega']}, D = {rows[0]['D']}")
        ax.set_ylabel("normalized score")
        ax.set_title(f"{task}: planning budget")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_name(f"{out.stem}-budget.png"), dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--eval-trials", type=int, default=504,
                        help="held-out trials per evaluation, the same for every agent")
    parser.add_argument("--budget", action="append", default=[], metavar="TASK.AGENT=STEPS",
                        help="environment steps per seed, e.g. gridworld.varibased=500000 "
                             f"(defaults: {BUDGETS})")
    parser.add_argument("--per-decade", type=int, default=8,
                        help="evaluation points per decade of the shared grid (from 1e4)")
    parser.add_argument("--sweep-trials", type=int, default=504,
                        help="held-out trials per point of the planning-budget sweep")
    parser.add_argument("--smoke", action="store_true", help="minutes, not hours")
    parser.add_argument("--sweep-runs", nargs="+", type=pathlib.Path, metavar="RUN",
                        help="only the planning-budget sweep, on these trained VariBASeD runs")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.per_decade < 1:
        parser.error(f"--per-decade must be >= 1, got {args.per_decade}")
    if args.sweep_trials < 2:
        parser.error(f"--sweep-trials must be >= 2, got {args.sweep_trials}")
    if args.sweep_runs:
        missing = [str(r) for r in args.sweep_runs if not (r / "config.json").is_file()]
        if missing:
            parser.error(f"--sweep-runs: not a run directory: {', '.join(missing)}")
        rows = budget_sweep(args.sweep_runs, SWEEP_PARTICLES, args.sweep_trials)
        result = {"budget_sweep": rows, "runs": [str(r) for r in args.sweep_runs],
                  "command": " ".join(sys.argv)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
        return result
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
        grid = log_grid(10_000, max(budgets[task].values()), args.per_decade)
        if args.smoke:
            grid = [960, 1920]
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
                eval_at=[point for point in grid if point <= steps], eval_trials=eval_trials,
                overrides=overrides, with_ablations=False)
        entry = {**per_agent, "eval_grid": grid}
        for level in ("0.8", "0.9"):
            entry[f"ratio_env_steps_to_{level}"] = _ratio(per_agent["varibased"]["steps_to"][level],
                                                          per_agent["rl2"]["steps_to"][level])
            entry[f"ratio_seconds_to_{level}"] = _ratio(per_agent["varibased"]["seconds_to"][level],
                                                        per_agent["rl2"]["seconds_to"][level])
        run_dirs = [runs / f"varibased-{task}-seed{seed}" for seed in range(args.seeds)]
        entry["budget_sweep"] = budget_sweep(run_dirs, (1, 4) if args.smoke else SWEEP_PARTICLES,
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
