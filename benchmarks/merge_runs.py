"""Summarize run directories trained separately (seeds run in parallel, or runs cut off
by a time limit) into the result JSON of ``benchmarks/train.py``.

    .venv/bin/python benchmarks/merge_runs.py RUN_DIR [RUN_DIR ...] --out FILE

Each RUN_DIR is a directory written by ``varibased train`` / ``benchmarks/train.py`` (its
``config.json`` and ``evaluations.json``); all must hold the same task and agent. Curves are
cut to the evaluations every run reached, so a run stopped early shortens the curve rather
than being extrapolated; ``env_steps`` is the last common evaluation's. Ablations are not
recomputed (``[]``).
"""

from __future__ import annotations

import argparse
import json
import pathlib

_ROOT = pathlib.Path(__file__).resolve().parents[1]

import train as train_bench  # noqa: E402

from varibased.inference import runner, schedule  # noqa: E402


def load_run(run_dir: pathlib.Path) -> dict:
    """``{"config": ..., "evaluations": [...]}`` of one run directory, with a clear error."""
    config_path = run_dir / runner.CONFIG_FILE
    evaluations_path = run_dir / runner.EVALUATIONS_FILE
    for path in (config_path, evaluations_path):
        if not path.is_file():
            raise SystemExit(f"merge_runs: {run_dir} is not a run directory (no {path.name})")
    try:
        config = json.loads(config_path.read_text())
        evaluations = json.loads(evaluations_path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"merge_runs: {run_dir}: unreadable JSON ({error})") from error
    if not evaluations:
        raise SystemExit(f"merge_runs: {run_dir} has no evaluation yet")
    schedule_path = run_dir / schedule.SCHEDULE_FILE  # the budget as extended by resumes
    if schedule_path.is_file():
        config = {**config, "num_env_steps": json.loads(schedule_path.read_text())["num_env_steps"]}
    return {"config": config, "evaluations": evaluations}


def merge(run_dirs: list[pathlib.Path]) -> dict:
    """The train.py-shaped summary of several runs of one task and agent."""
    runs = [load_run(pathlib.Path(d)) for d in run_dirs]
    kinds = {(r["config"]["task"], r["config"]["agent"]) for r in runs}
    if len(kinds) != 1:
        raise SystemExit(f"merge_runs: the runs mix tasks/agents {sorted(kinds)}")
    (task, agent), = kinds
    summary = train_bench.summarize_runs(runs)
    last = [r["evaluations"][len(summary["curve"]["env_steps"]) - 1] for r in runs]
    steps = sum(e["env_steps"] for e in last)
    wall = sum(e["wall_seconds"] for e in last)
    return {
        "task": task, "agent": agent, "seeds": len(runs),
        "seed_values": [r["config"]["seed"] for r in runs],
        "env_steps": summary["curve"]["env_steps"][-1],
        "budget_env_steps": [r["config"]["num_env_steps"] for r in runs],
        "wall_seconds": wall / len(runs),
        "env_steps_per_s": steps / wall if wall > 0 else None,
        **summary,
        "config": runs[0]["config"]["agent_config"],
        "raw_returns": [e["returns"] for e in last],
        "eval_trials": runs[0]["config"]["eval_trials"],
        "ablations": [],
        "run_dirs": [str(d) for d in run_dirs],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    result = merge(args.run_dirs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    train_bench.plot(args.out.with_suffix(".png"), result)
    print(json.dumps({k: result[k] for k in ("task", "agent", "seeds", "env_steps", "env_steps_per_s",
                                             "final_normalized_score", "steps_to", "seconds_to")},
                     indent=2))
    return result


if __name__ == "__main__":
    main()
