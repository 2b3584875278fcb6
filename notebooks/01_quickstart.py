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
# # 01 — Quickstart: VariBASeD on GridNavi
#
# GridNavi (as in VariBAD): a 5x5 grid, the agent starts in the bottom-left corner, the goal
# is one of 21 cells, hidden, fixed for a trial of 4 episodes of 15 steps. Reward +1 on the
# goal, -0.1 elsewhere. A Bayes-optimal agent searches in episode 1 and walks straight to
# the goal in episodes 2-4.
#
# This notebook
# 1. trains VariBASeD (EM: Belief-SMC planning in the learned S5 belief, then SVI on the
#    joint objective) into a run directory, exactly as `varibased train` does;
# 2. plots its learning curve against the reference agents (random, posterior sampling,
#    exact Bayes-optimal, oracle);
# 3. watches one trial: the agent's path in each episode next to its learned belief over the
#    goal and the exact posterior.
#
# Budget: set `VARIBASED_SMOKE=1` for a seconds-long smoke run (the test suite does);
# the default trains for a few minutes on a 2-core CPU — far from converged: raise
# `NUM_ENV_STEPS` for a real run (see `make demo` / `varibased train`).

# %%
import os
import pathlib

SMOKE = os.environ.get("VARIBASED_SMOKE") == "1"

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
from matplotlib.colors import PowerNorm
from figures import Figures  # notebooks/figures.py: save, then show
import numpy as np

from varibased.inference import agents, checkpoint, runner
from varibased.inference.diagnostics import exact_trial_beliefs
from varibased.inference.svi import make_belief_svi
from varibased.models import belief, registry
from varibased.models import decoder as decoder_lib
from varibased.models import history
from varibased.models.belief import BeliefParams
from varibased.models.gridworld import ACTION_NAMES, goal_prior_probs
from varibased.planning.references import references
from varibased.models.rollout import run_trials
figures = Figures("01_quickstart" + ("_smoke" if SMOKE else ""))  # PNGs under runs/figures/

TASK = "gridworld"
SEED = 0
if SMOKE:  # tiny: a few seconds of training once compiled
    OVERRIDES = dict(num_envs=8, num_particles=4, num_nested=2, depth=2, svi_updates=2,
                     batch_trials=8, replay_trials=16, hidden_size=32, state_size=16, head_hidden=32)
    NUM_ENV_STEPS, EVAL_TRIALS, REFERENCE_TRIALS = 2 * 8 * 60, 16, 200
else:
    OVERRIDES = {}  # the per-task defaults of EMConfig: 32 envs, (K, K_omega, D) = (16, 4, 4)
    NUM_ENV_STEPS, EVAL_TRIALS, REFERENCE_TRIALS = 100_000, 256, 2000
RUN_DIR = pathlib.Path("runs") / ("01_quickstart" + ("_smoke" if SMOKE else ""))

# %% [markdown]
# ## Train
#
# `agents.make_config` gives the per-task defaults of `inference.em.EMConfig` with our
# overrides; `runner.run` trains and runs the evaluation protocol (greedy actions on held-out trials
# every `eval_every` steps), writes `config.json`, `metrics.csv`, `evaluations.json`,
# `checkpoint.npz` and `learning_curve.png`, and resumes if the directory already holds this
# run (re-running the notebook continues it instead of starting over).

