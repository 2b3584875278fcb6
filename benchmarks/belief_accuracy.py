"""Belief accuracy of the learned S5/VariBAD belief against the exact posterior.

Trains the belief (SVI, :mod:`inference.svi`) on trials of the posterior-sampling agent and
evaluates on held-out trials of the same agent:

* GridNavi (``gridworld``): the learned distribution over the candidate goal cells,
  ``p(c) ∝ E_q[P(r = +1 | move into c, m)]`` renormalized over the candidates (the query is a
  noop at ``c``), vs the exact posterior: total variation per step ``t = 0..T``;
* function optimization: the learned predictive of ``f`` at every point (mean and variance
  of the decoder mean over draws of q), moment-matched to a Gaussian, vs the exact GP
  posterior: mean ``KL(exact || learned)`` and the coverage of the true ``f`` by the learned
  90% intervals, at all points and steps.

Usage::

    .venv/bin/python benchmarks/belief_accuracy.py --out results/belief.json [--smoke]

Writes the JSON and a PNG next to it (same stem).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
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

from varibased.inference.svi import SVIConfig, fit, make_belief_svi  # noqa: E402
from varibased.models import belief, history, registry, rollout  # noqa: E402
from varibased.models import decoder as decoder_lib  # noqa: E402
from varibased.models.function_optimization import posterior_marginals  # noqa: E402
from varibased.planning.reference_agents import posterior_sampling_agent  # noqa: E402

Z90 = 1.6448536


def generate(rng_key, task, num_trials):
    """Trials of the posterior-sampling agent: ``(TrialBatch, Trajectory)``."""
    agent = posterior_sampling_agent(task)
    traj = jax.jit(lambda k: rollout.run_trials(k, task, agent, num_trials))(rng_key)
    return history.batch_from_trajectory(task, traj), traj


def exact_beliefs(task, traj):
    """The exact posterior at every step ``t = 0..T`` of every trial (leading ``[B, T+1]``)."""
    tr = traj.transitions

    def one(states, actions, rewards):
        def body(b, x):
            nb = task.belief_update(b, *x)
            return nb, nb

        b0 = task.belief_init()
        _, bs = jax.lax.scan(body, b0, (states, actions, rewards))
        return jax.tree.map(lambda a, s: jnp.concatenate([a[None], s]), b0, bs)

    return jax.jit(jax.vmap(one))(tr.env_state.state, tr.action, tr.reward)


def train(rng_key, task, config, data, args):
    trainer = make_belief_svi(task, config, SVIConfig(learning_rate=args.learning_rate))
    start = time.perf_counter()
    state, losses = fit(rng_key, trainer, data, num_updates=args.updates,
                        batch_size=args.batch_size, updates_per_call=args.updates_per_call)
    jax.block_until_ready(state)
    return trainer, state, losses, time.perf_counter() - start


def _chunked(fn, batch, chunk):
    num = batch.actions.shape[0]
    parts = [fn(jax.tree.map(lambda x, i=i: x[i:i + chunk], batch)) for i in range(0, num, chunk)]
    return np.concatenate([np.asarray(p) for p in parts])


def parse_overrides(items, flag):
    """``KEY=VALUE`` strings -> a dict of BeliefConfig fields (values as Python literals)."""
    fields = {f.name for f in dataclasses.fields(belief.BeliefConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"{flag} {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def grid_config(args):
    """The GridNavi belief's configuration from the command line."""
    return belief.BeliefConfig(**{"decoder_inputs": ("moved_obs",), "decode": args.decode,
                                  "kl_weight": args.kl_weight, "latent_dim": args.latent_dim,
                                  **args.grid_overrides})


def fo_config(args):
    """The function-optimization belief's configuration from the command line."""
    return belief.BeliefConfig(**{"decoder_inputs": ("action",), "decode": args.decode_fo,
                                  "kl_weight": args.kl_weight_fo, "latent_dim": args.latent_dim_fo,
                                  "decoder": args.decoder_fo, "guide": args.guide_fo,
                                  **args.fo_overrides})


