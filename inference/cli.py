"""The ``varibased`` command line.

    varibased demo                      # the README's main job on a small budget
    varibased references --task gridworld
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

__all__ = ["main"]


def _cmd_references(args: argparse.Namespace) -> int:
    from inference.plotting import format_reference_table, plot_references
    from models import registry
    from planning.references import references

    tasks = args.task or ["gridworld"]
    unknown = [t for t in tasks if t not in registry.names()]
    if unknown:
        print(f"error: unknown task {unknown[0]!r}; known tasks: {', '.join(registry.names())}",
              file=sys.stderr)
        return 2
    results = {name: references(name, num_trials=args.trials, seed=args.seed) for name in tasks}
    print(format_reference_table(results))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "references.json").write_text(json.dumps(results, indent=2))
    plot_references(results, str(out / "references.png"))
    print(f"wrote {out / 'references.json'} and {out / 'references.png'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    args.task = ["gridworld"]
    return _cmd_references(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varibased",
        description="Variational Bayes-adaptive SMC planning (VariBASeD) in JAX and NumPyro.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job on a small default budget and plot it")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument("--trials", type=int, default=2000, help="Monte Carlo trials per reference")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    refs = sub.add_parser("references", help="reference agents' returns (random ... Bayes-optimal)")
    refs.add_argument("--task", action="append", help="task id (repeatable; default gridworld)")
    refs.add_argument("--out", default="runs/references")
    refs.add_argument("--trials", type=int, default=2000)
    refs.add_argument("--seed", type=int, default=0)
    refs.set_defaults(func=_cmd_references)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    args = build_parser().parse_args(argv)
    if getattr(args, "trials", 2) < 2:
        print(f"error: --trials must be >= 2, got {args.trials}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
