"""The task interface: what one task module provides, and the environment built from it.

A *task* is an MDP drawn from a prior. In varibased the unknown task enters only through
the likelihood of the **reward**: the state transition is known and deterministic (GridNavi's
moves, a query's index, a pulled arm), the reward is drawn from a task-dependent
distribution. A user adds a task by writing the pure functions of :class:`Task` for one
state and one action (no batch axes) and calling :func:`models.registry.register`; the
library derives from them

* the NumPyro generative model of a whole trial (:func:`trial_model`), the single source of
  truth for sampling tasks and for gold-standard beliefs;
* a pure, jit- and vmap-able environment (:func:`reset`, :func:`step`) consistent with it.

Observations, rewards and actions:

* ``observe(state)`` is a float32 vector of shape ``(obs_dim,)``;
* actions are integers in ``[0, num_actions)``;
* rewards are float32 scalars. ``reward_values`` (a tuple) declares a *categorical* reward
  space: ``reward_distribution`` is then a distribution over the *index* into
  ``reward_values`` and the environment returns ``reward_values[index]``. With
  ``reward_values=None`` the reward is continuous and ``reward_distribution`` is over its
  value (a learned decoder then uses a Gaussian likelihood).

A trial is ``num_episodes`` episodes of ``episode_length`` steps. After the last step of an
episode :func:`step` reports ``done = 1`` and returns the state (and observation) of the
next episode's start; the task is kept for the whole trial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from varibased.models.task_checks import TaskError, check_functions, check_reward_values

Array = jax.Array
PRNGKey = jax.Array
TaskParams = Any  # a pytree of arrays: the values of the prior's sample sites
State = Any  # a pytree of arrays: the task-independent part of the environment state
Belief = Any  # a pytree of arrays: the sufficient statistics of the exact posterior

#: the longest trial a task may declare (steps; trials are scanned step by step on device)
MAX_TRIAL_LENGTH = 100_000

__all__ = [
    "Task",
    "TaskError",
    "EnvState",
    "reset",
    "step",
    "sample_task",
    "trial_model",
    "reward_index",
    "trial_length",
    "trajectory_states",
    "no_state",
    "same_state",
    "constant_observation",
    "validate",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One task family: a prior over MDPs with a known transition and an uncertain reward.

    Required fields (all functions are pure and written for one state / one action):

    Attributes:
        name: the task id used on the command line and as a JSON key.
        num_actions: number of discrete actions.
        obs_dim: size of the float32 observation vector.
        episode_length: steps per episode.
        num_episodes: episodes per trial (the task is kept across them).
        prior: a NumPyro model with no arguments; its sample sites are the task, and it
            returns the task as a pytree (``TaskParams``).
        initial_state: ``() -> State``, the start of every episode.
        transition: ``(State, action) -> State``, the known deterministic move.
        observe: ``State -> float32[obs_dim]``.
        reward_distribution: ``(TaskParams, State, action, next State) -> Distribution``,
            over the reward index (categorical rewards) or the reward value.
        reward_values: the reward values of a categorical reward space, else ``None``.

    Optional fields (needed by the exact-model planner and the reference agents):

    Attributes:
        belief_init: ``() -> Belief``, the exact prior in sufficient statistics.
        belief_update: ``(Belief, State, action, reward) -> Belief``, exact Bayes rule on
            one transition from ``State`` (before the move) with the observed reward value.
        belief_sample: ``(PRNGKey, Belief) -> TaskParams``, a draw from the exact posterior.
        belief_log_prob: ``(Belief, TaskParams) -> float``, log posterior density or mass
            (``-inf`` for tasks the history has ruled out).
        optimal_value: ``(TaskParams, State, t) -> float``, the optimal expected return from
            trial step ``t`` (0-based, ``State`` being the state at that step) to the end of
            the trial when the task is known. Used as the QMDP value and by the oracle.
        oracle_action: ``(PRNGKey, TaskParams, State, t) -> action``, an optimal action when
            the task is known (ties broken uniformly at random).
        bayes_optimal_value: ``() -> (mean, per_episode)``, the exact Bayes-optimal expected
            return per trial (a float) and per episode (a list), e.g. by dynamic programming
            over beliefs; float64 or fractions, not Monte Carlo.
        thompson_resample: when the posterior-sampling agent draws a new task: at every
            ``"step"`` or at every ``"episode"`` start (and whenever its sample is ruled out).
        description: one line for tables and ``--help``.
    """

    name: str
    num_actions: int
    obs_dim: int
    episode_length: int
    num_episodes: int
    prior: Callable[[], TaskParams]
    initial_state: Callable[[], State]
    transition: Callable[[State, Array], State]
    observe: Callable[[State], Array]
    reward_distribution: Callable[[TaskParams, State, Array, State], dist.Distribution]
    reward_values: tuple[float, ...] | None = None
    belief_init: Callable[[], Belief] | None = None
    belief_update: Callable[[Belief, State, Array, Array], Belief] | None = None
    belief_sample: Callable[[PRNGKey, Belief], TaskParams] | None = None
    belief_log_prob: Callable[[Belief, TaskParams], Array] | None = None
    optimal_value: Callable[[TaskParams, State, Array], Array] | None = None
    oracle_action: Callable[[PRNGKey, TaskParams, State, Array], Array] | None = None
    bayes_optimal_value: Callable[[], tuple[float, list[float]]] | None = None
    thompson_resample: str = "episode"
    description: str = ""

    def __post_init__(self) -> None:
        validate(self)

    @property
    def trial_length(self) -> int:
        """Steps per trial: ``episode_length * num_episodes``."""
        return self.episode_length * self.num_episodes

    @property
    def categorical_rewards(self) -> bool:
        """Whether rewards take one of finitely many values (``reward_values``)."""
        return self.reward_values is not None

    @property
    def has_exact_belief(self) -> bool:
        """Whether the task provides the exact posterior (init, update and sample)."""
        return None not in (self.belief_init, self.belief_update, self.belief_sample)

    def require(self, *fields: str) -> None:
        """Raise a clear :class:`TaskError` if any optional ``fields`` is missing."""
        missing = [f for f in fields if getattr(self, f) is None]
        if missing:
            raise TaskError(
                f"task {self.name!r} does not provide {', '.join(missing)}, "
                "which this feature needs (see models/task.py for the interface)"
            )


