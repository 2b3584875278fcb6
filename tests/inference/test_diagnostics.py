"""arviz conversion of learned and exact beliefs over a trial."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference import diagnostics
from varibased.models import belief, rollout
from varibased.models.bandit import make_bernoulli_bandit
from varibased.models.function_optimization import make_function_optimization
from varibased.models.gridworld import make_gridworld
from varibased.models.task import sample_task
from varibased.planning.reference_agents import random_agent

CONFIG = belief.BeliefConfig(latent_dim=3, hidden_size=16, state_size=8, decoder_hidden=(8, 8),
                             head_hidden=8, decoder_inputs=("moved_obs",))


@pytest.fixture(scope="module")
def trial():
    task = make_gridworld(size=3, episode_length=4, num_episodes=2, excluded=1)
    traj = rollout.run_trial(jax.random.key(0), task, random_agent(task),
                             {"goal": jnp.asarray(8, jnp.int32)})
    cells = np.arange(1, 9)
    queries = (jnp.stack([cells % 3, cells // 3], -1).astype(jnp.int32),
               jnp.zeros(8, jnp.int32))
    return task, traj, queries, cells


def test_learned_and_exact_beliefs_have_the_same_form(trial):
    task, traj, queries, cells = trial
    params = belief.init_params(jax.random.key(1), task, CONFIG)
    learned = diagnostics.learned_belief_to_arviz(jax.random.key(2), params, traj, task, CONFIG,
                                                  queries=queries, num_draws=20, num_chains=2,
                                                  query_coords=cells)
    exact = diagnostics.exact_belief_to_arviz(jax.random.key(3), task, traj, queries=queries,
                                              num_draws=400, num_chains=2, query_coords=cells)
    T = task.trial_length
    post_l, post_e = learned["posterior"], exact["posterior"]
    assert post_l["m"].dims == ("chain", "draw", "step", "latent")
    assert post_l["m"].shape == (2, 20, T + 1, 3)
    for post in (post_l, post_e):
        assert post["reward_probs"].dims == ("chain", "draw", "step", "query", "reward")
        assert post["reward_probs"].shape[2:] == (T + 1, 8, 2)
    # The exact draws' P(r = +1 | noop at c) average to the exact posterior over cells.
    beliefs = np.asarray(diagnostics.exact_trial_beliefs(task, traj))[:, cells]
    hit = post_e["reward_probs"].sel(reward=1.0).mean(("chain", "draw")).values
    np.testing.assert_allclose(hit, beliefs, atol=0.08)
    assert post_e["goal"].dims == ("chain", "draw", "step")
    summary = az.summary(learned, var_names=["m"])
    assert len(summary) == (T + 1) * 3 and np.all(np.isfinite(summary["mean"].astype(float)))
    assert len(az.summary(exact, var_names=["reward_probs"])) == (T + 1) * 8 * 2


def test_bad_draw_counts_are_rejected(trial):
    task, traj, queries, _ = trial
    with pytest.raises(ValueError, match="num_draws"):
        diagnostics.exact_belief_to_arviz(jax.random.key(0), task, traj, queries=queries,
                                          num_draws=0)


def test_trial_groups_and_the_iid_note(trial):
    task, traj, queries, cells = trial
    exact = diagnostics.exact_belief_to_arviz(jax.random.key(3), task, traj, queries=queries, num_draws=10)
    T = task.trial_length
    assert exact["observed_data"]["action"].dims == ("time",)
    observed = exact["observed_data"]["reward"].values
    np.testing.assert_array_equal(observed, np.asarray(traj.transitions.reward))
    assert exact["observed_data"]["action"].shape == (T,)
    assert int(exact["constant_data"]["true_goal"]) == 8
    assert "i.i.d." in exact["posterior"].attrs["note"]


@pytest.mark.parametrize("make, site, dim", [
    (lambda: make_bernoulli_bandit(num_arms=3, horizon=4), "p", "arm"),
    (lambda: make_function_optimization(num_points=8, num_queries=3), "f", "point"),
])
def test_exact_sites_have_named_dims(make, site, dim):
    task = make()
    traj = rollout.run_trial(jax.random.key(0), task, random_agent(task),
                             sample_task(jax.random.key(5), task))
    n = task.num_actions
    queries = (jnp.zeros(n, jnp.int32), jnp.arange(n))
    exact = diagnostics.exact_belief_to_arviz(jax.random.key(1), task, traj, queries=queries, num_draws=5)
    assert exact["posterior"][site].dims == ("chain", "draw", "step", dim)
    assert exact["constant_data"][f"true_{site}"].dims == (dim,)
    custom = diagnostics.exact_belief_to_arviz(jax.random.key(1), task, traj, queries=queries,
                                               num_draws=5, site_dims={site: ("x",)})
    assert custom["posterior"][site].dims[-1] == "x"


def test_learned_and_exact_in_one_forest_plot(trial):
    task, traj, queries, cells = trial
    params = belief.init_params(jax.random.key(1), task, CONFIG)
    # Labelled queries on one side only, and different numbers of draws: still comparable.
    learned = diagnostics.learned_belief_to_arviz(jax.random.key(2), params, traj, task, CONFIG,
                                                  queries=queries, num_draws=20, num_chains=2,
                                                  query_coords=cells)
    exact = diagnostics.exact_belief_to_arviz(jax.random.key(3), task, traj, queries=queries,
                                              num_draws=30, num_chains=2)
    plot = diagnostics.plot_belief_forest(learned, exact, step=4)
    assert "model" in plot.viz.dims or "model" in str(plot.aes)
    with pytest.raises(ValueError, match="not in both"):
        diagnostics.plot_belief_forest(learned, exact, step=4, var_name="m")
    relabelled = diagnostics.exact_belief_to_arviz(jax.random.key(3), task, traj, queries=queries,
                                                   num_draws=30, query_coords=cells + 10)
    with pytest.raises(ValueError, match="query labels differ"):
        diagnostics.plot_belief_forest(learned, relabelled, step=4)
