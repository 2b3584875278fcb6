"""The ``varibased`` command line.

    varibased train --task gridworld --agent varibased --steps 200000 --out runs/grid
    varibased train ... --resume                      # continue a run
    varibased evaluate runs/grid --particles 64 --nested 4 --depth 4 --trials 512
    varibased references --task gridworld --task bernoulli_bandit
    varibased train --task mymod:make_task --steps 20000 --out runs/mine   # your own task
    varibased evaluate runs/mine --task mymod:make_task --set planner.outcome=enumerate
    varibased config --task gridworld --agent varibased   # every config field and default
    varibased demo                                    # the README's main job, small budget
    varibased plot runs/a runs/b --out runs/compare.png   # overlay runs (normalized score)

Every input is checked before anything is compiled; errors exit with status 2 and a
message naming the problem, and never overwrite a run. Ctrl-C during training saves the
checkpoint of the last completed iteration, says how to resume, and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Any

__all__ = ["main", "build_parser"]

#: planning-budget flags -> EMConfig fields
_BUDGET_FLAGS = {"particles": "planner.num_particles", "nested": "planner.num_nested",
                 "depth": "planner.depth"}


class CliError(Exception):
    """A user error: printed as ``error: ...`` with exit status 2."""


class CliInterrupted(Exception):
    """Training stopped on Ctrl-C (its checkpoint saved): printed as is, exit status 130."""


#: Environment variable: the default ``--steps`` of ``varibased demo``.
DEMO_STEPS_ENV = "VARIBASED_DEMO_STEPS"
#: Held-out trials of the demo's evaluations (its one reported score is the final one).
DEMO_EVAL_TRIALS = 512
#: the demo's budget: seed 0 of the default scores 0.956 at 4.2e5 steps and 0.972 at 5e5
#: (README, "One evaluation grid for both agents")
DEMO_STEPS = 450_000


def _check_seed(flag: str, value: int) -> None:
    if not 0 <= value < 2**32:
        raise CliError(f"{flag} must be an int in [0, 2**32), got {value}")


def _check_trials(flag: str, value: int) -> None:
    if not 2 <= value < 2**31:
        raise CliError(f"{flag} must be an int in [2, 2**31) (a standard error needs 2 trials), got {value}")


def _check_output(path: str, flag: str, *, directory: bool) -> None:
    from varibased.inference.rundir import RunError, check_output_path

    try:
        check_output_path(path, flag, directory=directory)
    except RunError as error:
        raise CliError(str(error)) from error


def _check_environment() -> None:
    """Parse the environment variables the library reads, before any work."""
    from varibased.models import validation

    for name, minimum in ((DEMO_STEPS_ENV, 1), (validation.MEMORY_LIMIT_ENV, 1)):
        if name in os.environ:
            try:
                validation.parse_count(name, os.environ[name], minimum=minimum, maximum=2**62)
            except ValueError as error:
                raise CliError(f"environment variable {error}") from error


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CliError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _check_task(name: str) -> None:
    """A known id, or an import path whose factory builds a valid task (imported now, with the
    current directory on the import path)."""
    from varibased.inference.runtask import import_from_current_directory
    from varibased.models import registry
    from varibased.models.task import TaskError

    import_from_current_directory(name)
    if registry.is_import_path(name):
        try:
            registry.make(name)
        except TaskError as error:
            raise CliError(str(error)) from error
    elif name not in registry.names():
        raise CliError(f"unknown task {name!r}; known tasks: {', '.join(registry.names())}")


def _budget_overrides(args: argparse.Namespace, agent: str) -> dict[str, Any]:
    given = {field: getattr(args, flag) for flag, field in _BUDGET_FLAGS.items()
             if getattr(args, flag, None) is not None}
    if given and agent != "varibased":
        raise CliError(f"--particles/--nested/--depth are planning budgets of varibased, not of {agent}")
    for field, value in given.items():
        if value < 1:
            flag = next(f for f, v in _BUDGET_FLAGS.items() if v == field)
            raise CliError(f"--{flag} must be >= 1, got {value}")
    return given


def _references(task_name: str, trials: int, seed: int = 0) -> dict[str, Any]:
    from varibased.models.task import TaskError
    from varibased.planning.references import references

    try:
        return references(task_name, num_trials=trials, seed=seed, announce=True)
    except TaskError as error:
        raise CliError(str(error)) from error


def _cmd_train(args: argparse.Namespace) -> int:
    from varibased.inference import checkpoint, runner
    from varibased.inference.runtask import import_from_current_directory
    from varibased.models.task import TaskError

    if args.steps is not None and args.steps < 1:
        raise CliError(f"--steps must be a positive integer, got {args.steps}")
    _check_seed("--seed", args.seed)
    if args.eval_trials is not None:  # flags not given (None) keep a resumed run's schedule
        _check_trials("--eval-trials", args.eval_trials)
    _check_trials("--reference-trials", args.reference_trials)  # --out: runner.run checks it first
    overrides = {**_parse_sets(args.set), **_budget_overrides(args, args.agent)}
    import_from_current_directory(args.task)
    try:
        summary = runner.run(args.task, args.agent, overrides, args.steps, args.out, args.resume,
                             seed=args.seed, eval_every=args.eval_every, eval_trials=args.eval_trials,
                             checkpoint_every=args.checkpoint_every, reference_trials=args.reference_trials,
                             progress=not args.quiet, compile_cache=not args.no_compile_cache)
    except runner.TrainingInterrupted as error:
        raise CliInterrupted(str(error)) from error
    except (runner.RunError, runner.NonFiniteError, checkpoint.CheckpointError, TaskError) as error:
        raise CliError(str(error)) from error
    if summary.get("nothing_to_do"):
        return 0
    print(f"trained {summary['env_steps']} env steps in {summary['wall_seconds']:.1f} s "
          f"({summary['env_steps_per_s']:.0f} steps/s, compile {summary['compile_seconds']:.1f} s); "
          f"final normalized score {summary['final_normalized_score']:.3f}")
    print(f"run directory: {summary['run_dir']} (config.json, metrics.csv, evaluations.json, "
          f"checkpoint.npz, learning_curve.png, trial.png, diagnostics.png)")
    return 0


def _evaluate(run_dir, **kwargs) -> dict[str, Any]:
    from varibased.inference import checkpoint, runner
    from varibased.models.task import TaskError

    try:
        return runner.evaluate_run(run_dir, **kwargs)
    except (runner.RunError, checkpoint.CheckpointError, TaskError) as error:
        raise CliError(str(error)) from error


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from varibased.inference import runner
    from varibased.inference.runtask import import_from_current_directory

    if args.trials < 2:
        raise CliError(f"--trials must be >= 2, got {args.trials}")
    _check_seed("--seed", args.seed)
    if args.json:
        _check_output(args.json, "--json", directory=False)
    try:
        saved = runner.load_run(args.run_dir)
    except runner.RunError as error:
        raise CliError(str(error)) from error
    overrides = {**_evaluation_sets(args.set, saved["agent"]), **_budget_overrides(args, saved["agent"])}
    if args.task is not None:
        import_from_current_directory(args.task)
    result = _evaluate(args.run_dir, trials=args.trials, seed=args.seed, overrides=overrides, task=args.task,
                       progress=True)
    print(f"{saved['agent']} on {saved['task']}: return {result['mean_return']:.3f} ± {result['se']:.3f}, "
          f"normalized score {result['normalized_score']:.3f} ± {result['normalized_score_se']:.3f} "
          f"({args.trials} held-out trials)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _evaluation_sets(items: list[str] | None, agent: str) -> dict[str, Any]:
    """``evaluate --set``: planner fields only (the others would change the trained network)."""
    from varibased.inference.cli_help import evaluation_overrides

    try:
        return evaluation_overrides(agent, _parse_sets(items))
    except ValueError as error:
        raise CliError(str(error)) from error


def _cmd_config(args: argparse.Namespace) -> int:
    """``varibased config --task T --agent A``: every config field with its default for T."""
    from varibased.inference.cli_help import fields_table

    if args.task is not None:
        _check_task(args.task)
    print(fields_table(args.agent, args.task))
    tail = "; evaluate --set takes the planner.* fields" if args.agent == "varibased" else ""
    print(f"\nset any of them with train --set PATH=VALUE{tail}")
    return 0


def _cmd_references(args: argparse.Namespace) -> int:
    from varibased.inference.plotting import format_reference_table, plot_references

    tasks = args.task or ["gridworld"]
    for name in tasks:
        _check_task(name)
    if args.trials < 2:
        raise CliError(f"--trials must be >= 2, got {args.trials}")
    _check_seed("--seed", args.seed)
    _check_output(args.out, "--out", directory=True)
    results = {name: _references(name, args.trials, args.seed) for name in tasks}
    print(format_reference_table(results))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "references.json").write_text(json.dumps(results, indent=2))
    plot_references(results, str(out / "references.png"))
    print(f"wrote {out / 'references.json'} and {out / 'references.png'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from varibased.inference import runner
    from varibased.inference.plotting import format_reference_table, plot_references
    from varibased.inference.runlog import read_evaluations
    from varibased.models import validation

    if args.steps is None:
        args.steps = validation.parse_count(DEMO_STEPS_ENV, os.environ.get(DEMO_STEPS_ENV, str(DEMO_STEPS)),
                                            minimum=1)
    if args.steps < 1:
        raise CliError(f"--steps must be a positive integer, got {args.steps}")
    _check_seed("--seed", args.seed)
    _check_output(args.out, "--out", directory=True)
    refs = _references("gridworld", 2000)
    print("Reference agents on GridNavi (expected return per trial):")
    print(format_reference_table({"gridworld": refs}))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_references({"gridworld": refs}, str(out / "references.png"))
    run_dir = out / "varibased-gridworld"
    # A second `make demo` continues the run it left behind (or says there is nothing to do).
    resume = args.resume or (run_dir / runner.CONFIG_FILE).exists()
    train_args = build_parser().parse_args([
        "train", "--task", "gridworld", "--agent", "varibased", "--steps", str(args.steps),
        "--out", str(run_dir), "--seed", str(args.seed), "--eval-trials", str(DEMO_EVAL_TRIALS),
        *(["--resume"] if resume else []), *(["--no-compile-cache"] if args.no_compile_cache else []),
    ])
    code = _cmd_train(train_args)
    if code:
        return code
    evaluation = read_evaluations(run_dir / runner.EVALUATIONS_FILE)[-1]
    print(f"VariBASeD after {evaluation['env_steps']} env steps: normalized score "
          f"{evaluation['normalized_score']:.3f} ± {evaluation['normalized_score_se']:.3f} "
          f"(random = 0, Bayes-optimal = 1; {len(evaluation['returns'])} held-out trials); "
          f"return {evaluation['mean_return']:.3f} vs Bayes-optimal {refs['reference']['mean']:.3f}")
    print(f"plots: {run_dir}/{{learning_curve,trial,diagnostics}}.png and {out / 'references.png'}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    """``varibased plot RUN [RUN ...] --out FILE.png``: runs overlaid (inference.pictures)."""
    from varibased.inference import pictures, runner

    try:
        out = pictures.plot_runs(args.run_dirs, args.out)
    except runner.RunError as error:
        raise CliError(str(error)) from error
    print(f"wrote {out} ({len(args.run_dirs)} runs: normalized score vs env steps and vs wall-clock)")
    return 0


def _add_plot_command(sub) -> None:
    plot = sub.add_parser("plot", help="overlay runs: normalized score vs env steps and vs wall-clock")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN", help="run directories (varibased train --out)")
    plot.add_argument("--out", required=True, help="the PNG to write, e.g. runs/compare.png")
    plot.set_defaults(func=_cmd_plot)


_TASK_HELP = "task id, or your own task's factory by import path PKG.MOD:FACTORY (from the current directory)"


def build_parser() -> argparse.ArgumentParser:
    from varibased.inference.cli_help import FieldsHelp  # the fields load only when help is asked for

    parser = argparse.ArgumentParser(
        prog="varibased",
        description="Variational Bayes-adaptive SMC planning (VariBASeD) in JAX and NumPyro.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Tasks: gridworld, function_optimization, bernoulli_bandit (and any registered), or your "
               "own by import path PKG.MOD:FACTORY. Agents: varibased, rl2. Config fields: "
               "varibased train --help, varibased config --task T --agent A.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an agent and write a run directory", add_help=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("-h", "--help", action=FieldsHelp, help="show this help, with every config field")
    train.add_argument("--task", required=True, help=_TASK_HELP)
    train.add_argument("--agent", default="varibased", choices=["varibased", "rl2"])
    train.add_argument("--steps", type=int, help="real environment steps (default 100000)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", help="run directory (default runs/AGENT-TASK-seedS)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--eval-every", type=int, help="evaluate every N env steps (default: about 10 "
                       "evaluations, at least one iteration apart; a resume keeps the saved points)")
    train.add_argument("--eval-trials", type=int, help="held-out trials per evaluation (default 512)")
    train.add_argument("--checkpoint-every", type=int, help="iterations between checkpoints (default 10)")
    train.add_argument("--reference-trials", type=int, default=2000, help="trials per reference value")
    train.add_argument("--particles", type=int, help="planner particles K (varibased)")
    train.add_argument("--nested", type=int, help="nested task particles K_omega (varibased)")
    train.add_argument("--depth", type=int, help="planning depth D (varibased)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="any agent config field, e.g. --set learning_rate=3e-4 (repeatable)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a trained run at any planning budget")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--particles", type=int, help="planner particles K")
    evaluate.add_argument("--nested", type=int, help="nested task particles K_omega")
    evaluate.add_argument("--depth", type=int, help="planning depth D")
    evaluate.add_argument("--trials", type=int, default=512)
    evaluate.add_argument("--seed", type=int, default=20_000, help="seed of the held-out tasks")
    evaluate.add_argument("--json", help="also write the result to this JSON file")
    evaluate.add_argument("--task", help="the run's task named again: needed for a custom task "
                          "(PKG.MOD:FACTORY), whose code is imported only when you name it")
    evaluate.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="a planner field, e.g. --set planner.outcome=enumerate (repeatable)")
    evaluate.set_defaults(func=_cmd_evaluate)

    refs = sub.add_parser("references", help="reference agents' returns (random ... Bayes-optimal)")
    refs.add_argument("--task", action="append", help=_TASK_HELP + " (repeatable; default gridworld)")
    refs.add_argument("--out", default="runs/references")
    refs.add_argument("--trials", type=int, default=2000)
    refs.add_argument("--seed", type=int, default=0)
    refs.set_defaults(func=_cmd_references)

    demo = sub.add_parser("demo", help="train VariBASeD on GridNavi at a small budget and evaluate it")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--steps", type=int, help=f"env steps (default ${DEMO_STEPS_ENV} or {DEMO_STEPS})")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--resume", action="store_true")
    demo.set_defaults(func=_cmd_demo)
    _add_plot_command(sub)
    config = sub.add_parser("config", help="list every config field of an agent, with its default for a task")
    config.add_argument("--task", help=_TASK_HELP + " (default: the config classes' own defaults)")
    config.add_argument("--agent", default="varibased", choices=["varibased", "rl2"])
    config.set_defaults(func=_cmd_config)
    for command in (train, evaluate, refs, demo):
        command.add_argument("--no-compile-cache", action="store_true",
                             help="do not use JAX's persistent compilation cache (also: "
                                  "VARIBASED_NO_COMPILE_CACHE=1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    args = build_parser().parse_args(argv)
    try:
        _check_environment()
        from varibased.inference import phases

        phases.set_compile_cache(phases.compile_cache_wanted(getattr(args, "no_compile_cache", False)))
        return args.func(args)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except CliInterrupted as error:
        print(str(error), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted (nothing after the last checkpoint was kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