class EnvState(NamedTuple):
    """Environment state of one trial.

    Attributes:
        state: the task module's state pytree (e.g. the grid position).
        t: int32 scalar, the trial step (0 .. trial_length).
    """

    state: State
    t: Array


def no_state() -> Array:
    """``initial_state`` of a task without a state (bandits, function queries): a dummy."""
    return jnp.zeros((), jnp.int32)


def same_state(state: State, action: Array) -> State:
    """``transition`` of a task without a state: nothing moves."""
    del action
    return state


def constant_observation(state: State) -> Array:
    """``observe`` of a task without a state: a constant ``[1.]`` (``obs_dim=1``); the
    information is all in the actions and rewards."""
    del state
    return jnp.ones((1,), jnp.float32)


def trial_length(task: Task) -> int:
    """Steps per trial."""
    return task.trial_length


def sample_task(rng_key: PRNGKey, task: Task) -> TaskParams:
    """Draw a task from the prior (the NumPyro model ``task.prior``)."""
    return numpyro.handlers.seed(task.prior, rng_key)()


def reset(rng_key: PRNGKey, task_params: TaskParams, task: Task) -> tuple[EnvState, Array]:
    """Start a trial: the initial state and its observation.

    ``rng_key`` is unused (the start is deterministic) but kept for a uniform signature.
    """
    del rng_key, task_params
    state = task.initial_state()
    return EnvState(state, jnp.zeros((), jnp.int32)), task.observe(state)


def reward_index(task: Task, reward: Array) -> Array:
    """Index of a categorical reward value in ``task.reward_values`` (nearest value)."""
    values = jnp.asarray(task.reward_values, jnp.float32)
    return jnp.argmin(jnp.abs(values[..., :] - jnp.asarray(reward)[..., None]), axis=-1)


def _reward_value(task: Task, draw: Array) -> Array:
    if task.categorical_rewards:
        return jnp.asarray(task.reward_values, jnp.float32)[draw]
    return jnp.asarray(draw, jnp.float32)


def step(
    rng_key: PRNGKey, env_state: EnvState, action: Array, task_params: TaskParams, task: Task
) -> tuple[EnvState, Array, Array, Array]:
    """One environment step of one trial.

    Args:
        rng_key: key for the reward noise.
        env_state: the current :class:`EnvState`.
        action: int32 scalar in ``[0, num_actions)``.
        task_params: the task (from :func:`sample_task`).
        task: the task definition (static).

    Returns:
        ``(env_state, obs, reward, done)``: the next state (the start of the next episode
        when ``done``), its float32 observation ``[obs_dim]``, the float32 reward of the move
        and the int32 episode-done flag.
    """
    action = jnp.asarray(action, jnp.int32)
    moved = task.transition(env_state.state, action)
    draw = task.reward_distribution(task_params, env_state.state, action, moved).sample(rng_key)
    reward = _reward_value(task, draw)
    t = env_state.t + 1
    done = (t % task.episode_length) == 0
    start = task.initial_state()
    next_state = jax.tree.map(lambda s, m: jnp.where(done, s, m), start, moved)
    return EnvState(next_state, t), task.observe(next_state), reward, done.astype(jnp.int32)


