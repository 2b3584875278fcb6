"""Reference values (floor and ceiling of every normalized score) for all built-in tasks.

    .venv/bin/python benchmarks/references.py --trials 2000 --out results/references.json
    .venv/bin/python benchmarks/references.py --smoke --out /tmp/refs.json

Prints the table, writes the JSON to ``--out`` and a PNG next to it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

from varibased.inference.plotting import format_reference_table, plot_references  # noqa: E402
from varibased.models import registry  # noqa: E402
from varibased.planning.references import compute_references  # noqa: E402

TASKS = ("gridworld", "function_optimization", "bernoulli_bandit")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=2000, help="Monte Carlo trials per agent")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out tasks")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/references.json"))
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run (200 trials)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=registry.names())
    args = parser.parse_args(argv)
    if args.trials < 2:
        parser.error(f"--trials must be >= 2, got {args.trials}")
    trials = 200 if args.smoke else args.trials
    results: dict = {}
    for name in args.tasks:
        start = time.perf_counter()
        results[name] = compute_references(registry.make(name), num_trials=trials, seed=args.seed)
        results[name]["seconds"] = round(time.perf_counter() - start, 2)
    print(format_reference_table(results))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    payload = dict(results)
    payload["meta"] = {"trials": trials, "seed": args.seed, "commit": commit, "command": " ".join(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    png = args.out.with_suffix(".png")
    plot_references(results, str(png))
    print(f"wrote {args.out} and {png}")
    return payload


if __name__ == "__main__":
    main()
