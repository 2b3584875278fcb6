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
# # 03 — Belief diagnostics with arviz
#
# Three checks of the beliefs and of the planner that uses them:
#
# 1. **Learned vs exact (GridNavi).** A learned belief (the S5 amortized posterior of
#    `models.belief`, trained by SVI on trials of the posterior-sampling agent) and the exact
#    posterior over one held-out trial, both as arviz `DataTree`s
#    (`inference.diagnostics`), summarized and compared; then function optimization's
#    full-covariance belief against GP conditioning (calibration of its 90% intervals).
# 2. **A gold standard by NUTS.** On the function-optimization variant with an unknown
#    lengthscale (`function_optimization_lengthscale`), the posterior over the log-lengthscale
#    with `f` integrated out, sampled by blackjax NUTS (window adaptation, 4 chains) and
#    cross-checked by quadrature; R-hat and ESS from arviz.
# 3. **The SMC planner's weights.** Effective sample size per planning depth and resampling
#    frequency, from the planner agent's per-step info.
#
# `VARIBASED_SMOKE=1` runs a smoke budget in well under a minute once compiled.

# %%
import os

SMOKE = os.environ.get("VARIBASED_SMOKE") == "1"

import blackjax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
from figures import Figures  # notebooks/figures.py: save, then show
import numpy as np
import numpyro.distributions as dist

from varibased.inference.diagnostics import (
    exact_belief_to_arviz,
    exact_trial_beliefs,
    learned_belief_to_arviz,
    plot_belief_forest,
)
from varibased.inference.svi import SVIConfig, fit, make_belief_svi
from varibased.models import belief, registry
from varibased.models import decoder as decoder_lib
from varibased.models import history
from varibased.models.function_optimization import lengthscale_log_marginal, posterior_marginals
from varibased.models.gridworld import goal_prior_probs
from varibased.planning.config import PlannerConfig
from varibased.planning.model import exact_model
from varibased.planning.planner_agent import run_planner_trials
from varibased.planning.reference_agents import posterior_sampling_agent, random_agent
from varibased.models.rollout import run_trials
figures = Figures("03_belief_diagnostics" + ("_smoke" if SMOKE else ""))  # PNGs under runs/figures/

# arviz after numpyro: arviz-base registers numpyro as a lazy module, and if arviz is
# imported first numpyro.distributions later lacks its `distribution` attribute.
import arviz as az

# The belief benchmark's configurations (benchmarks/belief_accuracy.py): GridNavi with a
# 16-dimensional latent and KL weight 0.01 (a sharper belief reads out better here: mean TV
# 0.25 at weight 1, 0.08 at 0.01); function optimization with a linear decoder and the
# full-covariance "factors" guide (the exact GP posterior is in its family).
if SMOKE:
    TRAIN_TRIALS, SVI_UPDATES, BATCH, DRAWS = 32, 20, 16, 100
    BELIEF = belief.BeliefConfig(decoder_inputs=("moved_obs",), hidden_size=32, state_size=16,
                                 head_hidden=32, input_hidden=32, latent_dim=16, kl_weight=0.01)
    FO_BELIEF = belief.BeliefConfig(decoder_inputs=("action",), hidden_size=32, state_size=16,
                                    head_hidden=32, input_hidden=32, latent_dim=16, decoder="linear",
                                    guide="factors", decode="past")
    NUTS_WARMUP, NUTS_SAMPLES, PLANNER_TRIALS = 200, 500, 8
else:
    TRAIN_TRIALS, SVI_UPDATES, BATCH, DRAWS = 4096, 1500, 64, 500
    BELIEF = belief.BeliefConfig(decoder_inputs=("moved_obs",), latent_dim=16, kl_weight=0.01)
    FO_BELIEF = belief.BeliefConfig(decoder_inputs=("action",), latent_dim=16, decoder="linear",
                                    guide="factors", decode="past")
    NUTS_WARMUP, NUTS_SAMPLES, PLANNER_TRIALS = 1000, 2000, 64

# %% [markdown]
# ## 1. Learned vs exact posterior over the goal (GridNavi)
#
# Train the belief alone (ELBO only, no policy or value targets) on trials of the
# posterior-sampling agent, which acts with the exact belief.

# %%
grid_task = registry.make("gridworld")
data_key, held_key, fit_key, draw_key = jax.random.split(jax.random.key(0), 4)
expert = posterior_sampling_agent(grid_task)
generate = jax.jit(lambda key: run_trials(key, grid_task, expert, TRAIN_TRIALS))
data = history.batch_from_trajectory(grid_task, generate(data_key))
svi = make_belief_svi(grid_task, BELIEF, SVIConfig(learning_rate=5e-3))
init_state = jax.jit(svi.init)(fit_key, jax.tree.map(lambda x: x[:BATCH], data))
svi_state, losses = fit(fit_key, svi, data, num_updates=SVI_UPDATES, batch_size=BATCH,
                        state=init_state)