def trial_model(task: Task, actions: Array, rewards: Array | None = None) -> TaskParams:
    """The NumPyro generative model of one trial given the agent's actions.

    Samples the task from ``task.prior`` and, for every step, the reward ``r_t`` from
    ``task.reward_distribution`` at the known states. With ``rewards=None`` it generates;
    with observed rewards (values, shape ``[T]``) it conditions, so that e.g.
    ``numpyro.infer.MCMC`` or enumeration on it gives the posterior over the task.

    Args:
        task: the task definition.
        actions: int32 ``[T]`` with ``T <= trial_length`` (open-loop is enough here since the
            transition is known: the likelihood of a closed-loop history is the same).
        rewards: float32 ``[T]`` or ``None``.

    Returns:
        The task pytree.
    """
    actions = jnp.asarray(actions, jnp.int32)
    num_steps = actions.shape[0]
    if num_steps > task.trial_length:
        raise TaskError(f"{num_steps} actions exceed the trial length {task.trial_length}")
    task_params = task.prior()
    before, moved = trajectory_states(task, actions)
    obs = None
    if rewards is not None:
        rewards = jnp.asarray(rewards, jnp.float32)
        obs = reward_index(task, rewards) if task.categorical_rewards else rewards
    reward_dist = jax.vmap(lambda s, a, n: task.reward_distribution(task_params, s, a, n))(
        before, actions, moved
    )
    with numpyro.plate("time", num_steps):
        draw = numpyro.sample("reward", reward_dist, obs=obs)
    numpyro.deterministic("reward_value", _reward_value(task, draw))
    return task_params


def trajectory_states(task: Task, actions: Array) -> tuple[State, State]:
    """The known states along an action sequence, with episode resets.

    Returns:
        ``(before, moved)``, each with a leading axis ``[T]``: the state each action is taken
        in, and the state it moves into (before the episode reset that follows the last
        step of an episode).
    """

    def body(carry: EnvState, action: Array) -> tuple[EnvState, tuple[State, State]]:
        moved = task.transition(carry.state, action)
        t = carry.t + 1
        done = (t % task.episode_length) == 0
        nxt = jax.tree.map(lambda s, m: jnp.where(done, s, m), task.initial_state(), moved)
        return EnvState(nxt, t), (carry.state, moved)

    start = EnvState(task.initial_state(), jnp.zeros((), jnp.int32))
    _, (before, moved) = jax.lax.scan(body, start, jnp.asarray(actions, jnp.int32))
    return before, moved


# --------------------------------------------------------------------------------------
# Validation: clear errors before anything is compiled.
# --------------------------------------------------------------------------------------

_REQUIRED = ("prior", "initial_state", "transition", "observe", "reward_distribution")
_OPTIONAL = (
    "belief_init",
    "belief_update",
    "belief_sample",
    "belief_log_prob",
    "optimal_value",
    "oracle_action",
    "bayes_optimal_value",
)


def _positive_int(task_name: str, field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TaskError(f"task {task_name!r}: {field} must be a positive int, got {value!r}")


def validate(task: Task) -> None:
    """Check a task definition by abstract evaluation (``jax.eval_shape``, no compilation).

    Raises:
        TaskError: naming the field and the problem (type, range, shape or dtype).
    """
    name = task.name
    if not isinstance(name, str) or not name.isidentifier():
        raise TaskError(f"task name must be an identifier-like string, got {name!r}")
    for field in ("num_actions", "obs_dim", "episode_length", "num_episodes"):
        _positive_int(name, field, getattr(task, field))
    if task.episode_length * task.num_episodes > MAX_TRIAL_LENGTH:
        raise TaskError(f"task {name!r}: a trial of {task.num_episodes} episodes x {task.episode_length} "
                        f"steps exceeds {MAX_TRIAL_LENGTH} steps (trials are scanned step by step)")
    for field in _REQUIRED:
        if not callable(getattr(task, field)):
            raise TaskError(f"task {name!r}: {field} must be a function, got {getattr(task, field)!r}")
    for field in _OPTIONAL:
        value = getattr(task, field)
        if value is not None and not callable(value):
            raise TaskError(f"task {name!r}: {field} must be a function or None, got {value!r}")
    if task.thompson_resample not in ("step", "episode"):
        raise TaskError(
            f"task {name!r}: thompson_resample must be 'step' or 'episode', "
            f"got {task.thompson_resample!r}"
        )
    check_reward_values(task)
    check_functions(task)  # by abstract evaluation (models/task_checks.py)
