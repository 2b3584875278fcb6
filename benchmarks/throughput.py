"""Cost per environment step of VariBASeD and RL^2, side by side, in one run (issue 16).

    .venv/bin/python benchmarks/throughput.py --out results/throughput.json           # minutes
    .venv/bin/python benchmarks/throughput.py --out /tmp/throughput.json --smoke      # seconds

Measured on one machine in one process, each with its compile time apart from its run time
(times are the fastest of ``--repeats`` calls: other processes share the CPU):

* **planner** rows (and ``planner_nested_used``, the same with
  ``planner.nested_draws="used"``): one planning call for ``num_envs`` roots on the learned
  model (untrained parameters: speed does not depend on training) at the default config and
  at ``K=64`` with the same other settings: particle-steps/s (``num_envs K D / s``: one
  particle advancing one depth; extra advances per enumerated outcome are overhead, not
  steps), model evaluations/s (``num_envs K K_omega D / s``; ``K_omega`` counts as 1 with
  ``nested_draws="used"``), µs per real step, and beside them the bare S5 encoder step (the
  belief's own encoder) at the same batch ``num_envs K``;
* **svi**: one SVI update at the default batch, with the ELBO exact and subsampled
  (``belief.elbo_steps`` / ``decode_steps``, timed alternately), and the update's parts
  (encoder, decoder with the ELBO's log-likelihood, heads), each forward and forward+backward;
* **em**: one whole EM iteration at the default config, and its parts: acting (the trials
  with the planner) and learning (the SVI updates), with env steps/s;
* **rl2**: one RL^2 iteration at its default config, env steps/s and µs per step.

The JSON holds each row's configuration (``configs``) and the ratios the issue asks for.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from planner import _best_time, bare_s5_rate, time_planner  # noqa: E402

from varibased.inference import configs as config_lib  # noqa: E402
from varibased.inference import em, rl2  # noqa: E402
from varibased.inference.svi import make_belief_svi  # noqa: E402
from varibased.models import belief as belief_lib  # noqa: E402
from varibased.models import decoder as decoder_lib  # noqa: E402
from varibased.models import history, registry, rollout  # noqa: E402
from varibased.models.heads import policy_logits, value  # noqa: E402
from varibased.planning.learned_model import learned_model  # noqa: E402
from varibased.planning.planner_agent import make_planner_agent  # noqa: E402
from varibased.planning.reference_agents import random_agent  # noqa: E402

#: the subsampled ELBO timed beside the exact one (belief steps, decoded steps per trial)
SUBSAMPLED = {"belief.elbo_steps": 8, "belief.decode_steps": 8}
#: smoke runs: a 2-arm bandit of 5 pulls and tiny networks (compiles in seconds)
SMOKE_TASK = ("bernoulli_bandit", {"num_arms": 2, "horizon": 5})
SMOKE_EM = {"num_envs": 4, "num_particles": 4, "num_nested": 2, "depth": 2, "svi_updates": 2,
            "batch_trials": 4, "replay_trials": 8, "latent_dim": 2, "hidden_size": 8, "state_size": 4,
            "decoder_hidden": (8,), "head_hidden": 8, "input_hidden": 8}
SMOKE_RL2 = {"num_envs": 4, "num_minibatches": 2, "num_epochs": 1, "hidden_size": 8, "state_size": 4,
             "head_size": 8}


def _timed(fn, *args, repeats: int) -> dict[str, float]:
    """Compile time and fastest run time of ``jax.jit(fn)(*args)``."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_seconds = time.perf_counter() - start
    return {"seconds": _best_time(compiled, *args, repeats=repeats), "compile_seconds": compile_seconds}


