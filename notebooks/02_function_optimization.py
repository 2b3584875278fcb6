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
# # 02 — Function optimization: VariBASeD against Bayesian optimization
#
# A task is a function `f ~ GP(0, RBF(lengthscale 0.1))` on 32 points of [0, 1]; each of the
# 16 steps of a trial queries a point and observes `f(x) + N(0, 0.1^2)` as the reward. The
# classical anchors know the true prior: GP-UCB, expected improvement (EI) and GP Thompson
# sampling (`planning.gp_agents`).
#
# This notebook trains VariBASeD, then shows one trial (the queried points over the true
# function, with the learned belief's predictive band next to the exact GP posterior at
# several steps) and the cumulative regret of VariBASeD against GP-UCB, EI and GP Thompson
# sampling on the same held-out functions.
#
# `VARIBASED_SMOKE=1` runs a seconds-long smoke budget (the test suite does); the default
# takes a few minutes on a 2-core CPU and is far from a converged agent.

# %%
import os
import pathlib

SMOKE = os.environ.get("VARIBASED_SMOKE") == "1"

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
from figures import Figures  # notebooks/figures.py: save, then show
import numpy as np

from varibased.inference import agents, checkpoint, runner
from varibased.inference.diagnostics import exact_trial_beliefs
from varibased.inference.svi import make_belief_svi
from varibased.models import belief, registry
from varibased.models import decoder as decoder_lib
from varibased.models import history
from varibased.models.belief import BeliefParams
from varibased.models.function_optimization import grid, posterior_marginals
from varibased.planning import gp_agents, reference_agents
from varibased.planning.references import references
from varibased.models.rollout import run_trials
figures = Figures("02_function_optimization" + ("_smoke" if SMOKE else ""))  # PNGs under runs/figures/

TASK = "function_optimization"
SEED = 0
if SMOKE:
    OVERRIDES = dict(num_envs=8, num_particles=4, num_nested=2, depth=2, svi_updates=2,
                     batch_trials=8, replay_trials=16, hidden_size=32, state_size=16, head_hidden=32)
    NUM_ENV_STEPS, EVAL_TRIALS, COMPARE_TRIALS = 2 * 8 * 16, 16, 32
else:
    OVERRIDES = {}  # EMConfig.for_task defaults: 32 envs, (K, K_omega, D) = (16, 4, 4), alpha 0.5
    NUM_ENV_STEPS, EVAL_TRIALS, COMPARE_TRIALS = 40_000, 256, 256
RUN_DIR = pathlib.Path("runs") / ("02_function_optimization" + ("_smoke" if SMOKE else ""))

task = registry.make(TASK)
classical = {
    "GP-UCB": gp_agents.gp_ucb_agent(task),
    "EI": gp_agents.expected_improvement_agent(task),
    "GP Thompson": gp_agents.gp_thompson_agent(task),
}

# %% [markdown]
# ## The classical agents, and the references
#
# Every agent runs on the same held-out functions and keys (common random numbers). The
# normalized score is `(R - R_random) / (R_ref - R_random)` with `R_ref` the best classical
# agent given the true prior: `planning.references.references` computes it (it also tunes a
# fixed-beta GP-UCB on separate trials, a minute or two here); the smoke budget takes the
# best of the three agents above on the held-out trials instead.

# %%
held_out_key = jax.random.key(12_345)
rollouts = {name: jax.jit(lambda key, a=agent: run_trials(key, task, a, COMPARE_TRIALS))(held_out_key)
            for name, agent in {**classical, "random": reference_agents.random_agent(task)}.items()}
if SMOKE:
    returns = {name: np.asarray(r.transitions.reward.sum(-1)) for name, r in rollouts.items()}
    refs = {name: {"mean": float(r.mean()), "se": float(r.std(ddof=1) / np.sqrt(len(r)))}
            for name, r in returns.items()}
    best = max(classical, key=lambda name: refs[name]["mean"])
    refs["reference"] = {"agent": best, "mean": refs[best]["mean"], "exact": False}
else:
    refs = references(TASK, num_trials=500)
for name, entry in refs.items():
    if isinstance(entry, dict) and "se" in entry:
        print(f"{name:22s} {entry['mean']:8.3f} ± {entry['se']:.3f}")
print("R_ref:", refs["reference"])

# %% [markdown]
# ## Train

