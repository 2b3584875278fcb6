r"""The gap decomposition: which learned part of VariBASeD costs how much of the gap to 1.

For each parameter snapshot of one or more VariBASeD runs on GridNavi
(``checkpoints/params_<env_steps>.npz``, kept by the runner at every evaluation), the SAME
Belief-SMC planner (:mod:`planning.smc`) runs on the ordered chain of models of
:data:`planning.mixed_model.CHAIN`, swapping one part at a time from exact to learned:

1. ``all_exact``: exact posterior and dynamics, QMDP value, uniform proposal;
2. ``learned_proposal``: + the learned policy as the proposal;
3. ``learned_value``: + the learned value;
4. ``learned_belief``: + the learned belief and simulator (= the agent itself);
5. ``policy_alone``: the distilled policy, argmax, no planning;

and ``prior_alone``, the uniform proposal alone (a random agent), for the all-exact column's
gain over its policy prior. Every column acts by argmax under the run's own evaluation planner
config (``EMConfig.planner_config(evaluation=True)``) at each ``K`` in ``--particles``, on
the same held-out trials (24 per candidate goal, 504 by default) with the same per-trial keys
(common random numbers). Scores are normalized (random 0, exact Bayes-optimal 1, by
:mod:`planning.references`); over several runs each score is the mean of the runs' scores,
and its ``_se`` the standard error across runs (one run: across trials).

Along the agent's own real evaluation histories ``h_t`` (the ``learned_belief`` column at the
run's own ``K``), it also measures:

* ``belief_tv``: total variation between the learned belief over the candidate goals,
  ``p(c) ∝ E_{m ~ q(m | h)}[P(r = +1 | move into c, m)]`` (``--belief-samples`` draws of q),
  and the exact posterior, averaged over steps and trials;
* ``value_error_vs_qmdp``: ``V(h) - QMDP(h)`` (signed and absolute means), every history;
* ``value_error_vs_bayes_optimal``: ``V(h) - V^*(h)``, ``V^*`` the exact Bayes-optimal value
  of the belief state (:func:`models.gridworld_dp.belief_state_value`, a memoised search
  outside jit) on a uniform random subsample of ``--vstar-histories`` histories.

Usage::

    .venv/bin/python benchmarks/gap.py --run RUN_DIR [--run RUN_DIR ...] --out FILE [--smoke]
        [--all-checkpoints] [--particles 16,64,256] [--per-goal 24]

Writes the JSON to ``--out`` and a PNG beside it (same stem): per checkpoint and ``K``, the
part of the gap to 1 each part costs. Reads the run directories and never writes in them.
Errors (not a run, not VariBASeD on GridNavi, no snapshots) print ``error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")
_ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLCONFIGDIR", str(_ROOT / ".cache" / "matplotlib"))
os.environ.setdefault("XDG_CACHE_HOME", str(_ROOT / ".cache"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from varibased.inference import agents, checkpoint, configs, runner, snapshots  # noqa: E402
from varibased.inference.em import policy_agent  # noqa: E402
from varibased.models import gridworld_dp, registry  # noqa: E402
from varibased.models.rollout import run_trial  # noqa: E402
from varibased.planning import reference_agents  # noqa: E402
from varibased.planning.learned_model import learned_model  # noqa: E402
from varibased.planning.mixed_model import CHAIN, mixed_model  # noqa: E402
from varibased.planning.model import exact_model  # noqa: E402
from varibased.planning.planner_agent import make_planner_agent  # noqa: E402
from varibased.planning.references import normalized_scores, references  # noqa: E402

COLUMNS = ("all_exact", "learned_proposal", "learned_value", "learned_belief", "policy_alone")
#: (part, column before, column after): the part's cost is the score lost between the two.
PARTS = (("planning", None, "all_exact"), ("proposal", "all_exact", "learned_proposal"),
         ("value", "learned_proposal", "learned_value"), ("belief", "learned_value", "learned_belief"))


class GapError(Exception):
    """A user error: printed as ``error: ...`` with exit status 2."""


@dataclasses.dataclass
class Run:
    """A VariBASeD GridNavi run directory, opened read-only."""

    path: pathlib.Path
    saved: dict
    task: object
    config: object
    snapshots: list  # [(env_steps, path)]


def open_run(path: str | pathlib.Path) -> Run:
    """Check a run directory (VariBASeD on GridNavi, with parameter snapshots) and open it.

    Raises:
        GapError: not a run, another agent or task, or no snapshots.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise GapError(f"{path} is not a run directory (no such directory)")
    try:
        saved = runner.load_run(path)
    except runner.RunError as error:
        raise GapError(str(error)) from error
    if saved["agent"] != "varibased" or saved["task"] != "gridworld":
        raise GapError(f"{path} is a run of agent {saved['agent']!r} on task {saved['task']!r}; "
                       "the gap decomposition needs VariBASeD (agent 'varibased') on 'gridworld'")
    found = snapshots.snapshot_paths(path)
    if not found:
        raise GapError(f"{path} holds no parameter snapshots ({snapshots.SNAPSHOT_DIR}/params_*.npz); "
                       "train it with a runner that keeps them")
    try:
        config = agents.config_from_json("varibased", saved["agent_config"])
        task = registry.make("gridworld", **saved.get("task_config", {}))
    except (ValueError, TypeError) as error:
        raise GapError(f"{path}: its config does not load ({error})") from error
    return Run(path, saved, task, config, found)