def planner_rows(task, config: em.EMConfig, particles: tuple[int, ...], repeats: int,
                 **changes: Any) -> list[dict[str, Any]]:
    """The planner rows (see the module docstring) on the learned model, with planner
    fields ``changes`` (e.g. ``nested_draws="used"``) on top of ``config.planner``."""
    params = belief_lib.init_params(jax.random.key(0), task, config.belief)
    model = learned_model(task, config.belief, params)
    encoder = history.encoder_config(task, config.belief)
    rows = []
    for K in particles:
        planner = config.planner_config(evaluation=False).replace(num_particles=K, **changes)
        row = time_planner(model, config.num_envs, planner, repeats)
        bare = bare_s5_rate(task, config.num_envs * K, repeats, encoder=encoder)
        draws = 1 if planner.nested_draws == "used" else planner.num_nested  # nested tasks drawn
        row.update(num_envs=row.pop("B"), bare_s5_steps_per_s=bare["steps_per_s"],
                   nested_draws_per_step=draws,
                   evals_per_s=row["particle_steps_per_s"] * draws,
                   ratio_to_bare_s5=row["particle_steps_per_s"] / bare["steps_per_s"],
                   us_per_real_step=row["seconds_per_call"] / config.num_envs * 1e6,
                   config=dataclasses.asdict(planner))
        print(f"planner {planner.nested_draws} K={K:3d} K_omega={row['K_omega']} D={row['D']} "
              f"B={row['num_envs']}: "
              f"{row['us_per_real_step']:7.1f} µs/real step, {row['particle_steps_per_s']:.3g} particle-"
              f"steps/s = {row['ratio_to_bare_s5']:.3f} x bare S5 ({row['bare_s5_steps_per_s']:.3g}/s), "
              f"{row['evals_per_s']:.3g} evals/s, compile {row['compile_seconds']:.1f} s", flush=True)
        rows.append(row)
    return rows


def _trials(task, num: int):
    """``num`` random-agent trials as a TrialBatch, with uniform policy and zero value targets."""
    trajectory = jax.jit(lambda k: rollout.run_trials(k, task, random_agent(task), num))(jax.random.key(3))
    batch = history.batch_from_trajectory(task, trajectory)
    T, A = task.trial_length, task.num_actions
    return batch, jnp.full((num, T, A), 1.0 / A), jnp.zeros((num, T))