def gridworld(args, key):
    task = registry.make("gridworld")
    config = grid_config(args)
    k_train, k_eval, k_fit, k_read = jax.random.split(key, 4)
    data, _ = generate(k_train, task, args.train_trials)
    held, held_traj = generate(k_eval, task, args.eval_trials)
    trainer, state, losses, seconds = train(k_fit, task, config, data, args)
    params = trainer.get_params(state)

    size = 5
    prior = np.asarray(task.belief_init())
    candidates = np.flatnonzero(prior > 0)
    positions = jnp.stack([jnp.asarray(candidates % size), jnp.asarray(candidates // size)], -1)
    queries = decoder_lib.query_inputs(task, positions.astype(jnp.int32), jnp.zeros(len(candidates)))
    goal_index = int(np.argmax(task.reward_values))

    @jax.jit
    def learned(batch):
        keys = jax.random.split(k_read, batch.actions.shape[0])
        probs = jax.vmap(lambda k, trial: belief.trial_predictive(
            k, params, trial, queries, task, config, args.samples))(keys, batch)
        hit = probs[..., goal_index].mean(2)  # [B, T+1, Q]
        return hit / hit.sum(-1, keepdims=True)

    p_learned = _chunked(learned, held, 128)
    p_exact = np.asarray(exact_beliefs(task, held_traj))[..., candidates]
    tv = 0.5 * np.abs(p_learned - p_exact).sum(-1)  # [B, T+1]
    found = np.asarray(p_exact.max(-1) > 0.999)
    return {
        "tv_mean": float(tv.mean()),
        "tv_per_step": [float(x) for x in tv.mean(0)],
        "tv_after_goal_found": float(tv[found].mean()) if found.any() else None,
        "mass_on_goal_after_found": float((p_learned * p_exact).sum(-1)[found].mean())
        if found.any() else None,
        "train_seconds": seconds,
        "final_loss": float(losses[-10:].mean()),
        "config": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in config.__dict__.items()},
    }, {"p_learned": p_learned[0], "p_exact": p_exact[0], "candidates": candidates, "tv": tv,
        "trainer": trainer, "state": state, "held": held}


def function_optimization(args, key):
    task = registry.make("function_optimization")
    config = fo_config(args)
    k_train, k_eval, k_fit, k_read = jax.random.split(key, 4)
    data, _ = generate(k_train, task, args.train_trials)
    held, held_traj = generate(k_eval, task, args.eval_trials)
    trainer, state, losses, seconds = train(k_fit, task, config, data, args)
    params = trainer.get_params(state)
    N = task.num_actions
    starts = jnp.zeros((N,), jnp.int32)
    queries = decoder_lib.query_inputs(task, starts, jnp.arange(N))

    @jax.jit
    def learned(batch):
        keys = jax.random.split(k_read, batch.actions.shape[0])
        means = jax.vmap(lambda k, trial: belief.trial_predictive(
            k, params, trial, queries, task, config, args.samples))(keys, batch)  # [B,T+1,S,N]
        return jnp.stack([means.mean(2), means.var(2)], -1)

    moments = _chunked(learned, held, 128)
    mean_l, var_l = moments[..., 0], np.maximum(moments[..., 1], 1e-8)
    exact = exact_beliefs(task, held_traj)
    mean_e, sd_e = jax.vmap(jax.vmap(posterior_marginals))(exact)
    mean_e, var_e = np.asarray(mean_e), np.asarray(sd_e) ** 2
    kl = 0.5 * (np.log(var_l / var_e) + (var_e + (mean_e - mean_l) ** 2) / var_l - 1.0)
    f = np.asarray(held_traj.task_params["f"])[:, None, :]
    covered = np.abs(f - mean_l) <= Z90 * np.sqrt(var_l)
    return {
        "kl_mean": float(kl.mean()),
        "kl_per_step": [float(x) for x in kl.mean((0, 2))],
        "coverage90": float(covered.mean()),
        "coverage90_per_step": [float(x) for x in covered.mean((0, 2))],
        "coverage90_exact": float((np.abs(f - mean_e) <= Z90 * np.sqrt(var_e)).mean()),
        "train_seconds": seconds,
        "final_loss": float(losses[-10:].mean()),
        "config": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in config.__dict__.items()},
    }, {"mean_l": mean_l[0], "var_l": var_l[0], "mean_e": mean_e[0], "var_e": var_e[0],
        "f": f[0, 0]}


def time_svi_update(trainer, state, held, args):
    """Seconds per jitted update on 64 trials: one call, and per update inside one scan."""
    batch = jax.tree.map(lambda x: x[:64], held)
    update = trainer.update
    state1, loss = update(state, batch)
    jax.block_until_ready(loss)
    reps = args.timing_reps
    start = time.perf_counter()
    for _ in range(reps):
        state1, loss = update(state1, batch)
    jax.block_until_ready(loss)
    single = (time.perf_counter() - start) / reps
    U = args.updates_per_call
    stacked = jax.tree.map(lambda x: jnp.stack([x] * U), batch)
    state2, losses = trainer.update_many(state, stacked)
    jax.block_until_ready(losses)
    start = time.perf_counter()
    for _ in range(max(1, reps // U)):
        state2, losses = trainer.update_many(state2, stacked)
    jax.block_until_ready(losses)
    scanned = (time.perf_counter() - start) / (max(1, reps // U) * U)
    return single, scanned


def plot(path, grid_extra, fo_extra):
    import matplotlib.pyplot as plt

    steps = (0, 5, 15, 30, 60)
    fig = plt.figure(figsize=(15, 7))
    ax = fig.add_subplot(2, 6, (1, 7))
    tv = grid_extra["tv"]
    ax.plot(tv.mean(0), label="mean TV")
    ax.fill_between(np.arange(tv.shape[1]), np.percentile(tv, 10, 0), np.percentile(tv, 90, 0),
                    alpha=0.3, label="10-90%")
    ax.set_xlabel("step t")
    ax.set_ylabel("TV(learned, exact)")
    ax.set_title("GridNavi belief error")
    ax.legend()
    cand = grid_extra["candidates"]
    for i, t in enumerate(steps):
        for row, (name, p) in enumerate((("learned", grid_extra["p_learned"]),
                                          ("exact", grid_extra["p_exact"]))):
            grid = np.zeros(25)
            grid[cand] = p[t]
            a = fig.add_subplot(2, 6, 2 + i + 6 * row)
            a.imshow(grid.reshape(5, 5), origin="lower", vmin=0, vmax=1, cmap="viridis")
            a.set_title(f"{name} t={t}", fontsize=9)
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    if fo_extra is not None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3))
        x = np.linspace(0, 1, fo_extra["f"].shape[0])
        for a, t in zip(axes, (0, 4, 16), strict=True):
            for name, m, v, c in (("exact", fo_extra["mean_e"], fo_extra["var_e"], "k"),
                                  ("learned", fo_extra["mean_l"], fo_extra["var_l"], "C1")):
                a.plot(x, m[t], c, label=name)
                a.fill_between(x, m[t] - Z90 * np.sqrt(v[t]), m[t] + Z90 * np.sqrt(v[t]),
                               color=c, alpha=0.2)
            a.plot(x, fo_extra["f"], "C0.", label="f")
            a.set_title(f"FO t={t}")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(str(path).replace(".png", "_fo.png"), dpi=80)
        plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON output path (PNG written beside it)")
    parser.add_argument("--smoke", action="store_true", help="tiny budget (well under a minute)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-trials", type=int, default=8192)
    parser.add_argument("--eval-trials", type=int, default=512)
    parser.add_argument("--updates", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--updates-per-call", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--kl-weight", type=float, default=0.01,
                        help="beta of the GridNavi belief's KL term (sweep on 4000 updates: 1.0 -> TV "
                             "0.25, 0.3 -> 0.13, 0.1 -> 0.11, 0.03 -> 0.09, 0.01 -> 0.08; the EM "
                             "trainer's default is 0.1)")
    parser.add_argument("--kl-weight-fo", type=float, default=1.0,
                        help="beta of the function-optimization belief's KL term")
    parser.add_argument("--latent-dim", type=int, default=16,
                        help="GridNavi latent size (the EM trainer's default: 5)")
    parser.add_argument("--latent-dim-fo", type=int, default=16,
                        help="latent size for function optimization (f has ~10+ effective dimensions)")
    parser.add_argument("--samples", type=int, default=64, help="draws of q per belief")
    parser.add_argument("--decode", default="trial", choices=("trial", "past"),
                        help="GridNavi ELBO decoding")
    parser.add_argument("--decode-fo", default="past", choices=("trial", "past"),
                        help="function optimization ELBO decoding")
    parser.add_argument("--decoder-fo", default="linear", choices=("linear", "bilinear", "mlp"),
                        help="function optimization decoder (linear: a learned rank-L GP)")
    parser.add_argument("--guide-fo", default="factors", choices=belief.GUIDES,
                        help="function optimization guide (factors: full covariance, S5 factors)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a GridNavi BeliefConfig field (repeatable)")
    parser.add_argument("--set-fo", action="append", default=[], metavar="KEY=VALUE",
                        help="override a function-optimization BeliefConfig field (repeatable)")
    parser.add_argument("--timing-reps", type=int, default=20)
    parser.add_argument("--tasks", default="gridworld,function_optimization")
    args = parser.parse_args(argv)
    args.grid_overrides = parse_overrides(args.set, "--set")
    args.fo_overrides = parse_overrides(args.set_fo, "--set-fo")
    unknown = set(args.tasks.split(",")) - {"gridworld", "function_optimization"}
    if unknown:
        raise SystemExit(f"--tasks: unknown task(s) {sorted(unknown)}; choose from gridworld, "
                         "function_optimization")
    for name, make in (("--set", grid_config), ("--set-fo", fo_config)):
        try:  # every configuration is checked before any long run
            make(args)
        except (TypeError, ValueError) as err:
            raise SystemExit(f"{name}: {err}") from None
    if args.smoke:
        args.train_trials, args.eval_trials, args.updates = 128, 64, 20
        args.samples, args.timing_reps = 8, 10
    tasks = args.tasks.split(",")
    key = jax.random.key(args.seed)
    k_grid, k_fo = jax.random.split(key)
    start = time.perf_counter()
    result = {"command": " ".join(sys.argv), "smoke": args.smoke, "seed": args.seed,
              "train_trials": args.train_trials, "eval_trials": args.eval_trials,
              "updates": args.updates, "batch_size": args.batch_size,
              "device": str(jax.devices()[0]), "load_average": list(os.getloadavg())}
    try:
        result["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_ROOT,
                                              capture_output=True, text=True).stdout.strip()
    except OSError:
        result["git_commit"] = None
    grid_extra = fo_extra = None
    if "gridworld" in tasks:
        result["gridworld"], grid_extra = gridworld(args, k_grid)
        single, scanned = time_svi_update(grid_extra["trainer"], grid_extra["state"],
                                          grid_extra["held"], args)
        result["svi_update_seconds"] = single
        result["svi_update_seconds_in_scan"] = scanned
    if "function_optimization" in tasks:
        result["function_optimization"], fo_extra = function_optimization(args, k_fo)
    result["total_seconds"] = time.perf_counter() - start
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if grid_extra is not None:
        plot(out.with_suffix(".png"), grid_extra, fo_extra)
    summary = {k: v for k, v in result.items() if not isinstance(v, dict)}
    for name in ("gridworld", "function_optimization"):
        if name in result:
            summary[name] = {k: v for k, v in result[name].items()
                             if not isinstance(v, list | dict)}
    print(json.dumps(summary, indent=2))
    return result


if __name__ == "__main__":
    main()
