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
# # 05 — Bring your own task
#
# A task is one `models.task.Task`: pure functions for ONE state and ONE action (the prior
# as a NumPyro model, the known transition, the observation, the reward distribution), plus
# optional exact-belief and reference fields. Register it, and the references, the
# exact-model planner, the learned belief, EM training and the arviz diagnostics all work on
# it. **The next cell is the only task code in this notebook**; everything after it is
# library calls.
#
# The task: *treasure in one of k boxes*. The treasure lies in a box drawn uniformly; each
# step the agent opens a box and gets +1 if the treasure is there (it stays there: open it
# again for another +1), -0.1 otherwise. A trial is 2 episodes of 5 steps. The Bayes-optimal
# agent opens unopened boxes in turn until it finds the treasure, then keeps opening that box.

# %%
import fractions

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from varibased.models.task import Task

OPEN_COST, TREASURE = -0.1, 1.0


def make_treasure(num_boxes: int = 5, episode_length: int = 5, num_episodes: int = 2) -> Task:
    trial_length = episode_length * num_episodes

    def prior():
        box = numpyro.sample("box", dist.Categorical(probs=jnp.ones(num_boxes) / num_boxes))
        return {"box": jnp.asarray(box, jnp.int32)}

    def reward_distribution(task_params, state, action, next_state):  # index into (OPEN_COST, TREASURE)
        return dist.Categorical(probs=jax.nn.one_hot((action == task_params["box"]).astype(jnp.int32), 2))

    def belief_update(belief, state, action, reward):  # exact Bayes rule on the boxes
        found = reward > 0.5 * (OPEN_COST + TREASURE)
        consistent = jnp.where(found, jnp.arange(num_boxes) == action, jnp.arange(num_boxes) != action)
        posterior = belief * consistent
        return posterior / jnp.maximum(posterior.sum(), 1e-30)

    def bayes_optimal_value():  # search in turn: the treasure is found at step j ~ U{1..k}
        returns = [[OPEN_COST if t < j else TREASURE for t in range(1, trial_length + 1)]
                   for j in range(1, num_boxes + 1)]
        per_episode = [float(sum(fractions.Fraction(str(r)) for ret in returns
                                 for r in ret[e * episode_length:(e + 1) * episode_length]) / num_boxes)
                       for e in range(num_episodes)]
        return sum(per_episode), per_episode

    return Task(
        name="treasure", num_actions=num_boxes, obs_dim=1, episode_length=episode_length,
        num_episodes=num_episodes, prior=prior,
        initial_state=lambda: jnp.zeros((), jnp.int32),
        transition=lambda state, action: state,
        observe=lambda state: jnp.ones((1,), jnp.float32),
        reward_distribution=reward_distribution, reward_values=(OPEN_COST, TREASURE),
        belief_init=lambda: jnp.ones(num_boxes) / num_boxes,
        belief_update=belief_update,
        belief_sample=lambda key, belief: {"box": jax.random.categorical(key, jnp.log(belief))},
        belief_log_prob=lambda belief, task_params: jnp.log(belief[task_params["box"]]),
        optimal_value=lambda task_params, state, t: TREASURE * jnp.maximum(trial_length - t, 0.0),
        oracle_action=lambda key, task_params, state, t: task_params["box"],
        bayes_optimal_value=bayes_optimal_value,
        description=f"treasure in one of {num_boxes} boxes",
    )


# %% [markdown]
# ## Register, then use the library

# %%
import os
import pathlib

SMOKE = os.environ.get("VARIBASED_SMOKE") == "1"

import matplotlib.pyplot as plt
from figures import Figures  # notebooks/figures.py: save, then show
import numpy as np

from varibased.inference import agents, runner
from varibased.inference.diagnostics import (
    exact_belief_to_arviz,
    exact_trial_beliefs,
    learned_belief_to_arviz,
)
from varibased.inference.plotting import format_reference_table
from varibased.inference.svi import SVIConfig, fit, make_belief_svi
from varibased.models import belief, registry
from varibased.models import history
from varibased.planning.config import PlannerConfig
from varibased.planning.model import exact_model
from varibased.planning.planner_agent import run_planner_trials
from varibased.planning.references import normalized_scores, references
from varibased.planning.reference_agents import posterior_sampling_agent
from varibased.models.rollout import run_trials

import arviz as az  # after numpyro (see notebook 03)
figures = Figures("05_bring_your_own_task" + ("_smoke" if SMOKE else ""))  # PNGs under runs/figures/

registry.register("treasure", make_treasure, overwrite=True)  # validated now, before any compilation
task = registry.make("treasure")
print(task.description, "| trial length", task.trial_length)
if SMOKE:
    TRIALS, SVI_UPDATES, EM_STEPS = 64, 30, 2 * 8 * 10
    SMALL = dict(hidden_size=32, state_size=16, head_hidden=32)
else:
    TRIALS, SVI_UPDATES, EM_STEPS = 512, 1000, 64 * 10 * 150
    SMALL = {}

