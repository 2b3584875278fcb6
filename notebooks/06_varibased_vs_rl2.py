# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — VariBASeD vs RL^2: sample and runtime efficiency
#
# Normalized score (random 0, exact Bayes-optimal 1) against real environment steps and
# against wall-clock, for VariBASeD (EM with Belief-SMC planning) and RL^2 (an S5 recurrent
# actor-critic trained by PPO), on GridNavi.
#
# Two ways to run it:
#
# * **default**: train both agents here at a small budget with `inference.runner.run`
#   (the same evaluation protocol as `varibased train`), then plot;
# * **load results**: set the environment variable `VARIBASED_RESULTS=/path/to/results.json`
#   (e.g. the output of `benchmarks/efficiency.py`) before starting the notebook; nothing
#   is trained. Expected layout: `{TASK: {AGENT: RUNS, ...}, ...}` where `RUNS` is any of
#   - a list of evaluations (as in a run directory's `evaluations.json`): dicts with
#     `env_steps`, `normalized_score` and optionally `wall_seconds`,
#     `wall_seconds_with_compile`, `normalized_score_se`;
#   - a dict with such a list under `"evaluations"`, or a list/dict of per-seed entries
#     under `"seeds"` or `"runs"`;
#   - a dict of parallel arrays `{"env_steps": [...], "normalized_score": [...], ...}`.
#   Other keys (e.g. `"steps_to"`, `"config"`) are ignored; agents without curves are
#   reported and skipped.
#
# `VARIBASED_SMOKE=1` trains each agent for two tiny iterations (the test suite does).

# %%
import json
import os
import pathlib

SMOKE = os.environ.get("VARIBASED_SMOKE") == "1"
RESULTS = os.environ.get("VARIBASED_RESULTS")

import matplotlib.pyplot as plt
from figures import Figures  # notebooks/figures.py: save, then show
import numpy as np
figures = Figures("06_varibased_vs_rl2" + ("_smoke" if SMOKE else ""))  # PNGs under runs/figures/

# %% [markdown]
# ## Loading results (any of the layouts above)

# %%
CURVE_KEYS = ("env_steps", "normalized_score", "normalized_score_se", "wall_seconds",
              "wall_seconds_with_compile")


def _from_evaluations(evaluations: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.array([e.get(key, np.nan) for e in evaluations], float) for key in CURVE_KEYS}


def runs_of(entry) -> list[dict[str, np.ndarray]]:
    """Every learning curve found in one agent's entry (see the layouts above)."""
    if isinstance(entry, list):
        if entry and all(isinstance(e, dict) and "env_steps" in e and "normalized_score" in e for e in entry):
            return [_from_evaluations(entry)]
        return [run for item in entry for run in runs_of(item)]
    if not isinstance(entry, dict):
        return []
    if "evaluations" in entry:
        return runs_of(entry["evaluations"])
    for key in ("seeds", "runs"):
        if key in entry:
            value = entry[key]
            return runs_of(list(value.values()) if isinstance(value, dict) else value)
    if "env_steps" in entry and "normalized_score" in entry and np.ndim(entry["env_steps"]) == 1:
        n = len(entry["env_steps"])
        return [{key: np.asarray(entry.get(key, [np.nan] * n), float) for key in CURVE_KEYS}]
    return []


def load_results(path: str) -> dict[str, dict[str, list[dict]]]:
    """``{task: {agent: [curve, ...]}}`` from a results JSON file."""
    raw = json.loads(pathlib.Path(path).read_text())
    curves: dict[str, dict[str, list[dict]]] = {}
    for task_name, agents_entry in raw.items():
        if not isinstance(agents_entry, dict):
            continue
        for agent_name, entry in agents_entry.items():
            runs = runs_of(entry)
            if runs:
                curves.setdefault(task_name, {})[agent_name] = runs
            else:
                print(f"{path}: no learning curve under {task_name}/{agent_name}; skipped")
    if not curves:
        raise ValueError(f"{path} holds no learning curves in a known layout (see the notebook's top cell)")
    return curves


# %% [markdown]
# ## Train both agents (unless results were given)

# %%
if RESULTS:
    curves = load_results(RESULTS)
