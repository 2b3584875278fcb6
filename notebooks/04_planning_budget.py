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
# # 04 — Planning budget: test-time scaling and the over-greedy effect
#
# The Belief-SMC planner's budget is `K x K_omega x D` (particles, nested task particles,
# depth), all changeable at test time without retraining. This notebook measures, on
# GridNavi,
#
# 1. **test-time scaling on the exact model** (true posterior, true dynamics, QMDP value):
#    mean return over a grid of `K`, `K_omega` and `D` — this isolates planning error from
#    learning error;
# 2. **the over-greedy effect**: as `K` grows the tilted particle system concentrates on
#    the luckiest imagined futures (exponentiating *sampled* rewards is risk-seeking), so
#    acting by the argmax of the improved policy may get worse; we compare argmax with
#    sampling the improved policy;
# 3. the same on the **learned model** of a briefly trained VariBASeD run;
# 4. the fix for the learned model: **enumerated outcomes** (`outcome="enumerate"`).
#
# Every configuration is one compilation; `VARIBASED_SMOKE=1` shrinks the grids.

# %%
import itertools
import os
import pathlib

SMOKE = os.environ.get("VARIBASED_SMOKE") == "1"

import jax
import matplotlib.pyplot as plt
from figures import Figures  # notebooks/figures.py: save, then show
import numpy as np

from varibased.inference import agents, checkpoint, configs, runner
from varibased.models import registry
from varibased.planning.config import PlannerConfig
from varibased.planning.model import exact_model
from varibased.planning.planner_agent import run_planner_trials
from varibased.planning.references import normalized_scores, references
from varibased.models.rollout import run_trials
figures = Figures("04_planning_budget" + ("_smoke" if SMOKE else ""))  # PNGs under runs/figures/

TASK = "gridworld"
task = registry.make(TASK)
if SMOKE:
    PARTICLES, NESTED, DEPTHS, GREEDY_PARTICLES, TRIALS = (2, 8), (1,), (1, 2), (8,), 8
    LEARNED_PARTICLES, REFERENCE_TRIALS = (4,), 200
else:
    PARTICLES, NESTED, DEPTHS, TRIALS = (4, 16, 64), (1, 4), (1, 4), 128
    GREEDY_PARTICLES = (4, 16, 64, 256)
    LEARNED_PARTICLES, REFERENCE_TRIALS = (1, 16, 64), 2000
refs = references(TASK, num_trials=REFERENCE_TRIALS)
model = exact_model(task)
key = jax.random.key(0)  # the same held-out tasks and keys for every configuration


def score(returns):
    return normalized_scores(np.asarray(returns), refs)


# %% [markdown]
# ## 1. Test-time scaling on the exact model

# %%
results = {}
for K, K_omega, D in itertools.product(PARTICLES, NESTED, DEPTHS):
    config = PlannerConfig(num_particles=K, num_nested=K_omega, depth=D, alpha=0.1)
    returns = run_planner_trials(key, task, model, config, TRIALS).transitions.reward.sum(-1)
    results[K, K_omega, D, "argmax"] = score(returns)
    print(f"K={K:3d} K_omega={K_omega} D={D}: normalized score {results[K, K_omega, D, 'argmax'][0]:.3f}")

fig, axes = plt.subplots(1, len(NESTED), figsize=(4.5 * len(NESTED), 3.6), squeeze=False)
for ax, K_omega in zip(axes[0], NESTED, strict=True):
    table = np.array([[results[K, K_omega, D, "argmax"][0] for K in PARTICLES] for D in DEPTHS])
    image = ax.imshow(table, origin="lower", cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(table):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=9)
    ax.set_xticks(range(len(PARTICLES)), PARTICLES)
    ax.set_yticks(range(len(DEPTHS)), DEPTHS)
    ax.set_xlabel("particles K")
    ax.set_ylabel("depth D")
    ax.set_title(f"exact model, K_omega = {K_omega}")
    fig.colorbar(image, ax=ax, label="normalized score")
plt.tight_layout()
figures.show("exact_budget_heat_map")

# %% [markdown]
# ## 2. The over-greedy effect (exact model)
#
# At the largest `K_omega` and `D` of the grid: act by the argmax of the improved policy
# (evaluation) or by a draw from it (training), as `K` grows.

# %%
D, K_omega = max(DEPTHS), max(NESTED)
for K, selection in itertools.product(GREEDY_PARTICLES, ("argmax", "sample")):
    if (K, K_omega, D, selection) not in results:
        config = PlannerConfig(num_particles=K, num_nested=K_omega, depth=D, alpha=0.1,
                               action_selection=selection)
        returns = run_planner_trials(key, task, model, config, TRIALS).transitions.reward.sum(-1)
        results[K, K_omega, D, selection] = score(returns)


def plot_selection(ax, table, particles, title):
    for selection in ("argmax", "sample"):
        means = np.array([table[K, selection][0] for K in particles])
        ses = np.array([table[K, selection][1] for K in particles])
        ax.errorbar(particles, means, 2 * ses, marker="o", capsize=3, label=selection)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("particles K")
    ax.set_ylabel("normalized score (± 2 s.e.)")
    ax.set_title(title)
    ax.legend()


fig, ax = plt.subplots(figsize=(5, 3.6))
greedy = {(K, s): results[K, K_omega, D, s] for K in GREEDY_PARTICLES for s in ("argmax", "sample")}
plot_selection(ax, greedy, GREEDY_PARTICLES, f"exact model, K_omega = {K_omega}, D = {D}")
figures.show("argmax_vs_sampled_exact")