def svi_costs(task, config: em.EMConfig, subsampled: em.EMConfig, repeats: int) -> dict[str, Any]:
    """One SVI update, exact and subsampled (timed alternately), and its parts."""
    batch, policy_targets, value_targets = _trials(task, config.batch_trials)
    out: dict[str, Any] = {}
    updates = {}
    for name, cfg in (("full", config), ("subsampled", subsampled)):
        svi = make_belief_svi(task, cfg.belief, cfg.svi)
        state = svi.init(jax.random.key(1), batch, policy_targets, value_targets)
        weights = (cfg.policy_weight, cfg.value_weight)
        # the new state is returned too: with the loss alone XLA would drop the backward pass
        fn = (lambda s, k, b, pt, vt, svi=svi, w=weights: svi.update(s, b, pt, vt, *w, None, k))
        start = time.perf_counter()
        args = (state, jax.random.key(2), batch, policy_targets, value_targets)  # arguments, not constants
        updates[name] = (jax.jit(fn).lower(*args).compile(), args)
        out[f"{name}_compile_seconds"] = time.perf_counter() - start
    times = {name: [] for name in updates}
    for _ in range(2):  # alternate, so that both see the same load
        for name, (fn, args) in updates.items():
            times[name].append(_best_time(fn, *args, repeats=max(1, repeats // 2)))
    out.update({name: min(t) for name, t in times.items()})
    out["speedup"] = out["full"] / out["subsampled"]
    out["parts"] = _svi_parts(task, config, batch, repeats)
    print(f"SVI update (B={config.batch_trials}): exact {out['full'] * 1e3:.1f} ms, subsampled "
          f"{out['subsampled'] * 1e3:.1f} ms ({out['speedup']:.2f}x)", flush=True)
    for part, row in out["parts"].items():
        print(f"  {part:8s} forward {row['forward'] * 1e3:6.2f} ms, forward+backward "
              f"{row['forward_backward'] * 1e3:6.2f} ms", flush=True)
    return out


def _svi_parts(task, config: em.EMConfig, batch, repeats: int) -> dict[str, dict[str, float]]:
    """Forward and forward+backward of the update's parts at its shapes: the S5 encoder of
    every belief step, the decoder's log-likelihood of every (belief, step) pair, the heads."""
    bc = config.belief
    params = belief_lib.init_params(jax.random.key(0), task, bc)
    B, T = batch.actions.shape
    features = history.batch_features(params, batch, None, task, bc)  # [B, T+1, H]
    m = jax.random.normal(jax.random.key(4), (B, T + 1, bc.latent_dim))

    def encoder(p, batch):
        return history.batch_features(p, batch, None, task, bc).sum()

    def decoder(p, m, batch):
        return jax.vmap(lambda mb, trial: decoder_lib.decoder_log_likelihood(p, mb, trial, task, bc))(
            m, batch).sum()

    def heads(p, f):
        q = belief_lib.belief_distribution(p, f, bc)
        return (q.mean.sum() + q.variance.sum() + policy_logits(p, f[:, :T]).sum()
                + value(p, f[:, :T], bc).sum())

    parts = {"encoder": (encoder, (params, batch), (0,)), "decoder": (decoder, (params, m, batch), (0, 1)),
             "heads": (heads, (params, features), (0, 1))}
    out = {}
    for name, (fn, args, wrt) in parts.items():
        forward = _timed(fn, *args, repeats=repeats)
        backward = _timed(jax.grad(fn, argnums=wrt), *args, repeats=repeats)
        out[name] = {"forward": forward["seconds"], "forward_backward": backward["seconds"],
                     "compile_seconds": forward["compile_seconds"] + backward["compile_seconds"]}
    return out


def em_costs(task, config: em.EMConfig, repeats: int) -> dict[str, Any]:
    """A whole EM iteration, and acting and learning apart."""
    trainer = em.make_trainer(task, config)
    state = trainer.init(jax.random.key(0))
    iteration = _timed(trainer.iteration, state, repeats=repeats)
    svi = make_belief_svi(task, config.belief, config.svi)

    def act(s):
        params = svi.get_params(s.svi_state)
        agent = make_planner_agent(learned_model(task, config.belief, params), config.planner_config(False))
        return rollout.run_trials(s.rng_key, task, agent, config.num_envs).transitions.reward

    acting = _timed(act, state, repeats=repeats)  # (the batch below is an argument, not a constant)
    U, Bt, T, A = config.svi_updates, config.batch_trials, task.trial_length, task.num_actions
    batch, policy_targets, value_targets = _trials(task, Bt)
    svi_state = svi.init(jax.random.key(1), batch, policy_targets, value_targets)  # the same shapes
    batches = jax.tree.map(lambda x: jnp.broadcast_to(x, (U,) + x.shape), batch)
    targets = (jnp.full((U, Bt, T, A), 1.0 / A), jnp.zeros((U, Bt, T)))

    def learn(s, batches, targets):
        return svi.update_many(s, batches, *targets, config.policy_weight, config.value_weight)

    learning = _timed(learn, svi_state, batches, targets, repeats=repeats)
    steps = trainer.env_steps_per_iteration
    out = {"iteration_s": iteration["seconds"], "acting_s": acting["seconds"],
           "learning_s": learning["seconds"],
           "env_steps_per_iteration": steps, "env_steps_per_s": steps / iteration["seconds"],
           "compile_seconds": iteration["compile_seconds"]}
    print(f"EM iteration ({steps} env steps): {out['iteration_s']:.3f} s = {out['env_steps_per_s']:.0f} "
          f"env steps/s; acting {out['acting_s']:.3f} s, learning {out['learning_s']:.3f} s; compile "
          f"{out['compile_seconds']:.1f} s", flush=True)
    return out


def rl2_costs(task, config: rl2.RL2Config, repeats: int) -> dict[str, Any]:
    """One RL^2 iteration at ``config``."""
    trainer = rl2.make_trainer(task, config)
    state = trainer.init(jax.random.key(0))
    timed = _timed(trainer.iteration, state, repeats=repeats)
    steps = trainer.env_steps_per_iteration
    out = {"iteration_s": timed["seconds"], "env_steps_per_iteration": steps,
           "env_steps_per_s": steps / timed["seconds"], "us_per_step": timed["seconds"] / steps * 1e6,
           "compile_seconds": timed["compile_seconds"]}
    print(f"RL^2 iteration ({steps} env steps): {out['iteration_s']:.3f} s = {out['env_steps_per_s']:.0f} "
          f"env steps/s ({out['us_per_step']:.1f} µs/step); compile {out['compile_seconds']:.1f} s",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the measurements and write the JSON (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/throughput.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny task and networks (seconds)")
    parser.add_argument("--task", default="gridworld", help="task id (not with --smoke)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--skip", nargs="*", default=[], choices=["planner", "svi", "em", "rl2"])
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    start = time.perf_counter()
    if args.smoke:
        task_id, task_config = SMOKE_TASK
        em_overrides, rl2_overrides, particles, repeats = SMOKE_EM, SMOKE_RL2, (4, 8), 2
        subsampled = {"belief.elbo_steps": 3, "belief.decode_steps": 3}
    else:
        task_id, task_config = args.task, {}
        em_overrides, rl2_overrides, repeats, subsampled = {}, {}, args.repeats, SUBSAMPLED
    task = registry.make(task_id, **task_config)
    em_config = em.EMConfig.for_task(task_id, **em_overrides)
    particles = (4, 8) if args.smoke else tuple(dict.fromkeys((em_config.planner.num_particles, 64)))
    sub_config = em.EMConfig.for_task(task_id, **em_overrides, **subsampled)
    rl2_config = rl2.RL2Config.for_task(task_id, **rl2_overrides)
    payload: dict[str, Any] = {
        "task": task_id, "task_config": task_config, "smoke": args.smoke,
        "configs": {"varibased": config_lib.to_json(em_config),
                    "varibased_subsampled": config_lib.to_json(sub_config),
                    "rl2": config_lib.to_json(rl2_config)},
    }
    if "planner" not in args.skip:
        payload["planner"] = planner_rows(task, em_config, particles, repeats)
        # the same rows with one nested draw per particle and depth (a different random stream)
        payload["planner_nested_used"] = planner_rows(task, em_config, particles, repeats,
                                                      nested_draws="used")
    if "svi" not in args.skip:
        svi = svi_costs(task, em_config, sub_config, repeats)
        payload["svi_update_s"] = {"full": svi["full"], "subsampled": svi["subsampled"]}
        payload["svi"] = svi
    if "em" not in args.skip:
        payload["em"] = em_costs(task, em_config, repeats)
        payload["em_split"] = {name: payload["em"][name] for name in ("acting_s", "learning_s")}
        payload["varibased_env_steps_per_s"] = payload["em"]["env_steps_per_s"]
    if "rl2" not in args.skip:
        payload["rl2"] = rl2_costs(task, rl2_config, repeats)
        payload["rl2_env_steps_per_s"] = payload["rl2"]["env_steps_per_s"]
        payload["rl2_us_per_step"] = payload["rl2"]["us_per_step"]
    ratios = {}
    if "rl2_us_per_step" in payload and "planner" in payload:
        ratios["planning_over_rl2_step"] = {str(r["K"]): r["us_per_real_step"] / payload["rl2_us_per_step"]
                                            for r in payload["planner"]}
    if "rl2_env_steps_per_s" in payload and "varibased_env_steps_per_s" in payload:
        ratios["varibased_over_rl2_env_steps"] = (payload["varibased_env_steps_per_s"]
                                                  / payload["rl2_env_steps_per_s"])
    payload["ratios"] = ratios
    payload["meta"] = {"command": " ".join(sys.argv), "seconds": time.perf_counter() - start,
                       "device": jax.devices()[0].device_kind, "cpus": os.cpu_count(),
                       "load_average": list(os.getloadavg()), "jax": jax.__version__,
                       "repeats": repeats}
    for name, ratio in ratios.items():
        print(f"{name}: {ratio if isinstance(ratio, dict) else round(ratio, 4)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=lambda x: np.asarray(x).tolist()))
    print(f"wrote {args.out} in {payload['meta']['seconds']:.0f} s")
    return payload


if __name__ == "__main__":
    main()