# %%
config = agents.make_config("varibased", TASK, OVERRIDES)
trainer = agents.make_trainer("varibased", task, config)
# resume="auto": continue this run if RUN_DIR holds it, else train in a fresh sibling dir
summary = runner.run(TASK, "varibased", OVERRIDES, NUM_ENV_STEPS, RUN_DIR, resume="auto", seed=SEED,
                     eval_every=max(NUM_ENV_STEPS // (2 if SMOKE else 5), 1), eval_trials=EVAL_TRIALS,
                     refs=refs, progress=not SMOKE)
RUN_DIR = pathlib.Path(summary["run_dir"])
print(f"{summary['env_steps']} env steps in {summary['wall_seconds']:.1f} s "
      f"(+ {summary['compile_seconds']:.1f} s compilation); "
      f"normalized score {summary['final_normalized_score']:.3f} (random 0, {refs['reference']['agent']} 1)")

template = jax.jit(trainer.init)(jax.random.key(SEED))
state, _ = checkpoint.load(RUN_DIR / runner.CHECKPOINT_FILE, template)
svi = make_belief_svi(task, config.belief_config())
params = BeliefParams(**svi.svi.optim.get_params(state.svi_state.optim_state))
varibased = trainer.agent(state, True)

# %% [markdown]
# ## One trial: queries, learned belief and exact posterior
#
# The learned belief's predictive of `f` at every point is the decoder's mean reward under
# draws of `q(m | h_t)`; the band is its mean ± 2 standard deviations over 64 draws. The
# exact posterior is GP conditioning on the same history.

# %%
rollouts["VariBASeD"] = jax.jit(lambda key: run_trials(key, task, varibased, COMPARE_TRIALS))(held_out_key)
trial = jax.tree.map(lambda x: x[0], rollouts["VariBASeD"])  # the first held-out function
x = grid(task.num_actions)
f = np.asarray(trial.task_params["f"])
actions = np.asarray(trial.transitions.action)
rewards = np.asarray(trial.transitions.reward)
queries = decoder_lib.query_inputs(task, jnp.zeros(task.num_actions, jnp.int32), jnp.arange(task.num_actions))
learned = np.asarray(jax.jit(lambda key, batch: belief.trial_predictive(
    key, params, batch, queries, task, config.belief_config(), 64))(
    jax.random.key(1), history.batch_from_trajectory(task, trial)))  # [T+1, 64, 32]
exact_mean, exact_std = map(np.asarray, jax.vmap(posterior_marginals)(exact_trial_beliefs(task, trial)))

shown = [0, 4, 8, 16]
fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.4), sharey=True)
for ax, t in zip(axes, shown, strict=True):
    ax.plot(x, f, "k-", lw=1.5, label="true f")
    mean, sd = learned[t].mean(0), learned[t].std(0)
    ax.plot(x, mean, color="tab:blue", label="learned belief")
    ax.fill_between(x, mean - 2 * sd, mean + 2 * sd, color="tab:blue", alpha=0.2, label="learned ± 2 sd")
    ax.plot(x, exact_mean[t], color="tab:orange", ls="--", label="exact posterior")
    ax.fill_between(x, exact_mean[t] - 2 * exact_std[t], exact_mean[t] + 2 * exact_std[t],
                    color="tab:orange", alpha=0.15, label="exact ± 2 sd")
    ax.scatter(x[actions[:t]], rewards[:t], c=np.arange(t), cmap="Reds", zorder=3, s=25, label="queries")
    ax.set_title(f"after {t} queries")
    ax.set_xlabel("x")
axes[0].set_ylabel("f(x), observed y")
axes[0].legend(fontsize=7)
figures.show("trial_bands")
print(f"return {rewards.sum():.2f}; oracle (16 max f) {16 * f.max():.2f}")

# %% [markdown]
# ## Cumulative regret against GP-UCB, EI and GP Thompson sampling
#
# Regret of a query is `max f - f(x_t)` (the noise-free value), summed over the trial, on
# the same held-out functions and keys for every agent.

# %%
cumulative = {}
for name in ["VariBASeD", *classical, "random"]:
    fs = np.asarray(rollouts[name].task_params["f"])
    chosen = np.take_along_axis(fs, np.asarray(rollouts[name].transitions.action), axis=1)
    cumulative[name] = np.cumsum(fs.max(1, keepdims=True) - chosen, axis=1)  # [N, T]

fig, ax = plt.subplots(figsize=(6.5, 4))
steps = np.arange(1, task.trial_length + 1)
for name, regret in cumulative.items():
    mean, se = regret.mean(0), regret.std(0, ddof=1) / np.sqrt(len(regret))
    ax.plot(steps, mean, label=name)
    ax.fill_between(steps, mean - 2 * se, mean + 2 * se, alpha=0.15)
ax.set_xlabel("query")
ax.set_ylabel("cumulative regret")
ax.set_title(f"{COMPARE_TRIALS} held-out functions (mean ± 2 s.e.)")
ax.legend(fontsize=8)
figures.show("cumulative_regret")
for name, regret in cumulative.items():
    print(f"{name:12s} final cumulative regret {regret[:, -1].mean():6.2f} ± "
          f"{regret[:, -1].std(ddof=1) / np.sqrt(len(regret)):.2f}")
