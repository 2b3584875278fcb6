"""arviz conversion of learned and exact beliefs over a trial."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference import diagnostics
from varibased.models import belief, rollout
from varibased.models.gridworld import make_gridworld
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