# %% [markdown]
# ### References: random, oracle, posterior sampling, exact Bayes-optimal

# %%
refs = references("treasure", num_trials=500 if SMOKE else 2000)
print(format_reference_table({"treasure": refs}))

# %% [markdown]
# ### Planning with the exact model
#
# The Belief-SMC planner on the task's own exact belief (and the QMDP value, computed
# exactly by enumerating the 5 boxes). Its score cannot exceed 1 (the exact Bayes-optimal
# value) by more than noise: `normalized_scores` raises if it does.

# %%
for K in (4, 32):
    config = PlannerConfig(num_particles=K, num_nested=4, depth=3, alpha=0.1)
    trajectory = run_planner_trials(jax.random.key(0), task, exact_model(task), config, TRIALS)
    score, se = normalized_scores(np.asarray(trajectory.transitions.reward.sum(-1)), refs)
    print(f"exact-model planner, K = {K:2d}: normalized score {score:.3f} ± {se:.3f}")

# %% [markdown]
# ### A learned belief (SVI) and its diagnostic against the exact posterior
#
# Train the S5 belief on trials of the posterior-sampling agent, then compare, on a held-out
# trial, its probability of the treasure reward in each box with the exact posterior.

# %%
belief_config = belief.BeliefConfig(decoder_inputs=("action",), **SMALL)
expert = posterior_sampling_agent(task)
generate = jax.jit(lambda key: run_trials(key, task, expert, TRIALS))
data = history.batch_from_trajectory(task, generate(jax.random.key(1)))
svi = make_belief_svi(task, belief_config, SVIConfig(learning_rate=3e-3))
init_state = jax.jit(svi.init)(jax.random.key(2), jax.tree.map(lambda x: x[:32], data))
svi_state, losses = fit(jax.random.key(2), svi, data, num_updates=SVI_UPDATES, batch_size=32,
                        state=init_state)
params = svi.get_params(svi_state)
print(f"SVI loss {losses[:10].mean():.3f} -> {losses[-10:].mean():.3f}")

held = jax.tree.map(lambda x: x[0], generate(jax.random.key(3)))
queries = (jnp.zeros(task.num_actions, jnp.int32), jnp.arange(task.num_actions))  # open each box
learned = learned_belief_to_arviz(jax.random.key(4), params, held, task, belief_config, queries=queries,
                                  num_draws=200, num_chains=2)
exact = exact_belief_to_arviz(jax.random.key(4), task, held, queries=queries, num_draws=200, num_chains=2)
az.summary(learned, var_names=["reward_probs"], coords={"step": [0, 3, 10], "reward": [1.0]})

# %%
hit = learned.posterior["reward_probs"].sel(reward=1.0).mean(("chain", "draw")).values  # [T+1, boxes]
p_learned = hit / hit.sum(-1, keepdims=True)
p_exact = np.asarray(exact_trial_beliefs(task, held))
print("treasure in box", int(held.task_params["box"]), "| boxes opened:",
      np.asarray(held.transitions.action).tolist())
fig, axes = plt.subplots(1, 4, figsize=(13, 2.8), sharey=True)
for ax, t in zip(axes, (0, 1, 2, 4), strict=True):
    ax.bar(np.arange(task.num_actions) - 0.2, p_learned[t], 0.4, label="learned")
    ax.bar(np.arange(task.num_actions) + 0.2, p_exact[t], 0.4, label="exact")
    ax.set_title(f"after {t} steps: TV {0.5 * np.abs(p_learned[t] - p_exact[t]).sum():.2f}", fontsize=9)
    ax.set_xlabel("box")
axes[0].legend(fontsize=7)
figures.show("treasure_belief")

# %% [markdown]
# ### A short VariBASeD (EM) run
#
# Exactly as for the built-in tasks: `EMConfig.for_task` gives the plain defaults for a new
# task id; we tell the decoder the reward depends only on the action.

# %%
OVERRIDES = dict(decoder_inputs=("action",), alpha=0.5,
                 **(dict(num_envs=8, num_particles=4, num_nested=2, depth=2, svi_updates=2, batch_trials=8,
                         replay_trials=16) if SMOKE else {}), **SMALL)
config = agents.make_config("varibased", "treasure", OVERRIDES)
trainer = agents.make_trainer("varibased", task, config)
run_dir = pathlib.Path("runs") / ("05_treasure" + ("_smoke" if SMOKE else ""))
# the same call as for a built-in task; resume="auto" continues a run of this config
summary = runner.run("treasure", "varibased", OVERRIDES, EM_STEPS, run_dir, resume="auto",
                     eval_every=max(EM_STEPS // 4, 1), eval_trials=64 if SMOKE else 512,
                     refs=refs, progress=not SMOKE)
for e in summary["evaluations"]:
    print(f"{e['env_steps']:7d} env steps: normalized score {e['normalized_score']:.3f} "
          f"± {e['normalized_score_se']:.3f}")