# %% [markdown]
# ## 3. The learned model of a briefly trained run
#
# Train VariBASeD for a short while (or point `RUN_DIR` at any run directory of
# `varibased train --agent varibased --task gridworld`), then evaluate its checkpoint at
# other budgets: the trainer is rebuilt with the new `num_particles`, the parameters are
# the same. `K = 1` acts with the distilled policy alone (no planning).

# %%
if SMOKE:
    OVERRIDES = dict(num_envs=8, num_particles=4, num_nested=2, depth=2, svi_updates=2,
                     batch_trials=8, replay_trials=16, hidden_size=32, state_size=16, head_hidden=32)
    NUM_ENV_STEPS, EVAL_TRIALS = 2 * 8 * 60, 16
else:
    OVERRIDES = {}
    NUM_ENV_STEPS, EVAL_TRIALS = 60_000, 128
RUN_DIR = pathlib.Path("runs") / ("04_planning_budget" + ("_smoke" if SMOKE else ""))
config = agents.make_config("varibased", TASK, OVERRIDES)
trainer = agents.make_trainer("varibased", task, config)
# resume="auto": continue this run if RUN_DIR holds it, else train in a fresh sibling dir
summary = runner.run(TASK, "varibased", OVERRIDES, NUM_ENV_STEPS, RUN_DIR, resume="auto", seed=0,
                     eval_every=max(NUM_ENV_STEPS // 2, 1), eval_trials=EVAL_TRIALS,
                     refs=refs, progress=not SMOKE)
RUN_DIR = pathlib.Path(summary["run_dir"])
EVAL_SEED = runner.load_run(RUN_DIR)["eval_seed"]  # the run's held-out trials
state, _ = checkpoint.load(RUN_DIR / runner.CHECKPOINT_FILE, jax.jit(trainer.init)(jax.random.key(0)))
print(f"trained {summary['env_steps']} env steps at K = {config.planner.num_particles}: "
      f"normalized score {summary['final_normalized_score']:.3f}")



def trainer_with_particles(K):
    """The run's trainer at another K (same parameters). Its SVI object must have seen one
    ``init`` before it can read parameters from a state: trace one (no compilation)."""
    budget_config = configs.replace(config, {"planner.num_particles": K})
    budget_trainer = agents.make_trainer("varibased", task, budget_config)
    jax.eval_shape(budget_trainer.init, jax.random.key(0))
    return budget_trainer


learned = {}
for K, selection in itertools.product(LEARNED_PARTICLES, ("argmax", "sample")):
    budget_trainer = trainer_with_particles(K)
    if selection == "argmax":  # exactly the evaluation protocol of the run
        returns = runner.evaluate_state(task, budget_trainer, state, EVAL_TRIALS, EVAL_SEED)
    else:
        agent = budget_trainer.agent(state, False)
        returns = jax.jit(lambda k, a=agent: run_trials(k, task, a, EVAL_TRIALS).transitions.reward.sum(-1))(
            jax.random.key(EVAL_SEED))
    learned[K, selection] = score(returns)
    print(f"learned model, K={K:3d}, {selection}: normalized score {learned[K, selection][0]:.3f}")

fig, ax = plt.subplots(figsize=(5, 3.6))
plot_selection(ax, learned, LEARNED_PARTICLES,
               f"learned model, K_omega = {config.planner.num_nested}, D = {config.planner.depth}")
figures.show("learned_curve")

# %% [markdown]
# ## 4. Enumerated outcomes: risk-neutral towards nature
#
# A particle's weight exponentiates `r + V(h')` after the belief was updated on a *sampled*
# outcome: a soft-max over nature's moves, so that a large `K` selects the imaginations in
# which the goal turned up early (in the learned model this shows at `D = 1` already, and
# drawing the reward's mean instead, `outcome="expected"`, does not help: the lucky jump is
# in `V(h')`). With `outcome="enumerate"` the weight uses the expectation over every outcome
# of `r_o + V(h'_o)`, each `h'_o` with its own belief update, and the particle continues from
# a drawn outcome. Same parameters, argmax actions, the run's evaluation seeds.

# %%
enumerated = {}
for K in LEARNED_PARTICLES:
    enumerate_config = configs.replace(config, {"planner.num_particles": K, "planner.outcome": "enumerate"})
    budget_trainer = agents.make_trainer("varibased", task, enumerate_config)
    jax.eval_shape(budget_trainer.init, jax.random.key(0))
    returns = runner.evaluate_state(task, budget_trainer, state, EVAL_TRIALS, EVAL_SEED)
    enumerated[K] = score(returns)
    print(f"learned model, K={K:3d}, enumerated outcomes: normalized score {enumerated[K][0]:.3f} "
          f"(sampled outcome: {learned[K, 'argmax'][0]:.3f})")

fig, ax = plt.subplots(figsize=(5, 3.6))
for label, table in (("sampled outcome", {K: learned[K, "argmax"] for K in LEARNED_PARTICLES}),
                     ("enumerated outcomes", enumerated)):
    means = np.array([table[K][0] for K in LEARNED_PARTICLES])
    ses = np.array([table[K][1] for K in LEARNED_PARTICLES])
    ax.errorbar(LEARNED_PARTICLES, means, 2 * ses, marker="o", capsize=3, label=label)
ax.set_xscale("log", base=2)
ax.set_xlabel("particles K")
ax.set_ylabel("normalized score (± 2 s.e.)")
ax.set_title("learned model, argmax actions")
ax.legend()
figures.show("learned_argmax_vs_sampled")
