"""Reference agents and the rollout on a tiny task with an exact belief."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from varibased.models.rollout import evaluate, run_trials
from varibased.models.task import Task
from varibased.planning import reference_agents
from varibased.planning.references import ScoreAboveBayesOptimal, compute_references, normalized_score


def _boxes_task() -> Task:
    """A treasure in one of 3 boxes (uniform); opening the right box pays 1, else 0.

    One episode of 3 steps: a Bayes-optimal agent opens unopened boxes until it finds the
    treasure, then keeps opening it. Exact value: E = sum over positions of the treasure.
    """
    num_boxes = 3

    def prior():
        return {"box": numpyro.sample("box", dist.Categorical(jnp.ones(num_boxes) / num_boxes))}

    def belief_update(belief, state, action, reward):
        found = reward > 0.5
        point = jax.nn.one_hot(action, num_boxes)
        ruled_out = belief * (1 - point)
        return jnp.where(found, point, ruled_out / ruled_out.sum())

    def belief_sample(key, belief):
        return {"box": jax.random.categorical(key, jnp.log(belief))}

    return Task(
        name="boxes",
        num_actions=num_boxes,
        obs_dim=1,
        episode_length=3,
        num_episodes=1,
        prior=prior,
        initial_state=lambda: jnp.zeros((), jnp.int32),
        transition=lambda s, a: s + 1,
        observe=lambda s: jnp.asarray(s, jnp.float32)[None],
        reward_distribution=lambda p, s, a, n: dist.Categorical(
            probs=jax.nn.one_hot((p["box"] == a).astype(jnp.int32), 2)),
        reward_values=(0.0, 1.0),
        belief_init=lambda: jnp.ones(num_boxes) / num_boxes,
        belief_update=belief_update,
        belief_sample=belief_sample,
        belief_log_prob=lambda belief, p: jnp.log(belief[p["box"]]),
        oracle_action=lambda key, p, s, t: p["box"],
        thompson_resample="episode",
        # Found at step 1, 2, 3 w.p. 1/3 each -> returns 3, 2, 1: mean 2.
        bayes_optimal_value=lambda: (2.0, [2.0]),
    )


def test_oracle_random_and_posterior_sampling_values():
    task = _boxes_task()
    key = jax.random.key(0)
    oracle = evaluate(key, task, reference_agents.oracle_agent(task), 4000)
    random = evaluate(key, task, reference_agents.random_agent(task), 4000)
    sampling = evaluate(key, task, reference_agents.posterior_sampling_agent(task), 4000)
    assert oracle.mean == 3.0 and oracle.se == 0.0
    assert abs(random.mean - 1.0) < 4 * random.se  # each step pays 1 w.p. 1/3
    # Posterior sampling never reopens an empty box: it is Bayes-optimal here (mean 2).
    assert abs(sampling.mean - 2.0) < 4 * sampling.se


def test_posterior_sampling_never_repeats_a_ruled_out_box():
    task = _boxes_task()
    trajectory = run_trials(jax.random.key(1), task, reference_agents.posterior_sampling_agent(task), 500)
    actions = np.asarray(trajectory.transitions.action)
    rewards = np.asarray(trajectory.transitions.reward)
    for acts, rews in zip(actions, rewards, strict=True):
        empty = acts[rews == 0]
        assert len(set(empty.tolist())) == len(empty)  # an empty box is opened at most once
        assert set(acts[rews == 1].tolist()) <= {int(acts[-1])}  # once found, it stays there


def test_rollout_is_deterministic_given_a_key():
    task = _boxes_task()
    agent = reference_agents.posterior_sampling_agent(task)
    a = run_trials(jax.random.key(3), task, agent, 16)
    b = run_trials(jax.random.key(3), task, agent, 16)
    np.testing.assert_array_equal(a.transitions.action, b.transitions.action)


def test_references_and_normalized_score():
    task = _boxes_task()
    refs = compute_references(task, num_trials=2000)
    assert refs["reference"] == {"agent": "bayes_optimal", "mean": 2.0, "exact": True}
    assert refs["oracle"]["mean"] == 3.0
    score, _ = normalized_score(2.0, refs)
    assert np.isclose(score, 1.0)
    score, _ = normalized_score(refs["random"]["mean"], refs)
    assert np.isclose(score, 0.0)
    try:
        normalized_score(2.5, refs, se=0.01)
    except ScoreAboveBayesOptimal as error:
        assert "bug" in str(error)
    else:
        raise AssertionError("a score far above the exact Bayes-optimal value must fail loudly")
