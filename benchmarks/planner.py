"""Belief-SMC planner benchmark: throughput, test-time scaling, the over-greedy effect.

    .venv/bin/python benchmarks/planner.py --out results/planner.json            # ~20 min
    .venv/bin/python benchmarks/planner.py --out /tmp/planner.json --smoke       # < 1 min

(a) **Throughput** of one planning call for ``B`` environments (jit, vmap over
    environments): particle-steps/s ``B K D / s`` and nested evaluations/s
    ``B K K_omega D / s``, compile time separate, on the LEARNED model (S5 belief with
    untrained parameters: speed does not depend on training) when it can be built, else on
    the exact GridNavi model (the JSON's ``model`` says which; the exact model is timed too,
    under ``throughput_exact``). K, K_omega and D are varied one at a time around
    (64, 4, 4); a least-squares line per axis checks that the cost is linear in each.
    Beside it, the bare S5 encoder step rate at batch ``B K`` (the floor of the planner's
    per-particle cost). Times are the fastest of several calls (other processes share the
    CPU).
(b) **Test-time scaling** on the exact model (exact posterior, true dynamics, QMDP value):
    normalized score (``planning.references``) on GridNavi, function optimization and the
    Bernoulli bandit for a grid of budgets (K, K_omega, D), argmax actions.
(c) **Over-greedy sweep**: GridNavi score vs K at fixed D (K up to 1024), with argmax and
    with sampled actions.

Writes the JSON to ``--out`` and a PNG next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from varibased.models import registry, s5  # noqa: E402
from varibased.planning import baselines, smc  # noqa: E402
from varibased.planning.config import PlannerConfig  # noqa: E402
from varibased.planning.model import exact_model  # noqa: E402
from varibased.planning.planner_agent import run_planner_trials  # noqa: E402
from varibased.planning.references import normalized_scores, references  # noqa: E402

CENTER = (64, 4, 4)
AXES_FULL = {"K": (4, 16, 64, 256), "K_omega": (1, 4, 16), "D": (1, 2, 4, 8)}
AXES_SMOKE = {"K": (), "K_omega": (), "D": ()}
SCORE_GRID_FULL = {  # (K, K_omega, D[, value]); the value is "qmdp" unless named
    "gridworld": [(1, 1, 1), (16, 4, 4), (64, 4, 1), (64, 4, 4), (64, 4, 8), (256, 4, 2),
                  (256, 4, 4), (64, 4, 8, "zero")],
    "function_optimization": [(1, 1, 1), (4, 4, 2), (16, 4, 2), (64, 4, 2), (256, 4, 2),
                              (64, 4, 2, "zero")],
    "bernoulli_bandit": [(1, 1, 1), (4, 4, 4), (16, 4, 4), (64, 1, 4)],
}
SCORE_GRID_SMOKE = {
    "gridworld": [(16, 4, 2)],
    "function_optimization": [(4, 2, 1)],
    "bernoulli_bandit": [(4, 2, 1)],
}
GREEDY_FULL = {"K": (1, 4, 16, 64, 256, 1024), "D": 4}
GREEDY_SMOKE = {"K": (16,), "D": 2}


def _best_time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def _learned_model(task):
    """The learned planning model with untrained parameters, or ``(None, reason)``."""
    try:
        from varibased.models import belief as belief_lib
        from varibased.planning.learned_model import learned_model

        config = belief_lib.BeliefConfig()
        params = belief_lib.init_params(jax.random.key(0), task, config)
        model = learned_model(task, config, params)
        root = model.init(jax.random.key(0))
        jax.eval_shape(lambda k: smc.plan(k, model, root, PlannerConfig(4, 2, 2)).policy,
                       jax.random.key(0))
        return model, None
    except Exception as error:  # noqa: BLE001 - any failure means "not available yet"
        return None, f"{type(error).__name__}: {error}"


def time_planner(model, num_envs: int, config: PlannerConfig, repeats: int) -> dict[str, Any]:
    """Compile time and throughput of one planning call for ``num_envs`` roots."""
    roots = jax.vmap(model.init)(jax.random.split(jax.random.key(0), num_envs))
    keys = jax.random.split(jax.random.key(1), num_envs)
    fn = jax.jit(jax.vmap(lambda k, r: smc.plan(k, model, r, config).policy))
    start = time.perf_counter()
    compiled = fn.lower(keys, roots).compile()
    compile_seconds = time.perf_counter() - start
    seconds = _best_time(compiled, keys, roots, repeats=repeats)
    K, Ko, D = config.num_particles, config.num_nested, config.depth
    return {
        "K": K, "K_omega": Ko, "D": D, "B": num_envs,
        "seconds_per_call": seconds,
        "particle_steps_per_s": num_envs * K * D / seconds,
        "evals_per_s": num_envs * K * Ko * D / seconds,
        "compile_seconds": compile_seconds,
    }


def throughput_sweep(model, num_envs: int, axes: dict, repeats: int) -> list[dict[str, Any]]:
    configs = {CENTER}
    for axis, values in axes.items():
        index = ("K", "K_omega", "D").index(axis)
        for v in values:
            point = list(CENTER)
            point[index] = v
            configs.add(tuple(point))
    rows = []
    for K, Ko, D in sorted(configs):
        row = time_planner(model, num_envs, PlannerConfig(num_particles=K, num_nested=Ko, depth=D),
                           repeats)
        print(f"  K={K:4d} K_omega={Ko:2d} D={D}: {row['seconds_per_call'] * 1e3:8.2f} ms, "
              f"{row['particle_steps_per_s']:.3g} particle-steps/s, compile "
              f"{row['compile_seconds']:.1f} s", flush=True)
        rows.append(row)
    return rows


def time_trial(task, model, num_envs: int, config: PlannerConfig, repeats: int) -> dict[str, Any]:
    """Wall-clock of whole trials with the planner in the loop (one jitted call)."""
    from varibased.models import rollout
    from varibased.planning.planner_agent import make_planner_agent

    agent = make_planner_agent(model, config)
    fn = jax.jit(lambda k: rollout.run_trials(k, task, agent, num_envs).transitions.reward)
    key = jax.random.key(2)
    start = time.perf_counter()
    compiled = fn.lower(key).compile()
    compile_seconds = time.perf_counter() - start
    seconds = _best_time(compiled, key, repeats=repeats)
    return {"K": config.num_particles, "K_omega": config.num_nested, "D": config.depth,
            "B": num_envs, "trial_length": task.trial_length, "seconds": seconds,
            "env_steps_per_s": num_envs * task.trial_length / seconds,
            "compile_seconds": compile_seconds}


def linear_fits(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares ``seconds = a + b x`` along each axis through the centre point."""
    fits = {}
    for index, axis in enumerate(("K", "K_omega", "D")):
        others = [i for i in range(3) if i != index]
        keys = ("K", "K_omega", "D")
        line = [r for r in rows if all(r[keys[i]] == CENTER[i] for i in others)]
        if len(line) < 3:
            continue
        x = np.array([r[axis] for r in line], np.float64)
        y = np.array([r["seconds_per_call"] for r in line], np.float64)
        slope, intercept = np.polyfit(x, y, 1)
        pred = intercept + slope * x
        r2 = 1.0 - np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-30)
        fits[axis] = {"points": [[float(a), float(b)] for a, b in zip(x, y, strict=True)],
                      "slope_seconds": float(slope), "intercept_seconds": float(intercept),
                      "r2": float(r2),
                      "max_relative_deviation": float(np.max(np.abs(y - pred) / y))}
    return fits