params = svi.get_params(svi_state)
print(f"SVI: loss {losses[:10].mean():.3f} (first 10 updates) -> {losses[-10:].mean():.3f} (last 10)")

# %% [markdown]
# One held-out trial (the first of the generated batch of a fresh key), read at the
# decoder's queries "noop in cell c" for the 21 candidate cells: `reward_probs` holds, per
# draw of the belief, the probability of each reward value (-0.1, +1) there.

# %%
held = jax.tree.map(lambda x: x[0], generate(held_key))
size = 5
candidates = np.flatnonzero(goal_prior_probs(size, 2) > 0)
positions = jnp.stack([jnp.asarray(candidates % size), jnp.asarray(candidates // size)], -1).astype(jnp.int32)
queries = (positions, jnp.zeros(len(candidates), jnp.int32))
learned = learned_belief_to_arviz(draw_key, params, held, grid_task, BELIEF, queries=queries,
                                  num_draws=DRAWS, num_chains=2, query_coords=candidates)
exact = exact_belief_to_arviz(draw_key, grid_task, held, queries=queries, num_draws=DRAWS,
                              num_chains=2, query_coords=candidates)
print(learned)

# %% [markdown]
# Both objects also hold the trial: `observed_data` (actions, rewards) and `constant_data`
# (the true task, `true_goal`). **R-hat and ESS in these summaries diagnose nothing**: the
# "chains" are i.i.d. draws of the belief split into groups, not Markov chains, so R-hat is
# about 1 and the ESS about the number of draws by construction (the posterior group's `note`
# attribute says so). They matter for MCMC, as for the NUTS gold standard below.

# %%
print(learned["observed_data"], learned["constant_data"], sep="\n")
print("note:", learned["posterior"].attrs["note"])
steps_shown = [0, 15, 30, 60]
az.summary(learned, var_names=["m"], coords={"step": steps_shown})

# %% [markdown]
# The probability of the goal reward in each candidate cell after 15 steps, learned vs
# exact (a draw of the exact posterior is one goal, so its per-draw values are 0 or 1 and
# its mean is the posterior probability of the cell).

# %%
plot_belief_forest(learned, exact, step=15)  # reward_probs at r = +1, learned and exact side by side
figures.show("forest_learned_vs_exact")


# %%
def goal_distribution(tree):
    """``[T+1, 21]``: ``p(c) ∝ E[P(r = +1 | noop in c)]``, renormalized over the candidates."""
    hit = tree.posterior["reward_probs"].sel(reward=1.0).mean(("chain", "draw")).values
    return hit / hit.sum(-1, keepdims=True)


p_learned = goal_distribution(learned)
p_exact = np.asarray(exact_trial_beliefs(grid_task, held))[:, candidates]  # exact, not from draws
tv = 0.5 * np.abs(p_learned - p_exact).sum(-1)
goal = int(held.task_params["goal"])
fig, axes = plt.subplots(1, len(steps_shown) + 1, figsize=(3.2 * (len(steps_shown) + 1), 3))
for ax, t in zip(axes, steps_shown, strict=False):
    ax.bar(np.arange(21) - 0.2, p_learned[t], 0.4, label="learned")
    ax.bar(np.arange(21) + 0.2, p_exact[t], 0.4, label="exact")
    ax.axvline(int(np.flatnonzero(candidates == goal)[0]), color="k", ls=":", lw=1)
    ax.set_title(f"t = {t}: TV {tv[t]:.2f}", fontsize=9)
    ax.set_xlabel("candidate cell")
axes[0].legend(fontsize=7)
axes[-1].plot(tv)
axes[-1].set_xlabel("step t")
axes[-1].set_title("total variation per step")
plt.tight_layout()
figures.show("goal_belief_tv")

# %% [markdown]
# ### Function optimization: a calibrated, full-covariance belief
#
# With a decoder linear in `m` the learned model is a Gaussian process with a learned
# rank-16 kernel, and the "factors" guide (pseudo-observations from the S5 features of every
# step, summed in natural parameters) can represent its exact posterior. Below: the learned
# and exact 90% intervals of `f` on one held-out trial, and the coverage of the true `f` by
# the learned intervals over 128 held-out trials (the exact posterior covers 90%).

# %%
fo_task = registry.make("function_optimization")
fo_expert = posterior_sampling_agent(fo_task)
fo_generate = jax.jit(lambda key, n: run_trials(key, fo_task, fo_expert, n), static_argnums=1)
fo_data = history.batch_from_trajectory(fo_task, fo_generate(data_key, TRAIN_TRIALS))
fo_svi = make_belief_svi(fo_task, FO_BELIEF, SVIConfig(learning_rate=5e-3))
fo_state, fo_losses = fit(fit_key, fo_svi, fo_data, num_updates=SVI_UPDATES // 3 * 2, batch_size=BATCH)
fo_params = fo_svi.get_params(fo_state)
fo_held = fo_generate(held_key, 128)
fo_queries = decoder_lib.query_inputs(fo_task, jnp.zeros(fo_task.num_actions, jnp.int32),
                                 jnp.arange(fo_task.num_actions))
fo_draws = np.asarray(jax.jit(jax.vmap(lambda k, trial: belief.trial_predictive(
    k, fo_params, trial, fo_queries, fo_task, FO_BELIEF, 256)))(
    jax.random.split(draw_key, 128), history.batch_from_trajectory(fo_task, fo_held)))  # [B, T+1, S, 32]
fo_mean, fo_sd = fo_draws.mean(2), fo_draws.std(2)
f_true = np.asarray(fo_held.task_params["f"])[:, None, :]
coverage = (np.abs(f_true - fo_mean) <= 1.645 * fo_sd).mean((0, 2))
exact_mean, exact_sd = map(np.asarray, jax.vmap(posterior_marginals)(
    exact_trial_beliefs(fo_task, jax.tree.map(lambda x: x[0], fo_held))))
print(f"coverage of f by the learned 90% intervals: {coverage.mean():.3f} over all steps")

x = np.linspace(0, 1, fo_task.num_actions)
fig, axes = plt.subplots(1, 4, figsize=(14, 3), sharey=True)
actions = np.asarray(fo_held.transitions.action[0])
rewards = np.asarray(fo_held.transitions.reward[0])
for ax, t in zip(axes[:3], (0, 4, 12), strict=True):
    ax.plot(x, f_true[0, 0], "k", lw=1.5, label="true f")
    for name, m, sd, c in (("learned", fo_mean[0, t], fo_sd[0, t], "tab:blue"),
                           ("exact", exact_mean[t], exact_sd[t], "tab:orange")):
        ax.plot(x, m, color=c, label=name)
        ax.fill_between(x, m - 1.645 * sd, m + 1.645 * sd, color=c, alpha=0.2)
    ax.scatter(x[actions[:t]], rewards[:t], color="red", s=15, zorder=3)
    ax.set_title(f"after {t} queries")
axes[0].legend(fontsize=7)
axes[3].plot(coverage, label="learned")
axes[3].axhline(0.9, color="k", ls=":", label="nominal")
axes[3].set_ylim(0, 1)
axes[3].set_title("coverage per step")
axes[3].legend(fontsize=7)
plt.tight_layout()
figures.show("function_belief_coverage")

# %% [markdown]
# ## 2. Gold standard by NUTS: the lengthscale of a GP
#
# In `function_optimization_lengthscale` the lengthscale has a `LogNormal(log 0.1, 0.5)`
# prior. Given one trial's queries and rewards, `f` integrates out in closed form
# (`lengthscale_log_marginal`), leaving a one-dimensional posterior over
# `u = log lengthscale`, whose prior is `Normal(log 0.1, 0.5)` (the LogNormal's Jacobian is
# absorbed by sampling in `u`). NUTS samples it; quadrature on a fine grid gives the answer
# it must match.

# %%
ls_task = registry.make("function_optimization_lengthscale")
trial = jax.tree.map(lambda x: x[0], jax.jit(
    lambda key: run_trials(key, ls_task, random_agent(ls_task), 1))(jax.random.key(3)))
actions, rewards = trial.transitions.action, trial.transitions.reward
true_lengthscale = float(trial.task_params["lengthscale"])
prior_u = dist.Normal(np.log(0.1), 0.5)


def log_posterior(position):
    """Unnormalized log p(u | D) for ``position = [u]``."""
    u = position[0]
    return lengthscale_log_marginal(jnp.exp(u), actions, rewards) + prior_u.log_prob(u)


def run_chain(rng_key, initial):
    warm_key, sample_key = jax.random.split(rng_key)
    warmup = blackjax.window_adaptation(blackjax.nuts, log_posterior)
    (state, parameters), _ = warmup.run(warm_key, initial, num_steps=NUTS_WARMUP)
    kernel = blackjax.nuts(log_posterior, **parameters).step

    def one_step(state, key):
        state, info = kernel(key, state)
        return state, (state.position[0], info.is_divergent)

    _, (samples, divergent) = jax.lax.scan(one_step, state, jax.random.split(sample_key, NUTS_SAMPLES))
    return samples, divergent


starts = jnp.log(jnp.array([[0.03], [0.1], [0.3], [1.0]]))  # over-dispersed starts
samples, divergent = jax.jit(jax.vmap(run_chain))(jax.random.split(jax.random.key(4), 4), starts)
nuts = az.from_dict({"posterior": {"log_lengthscale": np.asarray(samples)},
                     "sample_stats": {"diverging": np.asarray(divergent)}})
print(f"true lengthscale {true_lengthscale:.3f} (log {np.log(true_lengthscale):.3f}); "
      f"{int(divergent.sum())} divergences")
az.summary(nuts)

# %%
u_grid = jnp.linspace(-6.0, 2.0, 4001)
log_density = jax.vmap(lambda u: log_posterior(u[None]))(u_grid)
density = np.exp(np.asarray(log_density - log_density.max()))
density /= np.trapezoid(density, np.asarray(u_grid))
quad_mean = np.trapezoid(np.asarray(u_grid) * density, np.asarray(u_grid))
quad_sd = np.sqrt(np.trapezoid((np.asarray(u_grid) - quad_mean) ** 2 * density, np.asarray(u_grid)))
flat = np.asarray(samples).ravel()
ess = float(az.ess(nuts)["log_lengthscale"])
mcse = float(az.mcse(nuts)["log_lengthscale"])
print(f"quadrature: mean {quad_mean:.4f}, sd {quad_sd:.4f}")
print(f"NUTS:       mean {flat.mean():.4f} (MCSE {mcse:.4f}), sd {flat.std():.4f}; "
      f"R-hat {float(az.rhat(nuts)['log_lengthscale']):.4f}, ESS {ess:.0f}")
print(f"|mean difference| / MCSE = {abs(flat.mean() - quad_mean) / mcse:.2f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(flat, bins=60, density=True, alpha=0.5, label="NUTS (4 chains)")
ax.plot(u_grid, density, "k-", label="quadrature")
ax.plot(u_grid, np.exp(prior_u.log_prob(u_grid)), "k:", label="prior")
ax.axvline(np.log(true_lengthscale), color="tab:red", ls="--", label="true")
ax.set_xlim(float(min(flat.min(), np.log(0.01))), float(max(flat.max(), np.log(1.0))))
ax.set_xlabel("log lengthscale")
ax.legend(fontsize=8)
figures.show("lengthscale_posterior")

# %%
az.plot_trace_dist(nuts, var_names=["log_lengthscale"])
figures.show("nuts_trace")
az.plot_ess(nuts, var_names=["log_lengthscale"])
figures.show("nuts_ess")

# %% [markdown]
# ## 3. The Belief-SMC planner's weights
#
# The planner agent reports, at every real step, the ESS at the start of each depth and
# whether it resampled there. Here: the exact model of GridNavi (true posterior, true
# dynamics, QMDP value), `(K, K_omega, D) = (64, 4, 4)`, `alpha = 0.1`.

# %%
planner_config = PlannerConfig(num_particles=16 if SMOKE else 64, num_nested=4, depth=4, alpha=0.1)
plans = run_planner_trials(jax.random.key(5), grid_task, exact_model(grid_task), planner_config,
                           PLANNER_TRIALS)
ess = np.asarray(plans.info.ess) / planner_config.num_particles  # [B, T, D]
resampled = np.asarray(plans.info.resampled)  # [B, T, D]
print("return per trial:", float(plans.transitions.reward.sum(-1).mean()))
depths = np.arange(1, planner_config.depth + 1)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
axes[0].bar(depths, ess.mean((0, 1)))
axes[0].set_xlabel("depth d")
axes[0].set_ylabel("ESS / K at the start of depth d")
axes[1].bar(depths, resampled.mean((0, 1)))
axes[1].set_xlabel("depth d")
axes[1].set_ylabel("resampling frequency")
image = axes[2].imshow(ess.mean(0).T, aspect="auto", origin="lower", vmin=0, vmax=1,
                       extent=(-0.5, ess.shape[1] - 0.5, 0.5, planner_config.depth + 0.5))
axes[2].set_xlabel("real step t")
axes[2].set_ylabel("depth d")
axes[2].set_title("ESS / K")
fig.colorbar(image, ax=axes[2])
plt.tight_layout()
figures.show("planner_ess")
