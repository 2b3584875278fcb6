"""Matched tuning sweeps: the same number of sweep points, seeds and steps for each agent.

    .venv/bin/python benchmarks/tuning.py --agent rl2 --task gridworld --steps 300000 \\
        --dir results/tuning-rl2 --out results/tuning_rl2.json
    .venv/bin/python benchmarks/tuning.py --agent varibased --task gridworld --steps 300000 \\
        --dir results/tuning-varibased --out results/tuning_varibased.json --point enum --seed 2

Each sweep point is one change from the agent's defaults (``POINTS``; ``baseline`` is the
defaults themselves). Every (point, seed) is one ``benchmarks/train.py`` run stored as
``DIR/POINT-sSEED.json``; a file already there is reused, so sweeps can be run a point or a
seed at a time, on several cores (``--point``, ``--seed``), and summarized at the end. The
summary (JSON + PNG) has, per point, the final normalized score (mean ± s.e. over seeds) and
the env steps to 0.5 / 0.8 / 0.9 of the mean curve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
_ROOT = pathlib.Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import train as train_bench  # noqa: E402

#: agent -> point name -> overrides. Both agents get five changes besides their defaults.
POINTS: dict[str, dict[str, dict]] = {
    "varibased": {
        "baseline": {},
        "vcurrent": {"value_targets": "current"},
        "encstop": {"belief.heads_encoder_gradient": 0.0},
        "symlog": {"belief.value_transform": "symlog"},
        "enum": {"planner.outcome": "enumerate"},
        "trust": {"distill_trust": 1.0},
    },
    "rl2": {
        "baseline": {},
        "lr1e-3": {"learning_rate": 1e-3},
        "ent0.01": {"entropy_coef": 0.01},
        "mb2": {"num_minibatches": 2},
        "epochs8": {"num_epochs": 8},
        "h128": {"encoder.hidden_size": 128},
    },
}


def run_point(agent: str, task: str, name: str, seed: int, *, steps: int, eval_every: int,
              eval_trials: int, directory: pathlib.Path) -> pathlib.Path:
    """Train one (point, seed) unless its JSON exists; return the JSON's path."""
    path = directory / f"{name}-s{seed}.json"
    if path.exists():
        return path
    result = train_bench.run(task, agent, seeds=1, steps=steps, out=path, runs=directory / f"runs-{name}",
                             eval_every=eval_every, eval_trials=eval_trials,
                             overrides=POINTS[agent][name], with_ablations=False, first_seed=seed)
    result["overrides"] = POINTS[agent][name]
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path


def summarize(agent: str, directory: pathlib.Path, names: list[str]) -> list[dict]:
    """One row per point with at least one finished seed."""
    rows = []
    for name in names:
        files = sorted(directory.glob(f"{name}-s*.json"))
        if not files:
            continue
        results = [json.loads(f.read_text()) for f in files]
        curves = [r["curve"] for r in results]
        length = min(len(c["env_steps"]) for c in curves)
        scores = np.array([c["normalized_score_mean"][:length] for c in curves])
        steps = curves[0]["env_steps"][:length]
        mean = scores.mean(0)
        final = scores[:, -1]
        se = float(final.std(ddof=1) / math.sqrt(len(final))) if len(final) > 1 else None
        steps_to = {level: next((int(s) for s, m in zip(steps, mean, strict=True) if m >= float(level)),
                                None) for level in ("0.5", "0.8", "0.9")}
        rows.append({"name": name, "overrides": POINTS[agent][name], "num_seeds": len(files),
                     "seeds": [int(f.stem.rsplit("-s", 1)[1]) for f in files],
                     "final_normalized_score": {"mean": float(final.mean()), "se": se},
                     "steps_to": steps_to, "env_steps": int(steps[-1]),
                     "curve": {"env_steps": steps, "normalized_score_mean": mean.tolist()}})
    return rows


def plot(path: pathlib.Path, agent: str, rows: list[dict]) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for row in rows:
        axes[0].plot(row["curve"]["env_steps"], row["curve"]["normalized_score_mean"], "o-", ms=3,
                     label=f"{row['name']} ({row['num_seeds']} seeds)")
    axes[0].set_xlabel("environment steps")
    axes[0].set_ylabel("normalized score (mean over seeds)")
    axes[0].axhline(1.0, color="k", ls="--", lw=1)
    axes[0].legend(fontsize=7)
    names = [r["name"] for r in rows]
    means = [r["final_normalized_score"]["mean"] for r in rows]
    errors = [2 * (r["final_normalized_score"]["se"] or 0.0) for r in rows]
    axes[1].bar(names, means, yerr=errors, color="tab:blue", alpha=0.7, capsize=3)
    axes[1].set_ylabel("final normalized score (± 2 s.e.)")
    axes[1].tick_params(axis="x", rotation=30)
    fig.suptitle(f"{agent}: tuning sweep")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", required=True, choices=sorted(POINTS))
    parser.add_argument("--task", default="gridworld", choices=sorted(train_bench.FULL_STEPS))
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. SEEDS - 1")
    parser.add_argument("--seed", type=int, action="append", help="run only these seeds")
    parser.add_argument("--point", action="append", help="run only these points")
    parser.add_argument("--eval-every", type=int, default=50_000)
    parser.add_argument("--eval-trials", type=int, default=512)
    parser.add_argument("--dir", type=pathlib.Path, required=True, help="per-(point, seed) results")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--summarize-only", action="store_true", help="train nothing")
    args = parser.parse_args(argv)
    names = list(POINTS[args.agent])
    for name in args.point or []:
        if name not in names:
            parser.error(f"--point {name!r}: unknown for {args.agent}; known: {', '.join(names)}")
    for value, flag in ((args.steps, "--steps"), (args.seeds, "--seeds"), (args.eval_every, "--eval-every"),
                        (args.eval_trials, "--eval-trials")):
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if not args.summarize_only:
        for name in args.point or names:
            for seed in args.seed or range(args.seeds):
                run_point(args.agent, args.task, name, seed, steps=args.steps, eval_every=args.eval_every,
                          eval_trials=args.eval_trials, directory=args.dir)
    rows = summarize(args.agent, args.dir, names)
    result = {"agent": args.agent, "task": args.task, "steps": args.steps, "rows": rows,
              "command": " ".join(sys.argv),
              "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                       cwd=_ROOT).stdout.strip()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(args.out.with_suffix(".png"), args.agent, rows)
    for row in rows:
        final = row["final_normalized_score"]
        se = "" if final["se"] is None else f" ± {final['se']:.3f}"
        print(f"{row['name']:<10s} seeds {row['num_seeds']}  final {final['mean']:.3f}{se}  "
              f"steps to 0.9 {row['steps_to']['0.9']}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