def bare_s5_rate(task, batch: int, repeats: int, num_steps: int = 32,
                 encoder: s5.EncoderConfig | None = None) -> dict[str, Any]:
    """Steps/s of the bare S5 encoder step at ``batch``: ``encoder`` (e.g. the learned
    belief's, ``history.encoder_config``), by default 1 layer, P=32, H=64, linear embedding."""
    config = encoder or s5.EncoderConfig(input_dim=task.obs_dim + task.num_actions + 2)
    params = s5.encoder_init(jax.random.key(0), config)
    carry = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch,) + x.shape),
                         s5.encoder_initial_carry(config))
    inputs = jax.random.normal(jax.random.key(1), (num_steps, batch, config.input_dim))

    @jax.jit
    def run(carry, inputs):
        def body(c, x):
            c, y = jax.vmap(lambda ci, xi: s5.encoder_step(params, ci, xi))(c, x)
            return c, y.sum()

        return jax.lax.scan(body, carry, inputs)

    seconds = _best_time(run, carry, inputs, repeats=repeats)
    return {"batch": batch, "seconds_per_step": seconds / num_steps,
            "steps_per_s": batch * num_steps / seconds}


def score_point(task_id: str, task, model, refs, K: int, Ko: int, D: int, num_trials: int,
                action: str = "argmax", seed: int = 0, value: str = "qmdp") -> dict[str, Any]:
    config = PlannerConfig(num_particles=K, num_nested=Ko, depth=D, alpha=0.1,
                           action_selection=action)
    start = time.perf_counter()
    trajectory = run_planner_trials(jax.random.key(seed), task, model, config, num_trials)
    returns = np.asarray(trajectory.transitions.reward, np.float64).sum(-1)
    score, se = normalized_scores(returns, refs)
    row = {"task": task_id, "K": K, "K_omega": Ko, "D": D, "action": action, "value": value,
           "normalized_score": score, "se": se, "mean_return": float(returns.mean()),
           "return_se": float(returns.std(ddof=1) / math.sqrt(len(returns))),
           "trials": num_trials, "seconds": time.perf_counter() - start}
    print(f"  {task_id:22s} K={K:4d} K_omega={Ko:2d} D={D} {action:6s} V={value}: score "
          f"{score:.3f} +- {se:.3f} (return {row['mean_return']:.2f}) [{row['seconds']:.0f} s]",
          flush=True)
    return row


