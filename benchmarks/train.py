"""Full training runs with several seeds, following the evaluation protocol (DESIGN.md).

    .venv/bin/python benchmarks/train.py --task gridworld --agent varibased --out results/train_grid.json
    .venv/bin/python benchmarks/train.py --task gridworld --agent rl2 --seeds 3 --steps 2000000 --out ...
    .venv/bin/python benchmarks/train.py --task bernoulli_bandit --agent varibased --smoke --out /tmp/t.json

Writes the JSON to ``--out`` (learning curves against environment steps and wall-clock,
the final normalized score, env steps/s, steps and seconds to normalized scores 0.5 / 0.8 /
0.9 / 0.95, raw per-trial returns, the ablation table for VariBASeD) and a PNG next to it.
Run directories go under ``--runs`` (default: a folder next to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")
_ROOT = pathlib.Path(__file__).resolve().parents[1]

import jax  # noqa: E402
import numpy as np  # noqa: E402

from varibased.inference import agents, phases, runner  # noqa: E402
from varibased.models import registry  # noqa: E402
from varibased.planning.model import exact_model  # noqa: E402
from varibased.planning.planner_agent import run_planner_trials  # noqa: E402
from varibased.planning.references import normalized_scores, references  # noqa: E402

LEVELS = ("0.5", "0.8", "0.9", "0.95")
#: default full budgets (real environment steps per seed)
FULL_STEPS = {"gridworld": 2_000_000, "function_optimization": 1_000_000, "bernoulli_bandit": 300_000}


def _level_hits(curve_steps, curve_seconds, mean_scores):
    steps_to, seconds_to = {}, {}
    for level in LEVELS:
        hit = next((i for i, s in enumerate(mean_scores) if s >= float(level)), None)
        steps_to[level] = None if hit is None else int(curve_steps[hit])
        seconds_to[level] = None if hit is None else float(curve_seconds[hit])
    return steps_to, seconds_to


def summarize_runs(per_seed: list[dict]) -> dict:
    """Mean curves over seeds and the steps/seconds to each level (first evaluation at which
    the mean over seeds reaches it; ``None`` where never reached). Where the runs were
    evaluated on a grid of points (``eval_at``), steps to a level is the grid point, and the
    curve keeps both the points and the env steps at which each evaluation happened."""
    num_evals = min(len(s["evaluations"]) for s in per_seed)
    actual = [per_seed[0]["evaluations"][i]["env_steps"] for i in range(num_evals)]
    steps = [per_seed[0]["evaluations"][i].get("eval_at", actual[i]) for i in range(num_evals)]
    scores = np.array([[s["evaluations"][i]["normalized_score"] for i in range(num_evals)] for s in per_seed])
    seconds = np.array([[s["evaluations"][i]["wall_seconds"] for i in range(num_evals)] for s in per_seed])
    seconds_c = np.array([[s["evaluations"][i]["wall_seconds_with_compile"] for i in range(num_evals)]
                          for s in per_seed])
    mean_scores = scores.mean(0)
    steps_to, seconds_to = _level_hits(steps, seconds.mean(0), mean_scores)
    final = scores[:, -1]
    se = float(final.std(ddof=1) / math.sqrt(len(final))) if len(final) > 1 else \
        float(per_seed[0]["evaluations"][-1]["normalized_score_se"])
    return {
        "curve": {"env_steps": actual, "eval_at": steps, "normalized_score_mean": mean_scores.tolist(),
                  "normalized_score_per_seed": scores.tolist(),
                  "wall_seconds_mean": seconds.mean(0).tolist(),
                  "wall_seconds_with_compile_mean": seconds_c.mean(0).tolist()},
        "final_normalized_score": {"mean": float(final.mean()), "se": se},
        "steps_to": steps_to, "seconds_to": seconds_to,
    }


def ablations(task_name: str, run_dir: pathlib.Path, config, trials: int, seed: int) -> list[dict]:
    """VariBASeD at several test-time budgets, without belief updates in imagination, with
    enumerated outcomes (categorical rewards), the distilled policy alone (K = 1), and the
    exact-model planner at the training budget."""
    K, Kw, D = config.planner.num_particles, config.planner.num_nested, config.planner.depth
    rows = []
    budgets = [("policy alone (K=1)", {"num_particles": 1}),
               ("learned planner, training budget", {}),
               ("learned planner, K=4 D=2", {"num_particles": 4, "depth": 2}),
               ("learned planner, K=64", {"num_particles": 64}),
               ("learned planner, no belief update in imagination",
                {"belief_update_in_imagination": False})]
    task = registry.make(task_name)
    if task.categorical_rewards and config.planner.outcome != "enumerate":
        budgets += [("learned planner, enumerated outcomes", {"outcome": "enumerate"}),
                    ("learned planner, enumerated outcomes, K=64",
                     {"outcome": "enumerate", "num_particles": 64})]
    for name, budget in budgets:
        result = runner.evaluate_run(run_dir, trials=trials, seed=seed, overrides=budget)
        cfg = result["config"]["planner"]
        rows.append({"name": name, "K": cfg["num_particles"], "K_omega": cfg["num_nested"],
                     "D": cfg["depth"], "normalized_score": result["normalized_score"],
                     "se": result["normalized_score_se"]})
    if task.has_exact_belief and task.optimal_value is not None:
        planner = config.planner_config(evaluation=True)
        trajectory = run_planner_trials(jax.random.key(seed), task, exact_model(task), planner, trials)
        returns = np.asarray(trajectory.transitions.reward.sum(-1), np.float64)
        score, se = normalized_scores(returns, references(task_name))
        rows.append({"name": "exact-model planner, training budget", "K": K, "K_omega": Kw, "D": D,
                     "normalized_score": score, "se": se})
    return rows


def plot(path: pathlib.Path, result: dict) -> None:
    import matplotlib.pyplot as plt

    curve = result["curve"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, x, label in ((axes[0], curve["env_steps"], "environment steps"),
                         (axes[1], curve["wall_seconds_mean"], "wall-clock seconds (no compile)")):
        for seed_scores in curve["normalized_score_per_seed"]:
            ax.plot(x, seed_scores, color="tab:blue", alpha=0.3, lw=1)
        ax.plot(x, curve["normalized_score_mean"], "o-", color="tab:blue", label=result["agent"])
        for level, style in ((0.0, ":"), (1.0, "--")):
            ax.axhline(level, color="k", ls=style, lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("normalized score (0 random, 1 R_ref)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['agent']} on {result['task']} ({result['seeds']} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(task_name: str, agent: str, *, seeds: int, steps: int, out: pathlib.Path, runs: pathlib.Path,
        eval_trials: int, overrides: dict, eval_every: int | None = None,
        eval_at: list[int] | None = None, with_ablations: bool = True,
        progress: bool = True, first_seed: int = 0) -> dict:
    """Train ``seeds`` seeds (``first_seed, first_seed + 1, ...``) and summarize (the result
    dict of the interface). Evaluations every ``eval_every`` env steps, or at the points
    ``eval_at``."""
    config = agents.make_config(agent, task_name, overrides)
    refs = references(task_name)
    per_seed = []
    for seed in range(first_seed, first_seed + seeds):
        run_dir = runs / f"{agent}-{task_name}-seed{seed}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        per_seed.append(runner.run(task_name, agent, overrides, steps, run_dir, seed=seed,
                                   eval_every=eval_every, eval_at=eval_at, eval_trials=eval_trials,
                                   progress=progress))
    summary = summarize_runs(per_seed)
    total_steps = sum(s["env_steps"] for s in per_seed)
    total_wall = sum(s["wall_seconds"] for s in per_seed)
    result = {
        "task": task_name, "agent": agent, "seeds": seeds, "env_steps": steps,
        "wall_seconds": total_wall / seeds,
        "compile_seconds": float(np.mean([s["compile_seconds"] for s in per_seed])),
        "compile_cache": phases.compile_cache_wanted(),  # a warm persistent cache shortens compiles
        "env_steps_per_s": total_steps / total_wall,
        **summary,
        "config": agents.config_to_json(config),
        "references": {k: refs[k] for k in ("random", "reference")},
        "raw_returns": [s["evaluations"][-1]["returns"] for s in per_seed],
        "eval_trials": eval_trials,
    }
    if agent == "varibased" and with_ablations:
        result["ablations"] = ablations(task_name, runs / f"{agent}-{task_name}-seed{first_seed}", config,
                                        eval_trials, seed=30_000)
    else:
        result["ablations"] = []
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(FULL_STEPS))
    parser.add_argument("--agent", default="varibased", choices=sorted(agents.AGENTS))
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (a count)")
    parser.add_argument("--steps", type=int, help="env steps per seed (default: the full budget)")
    parser.add_argument("--eval-every", type=int, help="env steps between evaluations")
    parser.add_argument("--eval-trials", type=int, default=512)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--runs", type=pathlib.Path, help="where run directories go")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="agent config overrides")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are FIRST_SEED .. FIRST_SEED + SEEDS - 1 (to run seeds in parallel)")
    parser.add_argument("--no-ablations", action="store_true", help="skip the ablation table")
    parser.add_argument("--smoke", action="store_true", help="a minutes-long run")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.first_seed < 0:
        parser.error(f"--first-seed must be >= 0, got {args.first_seed}")
    overrides = {}
    for item in args.set or []:
        key, _, raw = item.partition("=")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    steps = args.steps or FULL_STEPS[args.task]
    eval_trials = args.eval_trials
    if args.smoke:
        steps, eval_trials = min(steps, 4 * 16 * 60), 64
        overrides = {"num_envs": 16, **({"replay_trials": 64, "batch_trials": 16, "num_particles": 4,
                                          "depth": 2, "svi_updates": 2} if args.agent == "varibased"
                                         else {"num_minibatches": 2}), **overrides}
    if steps < 1:
        parser.error(f"--steps must be >= 1, got {steps}")
    eval_every = args.eval_every or max(steps // 10, 1)
    runs = args.runs or args.out.parent / f"{args.out.stem}-runs"
    start = time.perf_counter()
    result = run(args.task, args.agent, seeds=args.seeds, steps=steps, out=args.out, runs=runs,
                 eval_every=eval_every, eval_trials=eval_trials, overrides=overrides,
                 with_ablations=not args.no_ablations, first_seed=args.first_seed)
    result["benchmark_seconds"] = time.perf_counter() - start
    result["command"] = " ".join(sys.argv)
    result["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                      cwd=_ROOT).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(args.out.with_suffix(".png"), result)
    print(json.dumps({k: result[k] for k in ("task", "agent", "seeds", "env_steps", "env_steps_per_s",
                                             "final_normalized_score", "steps_to", "seconds_to")},
                     indent=2))
    for row in result["ablations"]:
        print(f"  {row['name']:<52s} K={row['K']:<4d} K_omega={row['K_omega']:<3d} D={row['D']:<2d} "
              f"score {row['normalized_score']:.3f} ± {row['se']:.3f}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