else:
    from varibased.inference import agents, runner
    from varibased.models import registry
    from varibased.planning.references import references

    TASK = "gridworld"
    if SMOKE:
        BUDGETS = {"varibased": (2 * 8 * 60, dict(num_envs=8, num_particles=4, num_nested=2, depth=2,
                                                   svi_updates=2, batch_trials=8, replay_trials=16,
                                                   hidden_size=32, state_size=16, head_hidden=32)),
                   "rl2": (2 * 8 * 60, dict(num_envs=8, num_minibatches=2, num_epochs=1, hidden_size=32,
                                            state_size=16, head_size=32))}
        EVAL_TRIALS, EVALUATIONS, REFERENCE_TRIALS = 16, 2, 200
    else:
        BUDGETS = {"varibased": (60_000, {}), "rl2": (60_000, {})}
        EVAL_TRIALS, EVALUATIONS, REFERENCE_TRIALS = 256, 6, 2000
    task = registry.make(TASK)
    refs = references(TASK, num_trials=REFERENCE_TRIALS)
    curves = {TASK: {}}
    run_dirs = []
    for agent_name, (steps, overrides) in BUDGETS.items():
        config = agents.make_config(agent_name, TASK, overrides)
        run_dir = pathlib.Path("runs") / f"06_{agent_name}{'_smoke' if SMOKE else ''}"
        summary = runner.run(TASK, agent_name, overrides, steps, run_dir, resume="auto", seed=0,
                             eval_every=max(steps // EVALUATIONS, 1), eval_trials=EVAL_TRIALS,
                             reference_trials=REFERENCE_TRIALS, progress=not SMOKE)
        run_dir = pathlib.Path(summary["run_dir"])
        print(f"{agent_name}: {summary['env_steps']} env steps in {summary['wall_seconds']:.1f} s "
              f"(+ {summary['compile_seconds']:.1f} s compilation), "
              f"final normalized score {summary['final_normalized_score']:.3f}")
        curves[TASK][agent_name] = runs_of(summary["evaluations"])
        run_dirs.append(run_dir)

# %% [markdown]
# The same overlay straight from the run directories, as `varibased plot RUN RUN --out FILE.png`
# draws it (`inference.pictures.plot_runs`); each run directory also holds
# `learning_curve.png`, `trial.png` (one held-out trial) and `diagnostics.png`.

# %%
if not RESULTS:
    from IPython.display import Image, display

    from varibased.inference.pictures import plot_runs

    overlay = plot_runs(run_dirs, figures.directory / "runs_overlay.png")
    print(f"figure: {overlay}; run directories: {', '.join(map(str, run_dirs))}")
    display(Image(filename=str(overlay)))

# %% [markdown]
# ## Score vs environment steps and vs wall-clock

# %%
for task_name, by_agent in curves.items():
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for color, (agent_name, runs) in zip(plt.cm.tab10.colors, by_agent.items(), strict=False):
        for i, run in enumerate(runs):
            label = agent_name if i == 0 else None
            score, se = run["normalized_score"], np.nan_to_num(run["normalized_score_se"])
            axes[0].plot(run["env_steps"], score, "o-", color=color, ms=3, label=label)
            axes[0].fill_between(run["env_steps"], score - 2 * se, score + 2 * se, color=color, alpha=0.1)
            wall = run["wall_seconds_with_compile"]
            if np.all(np.isnan(wall)):
                wall = run["wall_seconds"]
            if not np.all(np.isnan(wall)):
                axes[1].plot(wall, score, "o-", color=color, ms=3, label=label)
    for ax in axes:
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.axhline(0.0, color="k", ls=":", lw=1)
        ax.legend(fontsize=8)
    axes[0].set_xlabel("real environment steps")
    axes[0].set_ylabel("normalized score (± 2 s.e.)")
    axes[1].set_xlabel("wall-clock seconds (with compilation)")
    fig.suptitle(task_name)
    plt.tight_layout()
    figures.show(f"score_{task_name}")

# %% [markdown]
# ## Steps and seconds to a score level
#
# The first evaluation at which the mean score over seeds reaches the level (runs are
# averaged where they share evaluation steps); `None` if never reached within the budget.

# %%
LEVELS = (0.25, 0.5, 0.8)
for task_name, by_agent in curves.items():
    for agent_name, runs in by_agent.items():
        length = min(len(run["env_steps"]) for run in runs)
        steps = runs[0]["env_steps"][:length]
        mean = np.mean([run["normalized_score"][:length] for run in runs], axis=0)
        wall = np.mean([run["wall_seconds"][:length] for run in runs], axis=0)
        reached = {level: (np.flatnonzero(mean >= level)[:1].tolist() or [None])[0] for level in LEVELS}
        text = ", ".join(f"{level}: " + ("None" if i is None else f"{int(steps[i])} steps / {wall[i]:.0f} s")
                         for level, i in reached.items())
        print(f"{task_name:14s} {agent_name:10s} {len(runs)} seed(s); final score {mean[-1]:.3f}; {text}")