def _references(task_id: str, task, num_trials: int, seed: int, smoke: bool) -> dict[str, Any]:
    """``planning.references`` (in smoke runs of a task with slow baselines: random/oracle)."""
    if smoke and task.bayes_optimal_value is None and baselines.has_baselines(task):
        from varibased.models.rollout import evaluate
        from varibased.planning import reference_agents

        key = jax.random.key(seed)
        low = evaluate(key, task, reference_agents.random_agent(task), num_trials)
        high = evaluate(key, task, reference_agents.oracle_agent(task), num_trials)
        return {"random": low.as_dict(), "oracle": high.as_dict(),
                "reference": {"agent": "oracle (smoke run only)", "mean": high.mean,
                              "exact": False}}
    return references(task_id, num_trials=num_trials, seed=seed)


def plot(payload: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for index, axis in enumerate(("K", "K_omega", "D")):
        keys = ("K", "K_omega", "D")
        others = [i for i in range(3) if i != index]
        line = sorted((r for r in payload["throughput"]
                       if all(r[keys[i]] == CENTER[i] for i in others)), key=lambda r: r[axis])
        if len(line) > 1:
            ax.plot([r[axis] for r in line], [r["seconds_per_call"] * 1e3 for r in line], "o-",
                    label=f"vary {axis} (others at {CENTER})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("K, K_omega or D")
    ax.set_ylabel(f"ms per planning call (B={payload['num_envs']})")
    ax.set_title(f"throughput ({payload['model']} model)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax = axes[1]
    for task_id, rows in payload["exact_model"].items():
        rows = [r for r in rows if r.get("value", "qmdp") == "qmdp"]
        budgets = [r["K"] * r["K_omega"] * r["D"] for r in rows]
        order = np.argsort(budgets)
        ax.errorbar(np.array(budgets)[order], np.array([r["normalized_score"] for r in rows])[order],
                    yerr=np.array([r["se"] for r in rows])[order], fmt="o-", label=task_id,
                    capsize=2)
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("budget K x K_omega x D")
    ax.set_ylabel("normalized score")
    ax.set_title("exact model, QMDP value: test-time scaling (argmax)")
    ax.legend(fontsize=7)
    ax = axes[2]
    for action in ("argmax", "sample"):
        rows = [r for r in payload["greedy_sweep"] if r["action"] == action]
        if rows:
            ax.errorbar([r["K"] for r in rows], [r["normalized_score"] for r in rows],
                        yerr=[r["se"] for r in rows], fmt="o-", label=action, capsize=2)
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K")
    ax.set_ylabel("normalized score")
    ax.set_title(f"GridNavi, D={payload['greedy_depth']}: score vs K")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/planner.json"))
    parser.add_argument("--smoke", action="store_true", help="a run of under a minute")
    parser.add_argument("--trials", type=int, default=256, help="trials per score point")
    parser.add_argument("--envs", type=int, default=64, help="B, environments per planning call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per throughput point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["throughput", "scores", "greedy"], help="sections to skip")
    args = parser.parse_args(argv)
    if args.trials < 2 or args.envs < 1 or args.repeats < 1:
        parser.error("--trials must be >= 2, --envs and --repeats >= 1")
    smoke = args.smoke
    trials = 32 if smoke else args.trials
    repeats = 2 if smoke else args.repeats
    ref_trials = 200 if smoke else 2000
    payload: dict[str, Any] = {"num_envs": args.envs, "smoke": smoke, "throughput": [],
                               "exact_model": {}, "greedy_sweep": []}
    start = time.perf_counter()

    tasks = {task_id: registry.make(task_id) for task_id in SCORE_GRID_FULL}
    models: dict[Any, Any] = {task_id: exact_model(task) for task_id, task in tasks.items()}
    gridworld, exact = tasks["gridworld"], models["gridworld"]
    learned, reason = _learned_model(gridworld)
    payload["model"] = "learned" if learned is not None else "exact"
    if learned is None:
        payload["learned_model_unavailable"] = reason
    if "throughput" not in args.skip:
        axes = AXES_SMOKE if smoke else AXES_FULL
        print(f"throughput on the {payload['model']} GridNavi model, B={args.envs}", flush=True)
        payload["throughput"] = throughput_sweep(learned or exact, args.envs, axes, repeats)
        payload["linear_fit"] = linear_fits(payload["throughput"])
        if learned is not None and not smoke:
            print("throughput on the exact GridNavi model", flush=True)
            payload["throughput_exact"] = throughput_sweep(exact, args.envs, axes, repeats)
            payload["linear_fit_exact"] = linear_fits(payload["throughput_exact"])
        trial = time_trial(gridworld, learned or exact, args.envs,
                           PlannerConfig(num_particles=16, num_nested=4, depth=4),
                           1 if smoke else 3)
        payload["trial"] = trial
        print(f"whole {gridworld.trial_length}-step trials, B={args.envs}, (16, 4, 4): "
              f"{trial['seconds']:.3f} s ({trial['env_steps_per_s']:.0f} env steps/s), compile "
              f"{trial['compile_seconds']:.1f} s", flush=True)
        bare = bare_s5_rate(gridworld, args.envs * CENTER[0], repeats)
        payload["bare_s5"] = bare
        payload["bare_s5_steps_per_s"] = bare["steps_per_s"]
        center = next(r for r in payload["throughput"]
                      if (r["K"], r["K_omega"], r["D"]) == CENTER)
        payload["center"] = dict(center)
        payload["center"]["ratio_to_bare_s5"] = center["particle_steps_per_s"] / bare["steps_per_s"]
        print(f"bare S5 step at batch {bare['batch']}: {bare['steps_per_s']:.3g} steps/s; planner "
              f"at {CENTER}: {center['particle_steps_per_s']:.3g} particle-steps/s "
              f"(ratio {payload['center']['ratio_to_bare_s5']:.3f})", flush=True)

    grid = SCORE_GRID_SMOKE if smoke else SCORE_GRID_FULL
    refs = {}
    if "scores" not in args.skip:
        print("exact-model scores", flush=True)
        for task_id, points in grid.items():
            refs[task_id] = _references(task_id, tasks[task_id], ref_trials, args.seed, smoke)
            rows = []
            for K, Ko, D, *value in points:
                value = value[0] if value else "qmdp"
                if value != "qmdp" and (task_id, value) not in models:
                    models[task_id, value] = exact_model(tasks[task_id], value)
                model = models[task_id] if value == "qmdp" else models[task_id, value]
                row = score_point(task_id, tasks[task_id], model, refs[task_id], K, Ko, D,
                                  trials, seed=args.seed + 1, value=value)
                rows.append(row)
            payload["exact_model"][task_id] = rows
    greedy = GREEDY_SMOKE if smoke else GREEDY_FULL
    payload["greedy_depth"] = greedy["D"]
    if "greedy" not in args.skip:
        print("over-greedy sweep (GridNavi)", flush=True)
        if "gridworld" not in refs:
            refs["gridworld"] = _references("gridworld", gridworld, ref_trials, args.seed, smoke)
        for action in ("argmax", "sample"):
            for K in greedy["K"]:
                # K = 1024 costs 16 x K = 64: fewer trials there to stay in budget.
                n = trials if K <= 256 else max(trials // 4, 16)
                payload["greedy_sweep"].append(
                    score_point("gridworld", gridworld, exact, refs["gridworld"], K, 4,
                                greedy["D"], n, action=action, seed=args.seed + 1))
    payload["references"] = {k: {"random": v["random"]["mean"],
                                 "reference": v["reference"]["mean"],
                                 "reference_agent": v["reference"]["agent"]}
                             for k, v in refs.items()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=pathlib.Path(__file__).resolve().parents[1]).stdout.strip()
    payload["meta"] = {"commit": commit, "command": " ".join(sys.argv), "seed": args.seed,
                       "trials": trials, "reference_trials": ref_trials,
                       "alpha": 0.1, "value": "qmdp",
                       "seconds": time.perf_counter() - start,
                       "device": jax.devices()[0].device_kind, "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    png = args.out.with_suffix(".png")
    plot(payload, png)
    print(f"wrote {args.out} and {png} in {payload['meta']['seconds']:.0f} s")
    return payload


if __name__ == "__main__":
    main()