# %%
task = registry.make(TASK)
config = agents.make_config("varibased", TASK, OVERRIDES)
trainer = agents.make_trainer("varibased", task, config)
refs = references(TASK, num_trials=REFERENCE_TRIALS)
# resume="auto": continue this run if RUN_DIR holds it, else train in a fresh sibling dir
summary = runner.run(TASK, "varibased", OVERRIDES, NUM_ENV_STEPS, RUN_DIR, resume="auto", seed=SEED,
                     eval_every=max(NUM_ENV_STEPS // (2 if SMOKE else 8), 1), eval_trials=EVAL_TRIALS,
                     reference_trials=REFERENCE_TRIALS, progress=not SMOKE)
RUN_DIR = pathlib.Path(summary["run_dir"])
print(f"{summary['env_steps']} env steps in {summary['wall_seconds']:.1f} s "
      f"(+ {summary['compile_seconds']:.1f} s compilation); "
      f"normalized score {summary['final_normalized_score']:.3f} (random 0, Bayes-optimal 1)")

# %% [markdown]
# ## Learning curve against the references
#
# Return per trial of the greedy agent on held-out trials, with the references computed by
# `planning.references.references` (exact Bayes-optimal value by dynamic programming).
# The run directory holds the same curve as `learning_curve.png`, beside `trial.png` (one
# held-out trial: paths and beliefs, as below) and `diagnostics.png` (loss terms, planner
# ESS, target entropy, value estimate vs return): see `varibased.inference.pictures`.

# %%
evaluations = summary["evaluations"]
steps = np.array([e["env_steps"] for e in evaluations])
means = np.array([e["mean_return"] for e in evaluations])
ses = np.array([e["se"] for e in evaluations])
fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(steps, means, "o-", label="VariBASeD (greedy)")
ax.fill_between(steps, means - 2 * ses, means + 2 * ses, alpha=0.2, label="± 2 s.e. (held-out trials)")
for name, style in [("random", ":"), ("posterior_sampling", "-."), ("bayes_optimal", "--"),
                    ("oracle", (0, (1, 3)))]:
    ax.axhline(refs[name]["mean"], color="k", ls=style, lw=1, label=name)
ax.set_xlabel("environment steps")
ax.set_ylabel("return per trial")
ax.legend(fontsize=8)
ax.set_title("VariBASeD on GridNavi")
figures.show("learning_curve")

# %% [markdown]
# ## Watch one trial
#
# Load the checkpoint (any run directory works the same way), run one held-out trial with
# the greedy planner, and read the learned belief over the goal at every step: for each of
# the 21 candidate cells `c`, `p(c) ∝ E_q[P(r = +1 | noop in c, m)]`, averaged over draws of
# `q(m | h_t)` and renormalized (as in `benchmarks/belief_accuracy.py`). The exact posterior
# is uniform over the candidates not yet visited until the goal is found.

# %%
template = jax.jit(trainer.init)(jax.random.key(SEED))
state, meta = checkpoint.load(RUN_DIR / runner.CHECKPOINT_FILE, template)


def belief_params(state) -> BeliefParams:
    """The learned model's parameters held by an EM training state."""
    svi = make_belief_svi(task, config.belief_config())
    return BeliefParams(**svi.svi.optim.get_params(state.svi_state.optim_state))


params = belief_params(state)
agent = trainer.agent(state, True)
trajectory = jax.jit(lambda key: run_trials(key, task, agent, 1))(jax.random.key(2024))
trial = jax.tree.map(lambda x: x[0], trajectory)
goal = int(trial.task_params["goal"])
rewards = np.asarray(trial.transitions.reward)
print(f"goal cell {goal} = (x, y) = ({goal % 5}, {goal // 5}); return {rewards.sum():.1f}; "
      f"per episode {rewards.reshape(4, 15).sum(1).round(1).tolist()}")

# %%
size = 5
prior = goal_prior_probs(size, 2)
candidates = np.flatnonzero(prior > 0)
positions = jnp.stack([jnp.asarray(candidates % size), jnp.asarray(candidates // size)], -1).astype(jnp.int32)
queries = decoder_lib.query_inputs(task, positions, jnp.zeros(len(candidates), jnp.int32))
goal_index = int(np.argmax(task.reward_values))


@jax.jit
def learned_goal_belief(rng_key, trial_batch):
    """``[T+1, 21]``: the learned belief over the candidate goals at every step."""
    probs = belief.trial_predictive(rng_key, params, trial_batch, queries, task,
                                    config.belief_config(), 64)
    hit = probs[..., goal_index].mean(1)  # [T+1, Q]
    return hit / hit.sum(-1, keepdims=True)


p_learned = np.asarray(learned_goal_belief(jax.random.key(1), history.batch_from_trajectory(task, trial)))
p_exact = np.asarray(exact_trial_beliefs(task, trial))[:, candidates]
tv = 0.5 * np.abs(p_learned - p_exact).sum(-1)
print("total variation learned vs exact, per episode:", tv[1:].reshape(4, 15).mean(1).round(3).tolist())

# %%
before = np.asarray(trial.transitions.env_state.state)  # [T, 2] position before each move
actions = np.asarray(trial.transitions.action)
moved = np.asarray(jax.vmap(task.transition)(jnp.asarray(before), jnp.asarray(actions)))  # cell entered
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for episode, ax in enumerate(axes):
    steps_of = slice(15 * episode, 15 * (episode + 1))
    path = np.vstack([before[steps_of][:1], moved[steps_of]])  # start, then every cell entered
    offset = np.linspace(-0.15, 0.15, len(path))  # separate revisits a little
    ax.plot(path[:, 0] + offset, path[:, 1] + offset, "o-", ms=3, color="tab:blue")
    ax.plot(goal % size, goal // size, "*", ms=18, color="gold", mec="k")
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(-0.5, size - 0.5)
    ax.set_xticks(range(size))
    ax.set_yticks(range(size))
    ax.grid(True, lw=0.5)
    ax.set_aspect("equal")
    ax.set_title(f"episode {episode + 1}: return {rewards[steps_of].sum():.1f}")
fig.suptitle("the agent's path (start at (0, 0), goal = star)")
figures.show("paths")


# %%
def as_grid(p_candidates):
    grid = np.full(size * size, np.nan)
    grid[candidates] = p_candidates
    return grid.reshape(size, size)


shown = [0, 5, 15, 30, 60]
# One colour scale for every panel (a square-root scale, so that the uniform 1/21 of the
# exact prior is visible next to a point mass of 1), and one colour bar.
norm = PowerNorm(0.5, vmin=0.0, vmax=1.0)
fig, axes = plt.subplots(2, len(shown), figsize=(2.6 * len(shown) + 1, 5.4), layout="constrained")
for col, t in enumerate(shown):
    for row, (name, p) in enumerate([("learned", p_learned), ("exact", p_exact)]):
        ax = axes[row, col]
        image = ax.imshow(as_grid(p[t]), origin="lower", cmap="viridis", norm=norm)
        ax.plot(goal % size, goal // size, "*", ms=12, color="gold", mec="k")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}, t = {t}", fontsize=9)
fig.colorbar(image, ax=axes, shrink=0.9, label="P(goal = cell), one scale for all panels")
fig.suptitle("belief over the goal after t steps (top: learned q, bottom: exact posterior)")
figures.show("belief_heat_maps")
print("actions of episode 1:", [ACTION_NAMES[a] for a in actions[:15]])
