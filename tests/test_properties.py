"""Property tests (hypothesis) on invariants that must hold for every input.

Each property compiles its function once: hypothesis draws data (actions, weights, reset
patterns, beliefs) passed as arrays to one jitted function, with shapes from a small fixed
set. ``derandomize=True`` keeps CI stable; ``max_examples`` is small for speed.

Marks: ``tracer_leaks`` (CI reruns them with ``JAX_CHECK_TRACER_LEAKS=1``) and ``x64``
(numerics also checked with ``JAX_ENABLE_X64=1``).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varibased.models import registry, s5
from varibased.models import task as task_lib
from varibased.models.gridworld import GOAL_REWARD, STEP_REWARD, cell_index
from varibased.planning import smc
from varibased.planning.config import RESAMPLING_SCHEMES, PlannerConfig
from varibased.planning.model import exact_model

pytestmark = pytest.mark.tracer_leaks

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)

# --------------------------------------------------------------------------------------
# GridNavi: dynamics, rewards and the exact posterior along any action sequence
# --------------------------------------------------------------------------------------

GRID = registry.make("gridworld")
SIZE = 5
CANDIDATES = [int(i) for i in np.flatnonzero(np.asarray(GRID.belief_init()) > 0)]


@jax.jit
def _grid_trial(actions, goal):
    params = {"goal": goal}
    env_state, _ = task_lib.reset(jax.random.key(0), params, GRID)

    def body(carry, inputs):
        env_state, belief = carry
        key, action = inputs
        moved = GRID.transition(env_state.state, action)
        nxt, _, reward, done = task_lib.step(key, env_state, action, params, GRID)
        belief = GRID.belief_update(belief, env_state.state, action, reward)
        return (nxt, belief), (moved, nxt.state, reward, done, belief)

    keys = jax.random.split(jax.random.key(1), actions.shape[0])
    _, out = jax.lax.scan(body, (env_state, GRID.belief_init()), (keys, actions))
    return out


grid_actions = st.lists(st.integers(0, 4), min_size=GRID.trial_length, max_size=GRID.trial_length)


@SETTINGS
@given(actions=grid_actions, goal=st.sampled_from(CANDIDATES))
def test_gridworld_stays_on_grid_and_rewards_are_allowed(actions, goal):
    moved, state, reward, done, _ = jax.tree.map(np.asarray, _grid_trial(jnp.asarray(actions, jnp.int32),
                                                                         jnp.int32(goal)))
    for positions in (moved, state):
        assert positions.min() >= 0 and positions.max() <= SIZE - 1
    hit = np.asarray(cell_index(moved, SIZE)) == goal
    np.testing.assert_allclose(reward, np.where(hit, GOAL_REWARD, STEP_REWARD), rtol=1e-6)
    np.testing.assert_array_equal(done, (np.arange(1, GRID.trial_length + 1) % GRID.episode_length) == 0)
    assert np.all(state[done == 1] == 0)  # back at the start after every episode


@pytest.mark.x64
@SETTINGS
@given(actions=grid_actions, goal=st.sampled_from(CANDIDATES))
def test_gridworld_posterior_normalized_and_never_on_ruled_out_goals(actions, goal):
    moved, _, reward, _, beliefs = jax.tree.map(np.asarray, _grid_trial(jnp.asarray(actions, jnp.int32),
                                                                         jnp.int32(goal)))
    np.testing.assert_allclose(beliefs.sum(-1), 1.0, atol=1e-5)
    assert np.all(beliefs[:, goal] > 0)  # the true goal is never ruled out
    cells = np.asarray(cell_index(moved, SIZE))
    for t in range(len(actions)):
        misses = cells[: t + 1][reward[: t + 1] < 0]
        assert np.all(beliefs[t, misses] == 0)  # stepped on without the goal reward
        if np.any(reward[: t + 1] > 0):
            np.testing.assert_allclose(beliefs[t], np.eye(SIZE * SIZE)[goal], atol=1e-6)


# --------------------------------------------------------------------------------------
# Bernoulli bandit: the Beta posterior
# --------------------------------------------------------------------------------------

BANDIT = registry.make("bernoulli_bandit", num_arms=2, horizon=8)
_GRID_POINTS = (np.arange(200) + 0.5) / 200


@jax.jit
def _bandit_posterior(actions, rewards):
    def body(belief, inputs):
        action, reward = inputs
        belief = BANDIT.belief_update(belief, jnp.zeros((), jnp.int32), action, reward)
        return belief, belief

    _, beliefs = jax.lax.scan(body, BANDIT.belief_init(), (actions, rewards))
    p0, p1 = jnp.meshgrid(jnp.asarray(_GRID_POINTS), jnp.asarray(_GRID_POINTS), indexing="ij")
    grid = {"p": jnp.stack([p0.ravel(), p1.ravel()], -1)}

    def mass(belief):
        log_probs = jax.vmap(lambda p: BANDIT.belief_log_prob(belief, {"p": p}))(grid["p"])
        return jnp.exp(log_probs).mean()  # midpoint rule on [0, 1]^2

    def edge(belief, arm, value):
        p = jnp.full((2,), 0.5).at[arm].set(value)
        return BANDIT.belief_log_prob(belief, {"p": p})

    edges = jax.vmap(lambda b: jnp.stack([jnp.stack([edge(b, a, v) for v in (0.0, 1.0)]) for a in (0, 1)]))
    return beliefs, jax.vmap(mass)(beliefs), edges(beliefs)


@pytest.mark.x64
@SETTINGS
@given(pulls=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=8, max_size=8))
def test_bandit_posterior_normalized_and_never_on_ruled_out_arms(pulls):
    actions = jnp.asarray([a for a, _ in pulls], jnp.int32)
    rewards = jnp.asarray([r for _, r in pulls], jnp.float32)
    beliefs, mass, edges = jax.tree.map(np.asarray, _bandit_posterior(actions, rewards))
    np.testing.assert_allclose(mass, 1.0, rtol=2e-2)  # a density over [0, 1]^2
    np.testing.assert_allclose(beliefs.successes.sum(-1) + beliefs.failures.sum(-1), np.arange(1, 9))
    for t in range(8):
        for arm in (0, 1):
            # A success rules out p = 0 for that arm, a failure p = 1.
            assert (edges[t, arm, 0] == -np.inf) == (beliefs.successes[t, arm] > 0)
            assert (edges[t, arm, 1] == -np.inf) == (beliefs.failures[t, arm] > 0)


# --------------------------------------------------------------------------------------
# SMC resampling
# --------------------------------------------------------------------------------------

NUM_DRAWS = 4000


@functools.partial(jax.jit, static_argnames=("scheme",))
def _resample_many(log_weights, scheme):
    keys = jax.random.split(jax.random.key(42), NUM_DRAWS)
    return jax.vmap(lambda k: smc.resample(k, log_weights, log_weights.shape[0], scheme))(keys)


@SETTINGS
@given(num=st.sampled_from([1, 3, 8]), scheme=st.sampled_from(RESAMPLING_SCHEMES), data=st.data())
def test_resampling_in_range_and_unbiased(num, scheme, data):
    log_weights = np.asarray(data.draw(st.lists(st.floats(-5, 5), min_size=num, max_size=num)), np.float32)
    values = np.asarray(data.draw(st.lists(st.floats(-10, 10), min_size=num, max_size=num)), np.float64)
    idx = np.asarray(_resample_many(jnp.asarray(log_weights), scheme))
    assert idx.shape == (NUM_DRAWS, num) and idx.min() >= 0 and idx.max() < num
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    target = float(weights @ values)
    estimates = values[idx].mean(-1)  # one resampled mean per key
    # Unbiased: the average over independent keys is within 5 standard errors of the target.
    se = estimates.std() / np.sqrt(NUM_DRAWS)
    assert abs(estimates.mean() - target) <= 5 * se + 1e-6 * (1 + abs(target))


# --------------------------------------------------------------------------------------
# The planner on the exact bandit model
# --------------------------------------------------------------------------------------

PLAN_BANDIT = registry.make("bernoulli_bandit", num_arms=3, horizon=6)
PLAN_MODEL = exact_model(PLAN_BANDIT)


@functools.partial(jax.jit, static_argnames=("config",))
def _plan(rng_key, successes, failures, t, config):
    root = PLAN_MODEL.init(rng_key)._replace(t=t)
    root = root._replace(belief=root.belief._replace(successes=successes, failures=failures))
    return smc.plan(rng_key, PLAN_MODEL, root, config)


# Budgets (K, K_omega, D, outcome) with every size in 1..4, from a fixed set: one compilation
# each (the budget fixes the shapes); beliefs, trial step and key vary freely as data.
BUDGETS = [(1, 1, 1, "sample"), (4, 1, 3, "expected"), (2, 4, 2, "sample"), (3, 2, 4, "expected")]


@settings(max_examples=12, deadline=None, derandomize=True)
@given(budget=st.sampled_from(BUDGETS), seed=st.integers(0, 2**16),
       counts=st.lists(st.integers(0, 2), min_size=6, max_size=6), t=st.integers(0, 6))
def test_planner_outputs_valid_distributions(budget, seed, counts, t):
    num_particles, num_nested, depth, outcome = budget
    config = PlannerConfig(num_particles=num_particles, num_nested=num_nested, depth=depth, outcome=outcome)
    result = _plan(jax.random.key(seed), jnp.asarray(counts[:3], jnp.float32),
                   jnp.asarray(counts[3:], jnp.float32), jnp.int32(t), config)
    policy, weights = np.asarray(result.policy), np.asarray(result.info.weights)
    assert policy.shape == (3,) and np.all(policy >= 0) and abs(policy.sum() - 1) < 1e-5
    assert weights.shape == (depth, num_particles) and np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    ess = np.asarray(result.info.ess)
    assert np.all(ess >= 1 - 1e-4) and np.all(ess <= num_particles + 1e-4)
    assert np.isfinite(float(result.value)) and np.isfinite(float(result.log_normalizer))
    # Rewards are 0 or 1 per imagined step while the trial lasts, 0 after it.
    assert -1e-5 <= float(result.value) <= max(6 - t, 0) + 1e-5


# --------------------------------------------------------------------------------------
# S5: the parallel and step forms agree for any reset pattern
# --------------------------------------------------------------------------------------

P, H, L = 6, 4, 16
_S5_PARAMS = s5.ssm_init(jax.random.key(0), P, H, step_min=0.05, step_max=0.5)
_step = jax.jit(s5.apply_step)
_parallel = jax.jit(s5.apply_parallel)
_ENCODER = s5.EncoderConfig(input_dim=3, hidden_size=H, state_size=P, num_layers=2, mode="parallel")
_ENCODER_PARAMS = s5.encoder_init(jax.random.key(1), _ENCODER)
_encoder_step = jax.jit(s5.encoder_step)
_encoder_parallel = jax.jit(functools.partial(s5.encoder_apply, mode="parallel"))


@pytest.mark.x64
@SETTINGS
@given(resets=st.lists(st.booleans(), min_size=L, max_size=L), seed=st.integers(0, 2**16))
def test_s5_parallel_equals_step_for_any_resets(resets, seed):
    k_u, k_x, k_e = jax.random.split(jax.random.key(seed), 3)
    u = jax.random.normal(k_u, (L, H))
    x0 = s5.SSMState(*jax.random.normal(k_x, (2, P)))
    flags = jnp.asarray(resets, jnp.float32)
    last, ys = _parallel(_S5_PARAMS, x0, u, flags)
    state, steps = x0, []
    for k in range(L):
        state, y = _step(_S5_PARAMS, state, u[k], flags[k])
        steps.append(y)
    np.testing.assert_allclose(ys, np.stack(steps), atol=1e-5)
    np.testing.assert_allclose(last.re, state.re, atol=1e-5)
    np.testing.assert_allclose(last.im, state.im, atol=1e-5)
    # The encoder (two residual blocks) likewise, from a zero memory.
    inputs = jax.random.normal(k_e, (L, 3))
    carry = s5.encoder_initial_carry(_ENCODER)
    _, features = _encoder_parallel(_ENCODER_PARAMS, carry, inputs, flags)
    stepped = []
    for k in range(L):
        carry, f = _encoder_step(_ENCODER_PARAMS, carry, inputs[k], flags[k])
        stepped.append(f)
    np.testing.assert_allclose(features, np.stack(stepped), atol=1e-4)
