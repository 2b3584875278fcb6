"""A user's own task, structurally unlike the built-ins, runs through the whole library.

The task below (a Gaussian-armed bandit: continuous rewards, Normal-Normal conjugate exact
belief, no exact Bayes-optimal value) is the only code written here; everything else is
library calls, with no library change: register it, compute its references, plan with its
exact model, train the learned belief by SVI, plan with the learned model, read the belief
as arviz objects, and run one EM iteration.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from varibased.models.task import Task

NUM_ARMS, HORIZON, NOISE, PRIOR_SCALE = 3, 8, 0.5, 1.0
NAME = "gaussian_bandit_test"


def make_gaussian_bandit() -> Task:
    """Arm means ``mu_a ~ N(0, 1)``; pulling arm ``a`` pays ``N(mu_a, 0.5^2)``; 8 pulls."""

    def prior():
        return {"means": numpyro.sample("means", dist.Normal(jnp.zeros(NUM_ARMS), PRIOR_SCALE).to_event(1))}

    def reward_distribution(task_params, state, action, next_state):
        return dist.Normal(task_params["means"][action], NOISE)

    def belief_init():  # per arm: posterior precision and precision-weighted mean
        return {"precision": jnp.full(NUM_ARMS, PRIOR_SCALE**-2), "weighted": jnp.zeros(NUM_ARMS)}

    def belief_update(belief, state, action, reward):
        return {"precision": belief["precision"].at[action].add(NOISE**-2),
                "weighted": belief["weighted"].at[action].add(reward / NOISE**2)}

    def posterior(belief):
        return dist.Normal(belief["weighted"] / belief["precision"], belief["precision"] ** -0.5)

    return Task(
        name=NAME, num_actions=NUM_ARMS, obs_dim=1, episode_length=HORIZON, num_episodes=1,
        prior=prior,
        initial_state=lambda: jnp.zeros((), jnp.int32),
        transition=lambda state, action: state,
        observe=lambda state: jnp.ones((1,), jnp.float32),
        reward_distribution=reward_distribution,
        belief_init=belief_init,
        belief_update=belief_update,
        belief_sample=lambda key, belief: {"means": posterior(belief).sample(key)},
        belief_log_prob=lambda belief, params: posterior(belief).log_prob(params["means"]).sum(),
        optimal_value=lambda params, state, t: (jnp.maximum(HORIZON - t, 0) * params["means"].max()).astype(
            jnp.float32),
        oracle_action=lambda key, params, state, t: jnp.argmax(params["means"]).astype(jnp.int32),
        thompson_resample="step",
        description="Gaussian-armed bandit",
    )


# E[max of 3 iid N(0, 1)] = 3 / (2 sqrt(pi)).
EXPECTED_MAX_OF_THREE = 3.0 / (2.0 * math.sqrt(math.pi))


@pytest.fixture(scope="module")
def task():
    from varibased.models import registry

    registry.register(NAME, make_gaussian_bandit, overwrite=True)
    yield registry.make(NAME)
    registry.unregister(NAME)


@pytest.fixture(scope="module")
def refs(task):
    from varibased.planning.references import compute_references

    return compute_references(task, num_trials=2000, seed=0)


def test_registered_and_rejected_when_broken(task):
    from varibased.models import registry
    from varibased.models.task import TaskError

    assert NAME in registry.names() and not task.categorical_rewards and task.has_exact_belief
    with pytest.raises(TaskError, match="observe"):
        registry.register("broken_bandit", lambda: Task(**{
            **{f: getattr(task, f) for f in ("num_actions", "episode_length", "num_episodes", "prior",
                                             "initial_state", "transition", "reward_distribution")},
            "name": "broken_bandit", "obs_dim": 2, "observe": task.observe}))


def test_references_match_closed_forms(task, refs):
    # The oracle earns HORIZON * E[max_a mu_a]; random earns E[mu] = 0 per pull.
    oracle, random = refs["oracle"], refs["random"]
    assert abs(oracle["mean"] - HORIZON * EXPECTED_MAX_OF_THREE) < 4 * oracle["se"]
    assert abs(random["mean"]) < 4 * random["se"]
    assert refs["reference"]["agent"] == "oracle" and not refs["reference"]["exact"]
    assert random["mean"] < refs["posterior_sampling"]["mean"] < oracle["mean"]


def test_exact_model_planner_beats_random(task, refs):
    from varibased.planning.config import PlannerConfig
    from varibased.planning.model import exact_model
    from varibased.planning.planner_agent import run_planner_trials

    config = PlannerConfig(num_particles=16, num_nested=4, depth=2, alpha=0.5)
    trajectory = run_planner_trials(jax.random.key(1), task, exact_model(task), config, 256)
    returns = np.asarray(trajectory.transitions.reward.sum(-1))
    se = math.hypot(returns.std(ddof=1) / math.sqrt(len(returns)), refs["random"]["se"])
    assert returns.mean() - refs["random"]["mean"] > 5 * se
    policies = np.asarray(trajectory.info.policy)
    np.testing.assert_allclose(policies.sum(-1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def trained_belief(task):
    from varibased.inference.svi import SVIConfig, fit, make_belief_svi
    from varibased.models import belief, history
    from varibased.models.rollout import run_trials
    from varibased.planning.reference_agents import posterior_sampling_agent

    config = belief.BeliefConfig(latent_dim=3, hidden_size=16, state_size=8, decoder_hidden=(16,),
                                 head_hidden=16, input_hidden=16, decoder_inputs=("action",))
    expert = posterior_sampling_agent(task)
    trajectory = jax.jit(lambda k: run_trials(k, task, expert, 128))(jax.random.key(2))
    data = history.batch_from_trajectory(task, trajectory)
    svi = make_belief_svi(task, config, SVIConfig(learning_rate=3e-3))
    state, losses = fit(jax.random.key(3), svi, data, num_updates=200, batch_size=32, updates_per_call=50)
    return config, svi.get_params(state), losses, trajectory


def test_svi_trains_a_gaussian_decoder(trained_belief):
    config, params, losses, _ = trained_belief
    assert np.all(np.isfinite(losses))
    assert losses[-20:].mean() < losses[:20].mean()
    # Continuous rewards: a Gaussian decoder with its own learned noise scale.
    assert "log_scale" in params.decoder and np.isfinite(float(params.decoder["log_scale"]))


def test_learned_belief_as_arviz_and_planning(task, trained_belief):
    from varibased.inference.diagnostics import exact_belief_to_arviz, learned_belief_to_arviz
    from varibased.planning.config import PlannerConfig
    from varibased.planning.learned_model import learned_model
    from varibased.planning.planner_agent import run_planner_trials

    config, params, _, trajectory = trained_belief
    trial = jax.tree.map(lambda x: x[0], trajectory)
    queries = (jnp.zeros(NUM_ARMS, jnp.int32), jnp.arange(NUM_ARMS))
    learned = learned_belief_to_arviz(jax.random.key(4), params, trial, task, config, queries=queries,
                                      num_draws=50, num_chains=2)
    exact = exact_belief_to_arviz(jax.random.key(4), task, trial, queries=queries, num_draws=50, num_chains=2)
    assert learned.posterior["reward_mean"].shape == (2, 50, HORIZON + 1, NUM_ARMS)
    assert exact.posterior["means"].shape == (2, 50, HORIZON + 1, NUM_ARMS)
    # The exact draws' reward means are the arm means themselves.
    np.testing.assert_allclose(exact.posterior["reward_mean"].values, exact.posterior["means"].values,
                               rtol=1e-6)

    model = learned_model(task, config, params)
    plan = PlannerConfig(num_particles=8, num_nested=2, depth=2, alpha=0.5)
    planned = run_planner_trials(jax.random.key(5), task, model, plan, 16)
    assert planned.transitions.reward.shape == (16, HORIZON)
    assert np.all(np.isfinite(np.asarray(planned.info.value)))


def test_one_em_iteration(task):
    from varibased.inference.em import EMConfig, make_trainer

    config = EMConfig.for_task(NAME, num_envs=8, num_particles=4, num_nested=2, depth=2, svi_updates=2,
                               batch_trials=8, replay_trials=16, latent_dim=3, hidden_size=16, state_size=8,
                               decoder_hidden=(16,), head_hidden=16, decoder_inputs=("action",), alpha=0.5)
    trainer = make_trainer(task, config)
    state = jax.jit(trainer.init)(jax.random.key(6))
    new_state, metrics = jax.jit(trainer.iteration)(state)
    assert int(new_state.env_steps) == trainer.env_steps_per_iteration == 8 * HORIZON
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.svi_state.optim_state,
                           new_state.svi_state.optim_state)
    assert any(jax.tree.leaves(changed))
    assert int(new_state.replay.size) == 8