def held_out_trials(task, per_goal: int, seed: int):
    """``per_goal`` trials of every candidate goal: keys ``[N]`` and tasks ``{"goal": [N]}``."""
    candidates = np.flatnonzero(np.asarray(task.belief_init()) > 0)
    goals = np.repeat(candidates, per_goal).astype(np.int32)
    keys = jax.random.split(jax.random.key(seed), len(goals))
    return keys, {"goal": jnp.asarray(goals)}


class Evaluator:
    """Jitted columns and history measures for one (task, EMConfig); params are arguments,
    so every snapshot and run of the same config reuses the compilations."""

    def __init__(self, task, config, chunk: int, belief_samples: int):
        self.task, self.config, self.chunk = task, config, chunk
        self.belief_config = config.belief_config()
        self.exact = exact_model(task, "qmdp")
        self.eval_planner = config.planner_config(evaluation=True)
        self.belief_samples = belief_samples
        self._fns = {}
        size = int(round(math.sqrt(task.obs_dim - 2)))  # GridNavi observes (x, y, one-hot cell)
        self.candidates = np.flatnonzero(np.asarray(task.belief_init()) > 0)
        self.positions = np.stack([self.candidates % size, self.candidates // size], -1).astype(np.int32)
        self.goal_index = int(np.argmax(task.reward_values))

    def _agent(self, column: str, num_particles: int, params):
        task, config = self.task, self.config
        if column == "policy_alone":
            return policy_agent(task, config, params, evaluation=True)
        if column == "prior_alone":
            return reference_agents.random_agent(task)
        model = mixed_model(self.exact, learned_model(task, self.belief_config, params), CHAIN[column])
        return make_planner_agent(model, self.eval_planner.replace(num_particles=num_particles))

    def transitions(self, column: str, num_particles: int, params, keys, tasks):
        """The real transitions ``[N, T, ...]`` of a column on the held-out trials."""
        name = (column, num_particles)
        if name not in self._fns:
            def run(params, keys, tasks):
                agent = self._agent(column, num_particles, params)
                return jax.vmap(lambda k, p: run_trial(k, self.task, agent, p).transitions)(keys, tasks)

            self._fns[name] = jax.jit(run)
        return self._chunked(lambda k, p: self._fns[name](params, k, p), keys, tasks)

    def _chunked(self, fn, *trees):
        num = jax.tree.leaves(trees[0])[0].shape[0]
        parts = [jax.device_get(fn(*jax.tree.map(lambda x, i=i: x[i:i + self.chunk], trees)))
                 for i in range(0, num, self.chunk)]
        return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)

    def history_measures(self, params, transitions, rng_key):
        """Along real histories (``[N, T]`` each): belief TV, ``V(h)``, ``QMDP(h)``, and the
        exact belief ``[N, T, cells]``, position ``[N, T, 2]`` and step ``[N, T]``."""
        if "histories" not in self._fns:
            self._fns["histories"] = jax.jit(jax.vmap(self._history_measures, in_axes=(None, 0, 0)))
        keys = jax.random.split(rng_key, jax.tree.leaves(transitions)[0].shape[0])
        return self._chunked(lambda tr, k: self._fns["histories"](params, tr, k), transitions, keys)

    def _history_measures(self, params, transitions, rng_key):
        task, exact = self.task, self.exact
        learned = learned_model(task, self.belief_config, params)
        candidates, positions = self.candidates, jnp.asarray(self.positions)
        goal_index = self.goal_index

        def body(nodes, transition):
            node_e, node_l = nodes
            return (exact.update(node_e, transition), learned.update(node_l, transition)), nodes

        root = (exact.init(rng_key), learned.init(rng_key))
        _, (nodes_e, nodes_l) = jax.lax.scan(body, root, transitions)

        def measure(key, node_e, node_l):
            learned_key, exact_key = jax.random.split(key)
            omegas = learned.sample_tasks(learned_key, node_l, self.belief_samples)
            hit = jax.vmap(lambda pos: learned.outcomes(node_l._replace(state=pos), jnp.int32(0),
                                                        omegas)[1][goal_index])(positions)
            p_learned = hit / hit.sum()
            tv = 0.5 * jnp.abs(p_learned - node_e.belief[candidates]).sum()
            qmdp = exact.value(node_e, exact.sample_tasks(exact_key, node_e, self.eval_planner.num_nested))
            return tv, learned.value(node_l, omegas), qmdp

        steps = transitions.action.shape[0]
        tv, v, qmdp = jax.vmap(measure)(jax.random.split(rng_key, steps), nodes_e, nodes_l)
        return tv, v, qmdp, nodes_e.belief, nodes_e.state, nodes_e.t


def bayes_optimal_values(task_config: dict, beliefs, positions, steps, picks) -> np.ndarray:
    """``V^*`` of the belief states at the ``(trial, step)`` pairs ``picks`` (memoised)."""
    sizes = {k: task_config[k] for k in ("size", "episode_length", "num_episodes", "excluded")
             if k in task_config}
    cache: dict = {}
    out = []
    for i, t in picks:
        cells = frozenset(np.flatnonzero(beliefs[i, t] > 0).tolist())
        key = (tuple(int(v) for v in positions[i, t]), int(steps[i, t]), cells)
        if key not in cache:
            cache[key] = gridworld_dp.belief_state_value(key[0], key[1], cells, **sizes)
        out.append(cache[key])
    return np.asarray(out)


def run_checkpoint(evaluator: Evaluator, run: Run, params, args, keys, tasks, refs) -> dict:
    """Every column's per-trial returns and the history measures of one snapshot."""
    result = {"returns": {}, "seconds": {}}
    agent_k = run.config.planner.num_particles
    kept = None
    for num_particles in args.particles:
        for column in COLUMNS:
            if column == "policy_alone" and num_particles != args.particles[0]:
                result["returns"][(column, num_particles)] = result["returns"][(column, args.particles[0])]
                continue
            start = time.perf_counter()
            tr = evaluator.transitions(column, num_particles, params, keys, tasks)
            result["returns"][(column, num_particles)] = tr.reward.sum(-1)
            result["seconds"][f"{column}@{num_particles}"] = round(time.perf_counter() - start, 2)
            if column == "learned_belief" and num_particles == agent_k:
                kept = tr
            print(f"  K={num_particles:>4} {column:<17} score "
                  f"{normalized_scores(tr.reward.sum(-1), refs)[0]:.3f}", flush=True)
    tr = evaluator.transitions("prior_alone", 1, params, keys, tasks)
    result["returns"][("prior_alone", None)] = tr.reward.sum(-1)
    if kept is None:  # the agent's own K is not in the grid
        kept = evaluator.transitions("learned_belief", agent_k, params, keys, tasks)
    start = time.perf_counter()
    tv, v, qmdp, beliefs, positions, steps = evaluator.history_measures(
        params, kept, jax.random.key(args.seed + 1))
    num, length = v.shape
    rng = np.random.default_rng(args.seed)
    count = min(args.vstar_histories, num * length)
    flat = rng.choice(num * length, size=count, replace=False)
    picks = [(int(f // length), int(f % length)) for f in flat]
    vstar = bayes_optimal_values(run.saved.get("task_config", {}), beliefs, positions, steps, picks)
    v_picked = np.asarray([v[i, t] for i, t in picks], np.float64)
    result["histories"] = {
        "belief_tv": float(tv.mean()),
        "vq_signed": float((v - qmdp).mean()), "vq_abs": float(np.abs(v - qmdp).mean()),
        "vstar_signed": float((v_picked - vstar).mean()), "vstar_abs": float(np.abs(v_picked - vstar).mean()),
        "v_mean": float(v.mean()), "qmdp_mean": float(qmdp.mean()), "vstar_mean": float(vstar.mean()),
        "v_picked_mean": float(v_picked.mean()),
        "v_start": float(v[:, 0].mean()), "vstar_start": float(vstar[[t == 0 for _, t in picks]].mean())
        if any(t == 0 for _, t in picks) else None,
    }
    result["seconds"]["histories"] = round(time.perf_counter() - start, 2)
    return result


def _mean_se(values: list[float], ses: list[float]) -> tuple[float, float]:
    """Mean over runs; s.e. across runs (one run: its own s.e.)."""
    values = np.asarray(values, np.float64)
    if len(values) == 1:
        return float(values[0]), float(ses[0])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def summarize(results: list[dict], particles: list[int], refs: dict) -> dict:
    """One checkpoint entry of the JSON from the runs' raw results."""
    entry = {"K": {}}
    for num_particles in particles:
        row = {}
        names = list(COLUMNS) + ["prior_alone"]
        for column in names:
            k = None if column == "prior_alone" else num_particles
            per_run = [normalized_scores(r["returns"][(column, k)], refs) for r in results]
            row[column], row[f"{column}_se"] = _mean_se(*zip(*per_run, strict=True))
        gains = {
            "all_exact_gain_over_prior": ("all_exact", "prior_alone"),
            "learned_proposal_gain_over_policy_alone": ("learned_proposal", "policy_alone"),
            "agent_gain_over_policy_alone": ("learned_belief", "policy_alone"),
        }
        for name, (a, b) in gains.items():
            diffs = [_paired(r, a, b, num_particles, refs) for r in results]
            row[name], row[f"{name}_se"] = _mean_se(*zip(*diffs, strict=True))
        row["costs"] = {}
        for part, before, after in PARTS:
            if before is None:  # planning with every part exact: 1 - score
                per_run = [normalized_scores(r["returns"][(after, num_particles)], refs) for r in results]
                diffs = [(1.0 - score, se) for score, se in per_run]
            else:
                diffs = [_paired(r, before, after, num_particles, refs) for r in results]
            row["costs"][part], row["costs"][f"{part}_se"] = _mean_se(*zip(*diffs, strict=True))
        entry["K"][str(num_particles)] = row
    hist = [r["histories"] for r in results]

    def agg(key):
        return _mean_se([h[key] for h in hist], [0.0] * len(hist))

    entry["belief_tv"], entry["belief_tv_se"] = agg("belief_tv")
    for name, prefix in (("value_error_vs_qmdp", "vq"), ("value_error_vs_bayes_optimal", "vstar")):
        signed, signed_se = agg(f"{prefix}_signed")
        absolute, abs_se = agg(f"{prefix}_abs")
        entry[name] = {"signed": signed, "abs": absolute}
        if len(hist) > 1:
            entry[name].update(signed_se=signed_se, abs_se=abs_se)
    entry["values"] = {k: float(np.mean([h[k] for h in hist if h[k] is not None]))
                       if any(h[k] is not None for h in hist) else None
                       for k in ("v_mean", "qmdp_mean", "vstar_mean", "v_picked_mean", "v_start",
                                 "vstar_start")}
    return entry


def _paired(result: dict, a: str, b: str, num_particles: int, refs: dict) -> tuple[float, float]:
    """Score of column ``a`` minus ``b`` on the same trials, with the paired s.e."""
    ka = None if a == "prior_alone" else num_particles
    kb = None if b == "prior_alone" else num_particles
    span = refs["reference"]["mean"] - refs["random"]["mean"]
    diff = (np.asarray(result["returns"][(a, ka)]) - np.asarray(result["returns"][(b, kb)])) / span
    se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return float(diff.mean()), float(se)


def plot(summary: dict, path: pathlib.Path) -> None:
    """Per ``K``, grouped bars: per checkpoint, the part of the gap to 1 each part costs."""
    from matplotlib.figure import Figure

    particles = list(summary["checkpoints"][0]["K"])
    fig = Figure(figsize=(max(6.0, 4.5 * len(particles)), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(particles), sharey=True))
    names = [p for p, _, _ in PARTS]
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:red"]
    width = 0.8 / len(names)
    for ax, k in zip(axes, particles, strict=True):
        for c, entry in enumerate(summary["checkpoints"]):
            row = entry["K"][k]
            for j, name in enumerate(names):
                ax.bar(c + (j - (len(names) - 1) / 2) * width, row["costs"][name], width,
                       yerr=row["costs"][f"{name}_se"], color=colors[j], capsize=2,
                       label=name if c == 0 else None)
            ax.plot([c - 0.4, c + 0.4], [1 - row["learned_belief"]] * 2, "k--", lw=1,
                    label="agent's gap to 1" if c == 0 else None)
        ax.set_xticks(range(len(summary["checkpoints"])),
                      [f"{e['env_steps']:.3g}" for e in summary["checkpoints"]])
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("checkpoint (env steps)")
        ax.set_title(f"K = {k}")
    axes[0].set_ylabel("normalized score lost")
    axes[0].legend(fontsize=7)
    fig.suptitle("gap to Bayes-optimal: score each part costs (exact -> learned)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="run directory (repeatable)")
    parser.add_argument("--out", required=True, help="output JSON (a PNG is written beside it)")
    parser.add_argument("--smoke", action="store_true", help="K=16 only, tiny trial counts")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--last", action="store_true", help="only the last snapshot (default)")
    which.add_argument("--all-checkpoints", action="store_true", help="every snapshot")
    parser.add_argument("--particles", type=_positive_ints, help="K grid (default 16,64,256)")
    parser.add_argument("--per-goal", type=int, help="held-out trials per candidate goal (24)")
    parser.add_argument("--seed", type=int, default=20_000, help="seed of the held-out trials")
    parser.add_argument("--vstar-histories", type=int, help="histories subsampled for V* (2000)")
    parser.add_argument("--belief-samples", type=int, default=32, help="draws of q for belief_tv")
    parser.add_argument("--chunk", type=int, default=126, help="trials per jitted call")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                        help="evaluation-time planner setting in every column, e.g. "
                             "planner.outcome=enumerate (repeatable; planner fields only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args, argv)
    except GapError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _with_planner_settings(run: Run, items: list[str]) -> Run:
    """``run`` with evaluation-time planner settings (``planner.FIELD=VALUE``) applied."""
    changes = {}
    for item in items:
        key, sep, raw = item.partition("=")
        try:
            path = configs.canonical_path("varibased", type(run.config), key.strip())
        except ValueError as error:
            raise GapError(f"--set: {error}") from error
        if not sep or not path.startswith("planner."):
            raise GapError(f"--set expects planner.FIELD=VALUE (a planner setting), got {item!r}")
        try:
            changes[path] = json.loads(raw)
        except json.JSONDecodeError:
            changes[path] = raw
    if not changes:
        return run
    try:
        return dataclasses.replace(run, config=configs.replace(run.config, changes))
    except (ValueError, TypeError) as error:
        raise GapError(f"--set: {error}") from error


def _main(args, argv) -> int:
    start = time.perf_counter()
    args.particles = args.particles or ([16] if args.smoke else [16, 64, 256])
    args.per_goal = args.per_goal or (1 if args.smoke else 24)
    args.vstar_histories = args.vstar_histories or (20 if args.smoke else 2000)
    if args.per_goal < 2 and not args.smoke:
        raise GapError(f"--per-goal must be >= 2 (standard errors), got {args.per_goal}")
    runs = [_with_planner_settings(open_run(path), args.set) for path in args.run]
    first = runs[0]
    for run in runs[1:]:
        if run.config.planner_config(True) != first.config.planner_config(True) \
                or run.saved.get("task_config", {}) != first.saved.get("task_config", {}):
            raise GapError(f"{run.path} has another planner or task config than {first.path}; "
                           "compare runs of one configuration")
    out = pathlib.Path(args.out)
    task, config = first.task, first.config
    refs = references("gridworld", num_trials=200 if args.smoke else 2000,
                      **first.saved.get("task_config", {}))
    keys, tasks = held_out_trials(task, args.per_goal, args.seed)
    chunk = min(args.chunk, len(keys))
    evaluator = Evaluator(task, config, chunk, args.belief_samples)
    template = snapshots.params_template(first.saved)
    # checkpoints: the last of each run, or the env-step points all runs share
    if args.all_checkpoints:
        common = sorted(set.intersection(*[{s for s, _ in run.snapshots} for run in runs]))
        if not common:
            raise GapError("the runs share no snapshot env-step point; use the default (last)")
        plan = [[(s, dict(run.snapshots)[s]) for run in runs] for s in common]
    else:
        plan = [[run.snapshots[-1] for run in runs]]
    entries = []
    for points in plan:
        results = []
        for run, (env_steps, path) in zip(runs, points, strict=True):
            print(f"{run.path} @ {env_steps} env steps", flush=True)
            try:
                params, _ = snapshots.load_params_snapshot(path, template)
            except checkpoint.CheckpointError as error:
                raise GapError(str(error)) from error
            results.append(run_checkpoint(evaluator, run, params, args, keys, tasks, refs))
        entry = {"env_steps": int(points[0][0]), "env_steps_per_run": [int(s) for s, _ in points]}
        entry.update(summarize(results, args.particles, refs))
        entry["seconds"] = [r["seconds"] for r in results]
        entries.append(entry)
    planner = dataclasses.asdict(config.planner_config(evaluation=True))
    planner["num_particles"] = args.particles
    summary = {
        "planner": planner,
        "num_runs": len(runs),
        "runs": [str(run.path) for run in runs],
        "trials": int(len(keys)), "per_goal": args.per_goal, "seed": args.seed,
        "columns": list(COLUMNS) + ["prior_alone"],
        "score": "normalized (random 0, exact Bayes-optimal 1); over runs the mean of the runs' "
                 "scores, _se across runs (one run: across trials); gains and costs are paired "
                 "differences on the same trials",
        "references": {"random": refs["random"]["mean"], "bayes_optimal": refs["reference"]["mean"],
                       "reference_trials": refs["num_trials"]},
        "histories": {
            "which": "the learned_belief column (the agent) at the run's own K, on the same trials",
            "belief_tv": f"mean over every (trial, step) of TV(learned p(c), exact posterior) over "
                         f"the candidate goals; learned p(c) from {args.belief_samples} draws of q",
            "value_error_vs_qmdp": "V(h) - QMDP(h) over every (trial, step)",
            "value_error_vs_bayes_optimal": f"V(h) - V*(h) on {args.vstar_histories} (trial, step) "
                                            f"pairs drawn uniformly without replacement (numpy seed "
                                            f"{args.seed}); V* by models.gridworld_dp.belief_state_value",
        },
        "checkpoints": entries,
        "command": " ".join(["benchmarks/gap.py", *(argv if argv is not None else sys.argv[1:])]),
        "commit": _git_commit(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    plot(summary, out.with_suffix(".png"))
    print(format_table(summary))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def format_table(summary: dict) -> str:
    """The gap table as text, one row per (checkpoint, K)."""
    lines = ["env_steps     K  " + "  ".join(f"{c:>16}" for c in COLUMNS) + "  gain_over_prior"]
    for entry in summary["checkpoints"]:
        for k, row in entry["K"].items():
            cells = "  ".join(f"{row[c]:>9.3f}±{row[c + '_se']:.3f}" for c in COLUMNS)
            lines.append(f"{entry['env_steps']:>9} {k:>5}  {cells}  {row['all_exact_gain_over_prior']:.3f}")
        lines.append(f"  belief_tv {entry['belief_tv']:.3f}; V-QMDP {entry['value_error_vs_qmdp']}; "
                     f"V-V* {entry['value_error_vs_bayes_optimal']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
