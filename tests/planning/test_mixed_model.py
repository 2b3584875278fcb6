"""The mixed planning model: with every part from one model it IS that model (same choices,
same planner targets on the same keys); mixed parts read the node they name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference.em import EMConfig
from varibased.models import belief, registry
from varibased.models.rollout import run_trials
from varibased.planning.config import PlannerConfig
from varibased.planning.learned_model import learned_model
from varibased.planning.mixed_model import CHAIN, MixedParts, mixed_model
from varibased.planning.model import exact_model
from varibased.planning.planner_agent import make_planner_agent

NUM_TRIALS = 4


@pytest.fixture(scope="module")
def setup():
    task = registry.make("gridworld", size=3, episode_length=4, num_episodes=2, excluded=1)
    config = EMConfig.for_task("gridworld", num_envs=4, replay_trials=8, batch_trials=4,
                               hidden_size=8, state_size=4, head_hidden=8, input_hidden=8,
                               decoder_hidden=(8,), latent_dim=2)
    params = belief.init_params(jax.random.key(3), task, config.belief_config())
    # perturb the heads so the learned policy is far from uniform
    params = jax.tree.map(lambda x: x * 3.0, params)
    planner = PlannerConfig(num_particles=8, num_nested=2, depth=3, action_selection="argmax")
    return task, config.belief_config(), params, planner


def _run(task, planner, build, params):
    @jax.jit
    def go(params):
        agent = make_planner_agent(build(params), planner)
        trajectory = run_trials(jax.random.key(7), task, agent, NUM_TRIALS)
        return trajectory.transitions.action, trajectory.info.policy, trajectory.info.value

    return [np.asarray(x) for x in go(params)]


@pytest.mark.parametrize("column, reference", [("all_exact", "exact"), ("learned_belief", "learned")])
def test_all_parts_from_one_model_equal_that_model(setup, column, reference):
    task, belief_config, params, planner = setup
    exact = exact_model(task)

    def single(params):
        return exact if reference == "exact" else learned_model(task, belief_config, params)

    def mixed(params):
        return mixed_model(exact, learned_model(task, belief_config, params), CHAIN[column])

    expected = _run(task, planner, single, params)
    got = _run(task, planner, mixed, params)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_mixed_parts_read_the_node_they_name(setup):
    task, belief_config, params, _ = setup
    exact = exact_model(task)
    learned = learned_model(task, belief_config, params)
    model = mixed_model(exact, learned, CHAIN["learned_value"])
    node = model.init(jax.random.key(0))
    np.testing.assert_allclose(model.policy_logits(node), learned.policy_logits(node.learned))
    omegas = model.sample_tasks(jax.random.key(1), node, 3)
    assert omegas.belief["goal"].shape == (3,)  # exact tasks drive the simulator
    np.testing.assert_allclose(model.value(node, omegas), learned.value(node.learned, ()))
    reward, outcome = model.simulate(jax.random.key(2), node, jnp.int32(2), omegas, False)
    expected = exact.simulate(jax.random.key(2), node.exact, jnp.int32(2), omegas.belief, False)
    np.testing.assert_allclose(reward, expected[0])
    after = model.advance(node, jnp.int32(2), outcome, True)
    assert int(after.exact.t) == int(after.learned.t) == 1
    assert not np.allclose(after.learned.features, node.learned.features)
    with pytest.raises(ValueError, match="proposal"):
        MixedParts(proposal="oracle")
