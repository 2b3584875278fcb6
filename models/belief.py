"""The learned BAMDP (VariBAD): a latent task ``m``, a reward decoder, an S5 amortized guide,
and the policy and value heads, as ONE NumPyro model/guide pair.

Generative model of a batch of ``B`` trials of ``T`` steps (one latent per *belief step*
``t = 0..T``, VariBAD's "every belief decodes the whole trial")::

    m_{b,t} ~ N(0, I_L)                                     t = 0..T
    r_{b,s} ~ p_theta(r | s_s, a_s, s'_s, m_{b,t})           s = 0..T-1 (every s, for each t)
    [policy_targets_{b,t}  ~ pi_psi(. | h_t)   cross-entropy factor, if given]
    [value_targets_{b,t}   ~ N(V_psi(h_t), 1)  if given]

Guide: ``q_phi(m_{b,t} | h_t) = N(mu(h_t), diag sigma(h_t)^2)``, where ``h_t`` is the S5
encoding of the history inputs ``x_0..x_t`` with ``x_0 = (o_0, 0, 0, 0)`` and
``x_t = (o_t, onehot(a_{t-1}), r_{t-1}, done_{t-1})``; belief 0 is the learned *prior
read-out* from the empty history (only the known start observation). With
``guide="factors"`` the Gaussian has a full covariance: it is the exact posterior of ``m``
given pseudo-observations ``U_s^T m ~ N(rho_s, I)`` read from the S5 features of every step
``s <= t`` (natural parameters summed along the trial; see :class:`BeliefConfig`), which
contains the true posterior when the decoder is linear in ``m`` (function optimization).
The objective is

.. math::

    \\mathcal L = \\frac{1}{B (T+1)} \\sum_{b, t} \\Big(
        \\mathbb E_{q(m | h_t)} \\sum_{s} \\log p_\\theta(r_s | s_s, a_s, s'_s, m)
        - \\mathrm{KL}(q(m | h_t) \\,\\|\\, \\mathcal N(0, I)) \\Big)
      - \\frac{w_\\pi}{B T} \\sum_{b,t} \\mathrm{CE}(\\text{target}_t, \\pi(\\cdot | h_t))
      + \\frac{w_V}{B T} \\sum_{b,t} \\log \\mathcal N(\\text{target}_t; V(h_t), 1)

**KL choice: to the prior N(0, I) at every belief step** (not to the previous step's
posterior). Every term is then a proper ELBO of the same generative model with the same
prior site ``m ~ N(0, I)``, so model and guide are a plain NumPyro pair (the model does not
depend on guide parameters) and ``TraceMeanField_ELBO`` computes the KL in closed form;
the previous-posterior KL of VariBAD's code mainly smooths belief updates, which the S5
guide does not need. With ``decode="past"`` each belief decodes only the rewards it has
seen (``s < t``): each term is then the ELBO of the observed prefix, whose optimum is the
model's true posterior (better calibrated); ``decode="trial"`` is VariBAD's default.

The S5 encoder is a deterministic function of the observed history: the model calls it
too, under the same parameter site ``"encoder"``, to condition the policy and value heads,
so the encoder is shared by guide, policy and value. Parameters are plain pytrees
registered with ``numpyro.param`` (sites ``encoder``, ``belief_head``, ``decoder``,
``policy_head``, ``value_head``), not flax modules: the planner needs the same parameters
as arguments of pure functions (:func:`encoder_step`, :func:`belief_head`,
:func:`reward_distribution`, :func:`policy_logits`, :func:`value`), and a
:class:`BeliefParams` NamedTuple is exactly ``SVI.get_params``' dict.

The reward decoder sees the observation of the state *moved into*,
``task.observe(task.transition(s, a))`` (the environment's ``next_obs`` after an episode's
last step is already the next episode's start) and, by ``decoder_inputs``, the observation
before the move and the action. Categorical rewards (``task.reward_values``) get logits
over the reward index; continuous rewards a Gaussian with a learned mean and one learned
log-scale (the noise; uncertainty about the task lives in q).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from varibased.models import s5
from varibased.models.task import Task, TaskError

Array = jax.Array

__all__ = [
    "BeliefConfig",
    "BeliefParams",
    "TrialBatch",
    "Window",
    "BeliefModel",
    "DECODER_INPUTS",
    "GUIDES",
    "SITES",
    "init_params",
    "encoder_config",
    "history_input",
    "history_inputs",
    "initial_carry",
    "encoder_step",
    "encode_history",
    "history_carries",
    "make_window",
    "belief_head",
    "belief_factors",
    "natural_init",
    "natural_step",
    "natural_beliefs",
    "natural_to_moments",
    "belief_moments",
    "belief_distribution",
    "sample_beliefs",
    "prior_belief",
    "trial_beliefs",
    "trial_features",
    "trial_moments",
    "reward_distribution",
    "decoder_log_likelihood",
    "policy_logits",
    "value",
    "batch_from_trajectory",
    "make_belief_model",
    "query_inputs",
    "predictive_rewards",
    "trial_predictive",
    "input_dim",
]

#: The parameter sites of the model/guide pair, in :class:`BeliefParams` order.
SITES = ("encoder", "belief_head", "decoder", "policy_head", "value_head")
#: What the reward decoder may see besides ``m``.
DECODER_INPUTS = ("obs", "action", "moved_obs")
#: The forms of the Gaussian guide (see :class:`BeliefConfig`).
GUIDES = ("diagonal", "factors")
_LOG_SCALE_MIN, _LOG_SCALE_MAX = -7.0, 2.0


@dataclasses.dataclass(frozen=True)
class BeliefConfig:
    """Sizes and options of the learned model (hashable: a static jit argument).

    Attributes:
        latent_dim: size ``L`` of the latent task ``m``.
        hidden_size: S5 feature size ``H``.
        state_size: S5 states per layer ``P``.
        num_layers: S5 blocks.
        decoder_hidden: hidden sizes of the reward decoder MLP.
        head_hidden: hidden size of the policy and value heads.
        decoder_inputs: which of ``"obs"`` (before the move), ``"action"``, ``"moved_obs"``
            the decoder sees. Use ``("moved_obs",)`` when the reward depends only on the
            state moved into (GridNavi), so that read-outs generalize to any move into a cell.
        decoder: ``"bilinear"``: outputs ``<phi(m), psi_k(x)> + b_k(x)`` with MLPs ``phi``
            (``L -> decoder_hidden``) and ``psi`` (``x -> decoder_hidden[:-1] -> K (H_d + 1)``);
            decoding every (belief, step) pair is then one batched matrix product (about 10x
            cheaper than an MLP on every pair). ``"mlp"``: an MLP on ``(m, x)`` (first layer
            split as ``W_m m + W_x x``).
            ``"linear"``: ``<m, psi_k(x)> + b_k(x)`` (``phi`` the identity; ``psi`` an MLP
            ``x -> decoder_hidden[:-1] -> K (L + 1)``): with a Gaussian ``m`` the decoded mean is a
            Gaussian process with a learned rank-``L`` kernel, the right family for function
            optimization and the one in which the ``"factors"`` guide can be exact.
        guide: ``"diagonal"``: ``q(m | h_t) = N(mu(h_t), diag sigma(h_t)^2)`` from the S5
            features at ``t`` (VariBAD). ``"factors"``: a full-covariance Gaussian that is the
            exact posterior of ``m`` under *pseudo-observations* read from the S5 features of
            every step ``s <= t`` of the trial, ``U_s^T m ~ N(rho_s, I_r)`` (``U_s`` ``[L, r]``,
            ``r = factor_rank``): precision ``I + sum_s U_s U_s^T``, precision-weighted mean
            ``sum_s U_s rho_s`` (a product of Gaussian factors, as in PEARL, with S5 factors).
            Under a ``"linear"`` decoder every real observation is such a factor
            (``U = w_a / sigma``, ``rho = r / sigma``), so the true posterior is in the family.
            Not available with training windows (the sums run from the trial's start).
        factor_rank: ``r``, the rank of each step's factor (``guide="factors"``).
        decode: ``"trial"`` (every belief decodes the whole trial, VariBAD) or ``"past"``
            (belief ``t`` decodes the rewards ``s < t`` it has seen).
        mode: S5 sequence form, ``"sequential"`` or ``"parallel"``.
        input_hidden: GELU units embedding each history input before the S5 (0: linear);
            see :class:`models.s5.EncoderConfig`.
        kl_weight: weight ``beta`` of the KL term (1: the ELBO; below 1 a sharper belief,
            as in beta-VAEs, at the price of a looser bound).
        step_min, step_max: the S5's initial ZOH step range; small steps remember a whole
            60-step trial (a goal ruled out in episode 1 must stay ruled out in episode 4).
    """

    latent_dim: int = 5
    hidden_size: int = 64
    state_size: int = 32
    num_layers: int = 1
    decoder_hidden: tuple[int, ...] = (32, 32)
    head_hidden: int = 64
    decoder_inputs: tuple[str, ...] = DECODER_INPUTS
    decoder: str = "bilinear"
    decode: str = "trial"
    guide: str = "diagonal"
    factor_rank: int = 1
    mode: str = "sequential"
    input_hidden: int = 64
    kl_weight: float = 1.0
    step_min: float = 0.001
    step_max: float = 0.1

    def __post_init__(self) -> None:
        for name in ("latent_dim", "hidden_size", "state_size", "num_layers", "head_hidden",
                     "factor_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BeliefConfig.{name} must be a positive int, got {value!r}")
        hidden = tuple(self.decoder_hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(
                f"BeliefConfig.decoder_hidden must be a non-empty tuple of positive ints, got {hidden!r}"
            )
        object.__setattr__(self, "decoder_hidden", hidden)
        inputs = tuple(self.decoder_inputs)
        if len(set(inputs)) != len(inputs) or not set(inputs) <= set(DECODER_INPUTS):
            raise ValueError(
                f"BeliefConfig.decoder_inputs must be distinct names from {DECODER_INPUTS}, got {inputs!r}"
            )
        object.__setattr__(self, "decoder_inputs", inputs)
        if self.decoder not in ("bilinear", "mlp", "linear"):
            raise ValueError(
                f"BeliefConfig.decoder must be 'bilinear', 'mlp' or 'linear', got {self.decoder!r}")
        if self.guide not in GUIDES:
            raise ValueError(f"BeliefConfig.guide must be one of {GUIDES}, got {self.guide!r}")
        if self.decode not in ("trial", "past"):
            raise ValueError(f"BeliefConfig.decode must be 'trial' or 'past', got {self.decode!r}")
        if self.mode not in ("sequential", "parallel"):
            raise ValueError(f"BeliefConfig.mode must be 'sequential' or 'parallel', got {self.mode!r}")
        if not (isinstance(self.step_min, int | float) and isinstance(self.step_max, int | float)
                and 0 < self.step_min <= self.step_max < np.inf):
            raise ValueError(f"BeliefConfig needs 0 < step_min <= step_max, got {self.step_min!r}, "
                             f"{self.step_max!r}")
        if not isinstance(self.kl_weight, int | float) or not 0 < self.kl_weight < np.inf:
            raise ValueError(f"BeliefConfig.kl_weight must be > 0, got {self.kl_weight!r}")
        if isinstance(self.input_hidden, bool) or not isinstance(self.input_hidden, int) \
                or self.input_hidden < 0:
            raise ValueError(f"BeliefConfig.input_hidden must be an int >= 0, got {self.input_hidden!r}")


class BeliefParams(NamedTuple):
    """All parameters, one pytree per NumPyro param site (see :data:`SITES`)."""

    encoder: Any
    belief_head: Any
    decoder: Any
    policy_head: Any
    value_head: Any


class TrialBatch(NamedTuple):
    """Trials as the model consumes them (``[B, T, ...]``; one trial: ``[T, ...]``).

    Attributes:
        obs: float32 ``[..., T, obs_dim]``, the observation each action was taken at.
        actions: int32 ``[..., T]``.
        rewards: float32 ``[..., T]``, reward values.
        dones: int32 ``[..., T]``, episode-done after the step.
        next_obs: float32 ``[..., T, obs_dim]``, the environment's next observation (the next
            episode's start after a done); input of the encoder.
        moved_obs: float32 ``[..., T, obs_dim]``, the observation of the state moved into;
            input of the decoder.
    """

    obs: Array
    actions: Array
    rewards: Array
    dones: Array
    next_obs: Array
    moved_obs: Array


# --------------------------------------------------------------------------------------
# Networks (pure functions of parameter pytrees).
# --------------------------------------------------------------------------------------


def _dense_init(rng_key: Array, n_in: int, n_out: int, scale: float = 1.0) -> dict[str, Array]:
    w = jax.random.normal(rng_key, (n_in, n_out), jnp.float32) * (scale / np.sqrt(n_in))
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def _dense(p: dict[str, Array], x: Array) -> Array:
    return x @ p["w"] + p["b"]


def input_dim(task: Task) -> int:
    """Size of one history input: ``obs_dim + num_actions + 3``."""
    return task.obs_dim + task.num_actions + 3


def _decoder_input_dim(task: Task, config: BeliefConfig) -> int:
    sizes = {"obs": task.obs_dim, "action": task.num_actions, "moved_obs": task.obs_dim}
    return sum(sizes[name] for name in config.decoder_inputs)


def _num_outputs(task: Task) -> int:
    return len(task.reward_values) if task.categorical_rewards else 1


def encoder_config(task: Task, config: BeliefConfig) -> s5.EncoderConfig:
    """The S5 encoder configuration for a task's history inputs."""
    return s5.EncoderConfig(
        input_dim=input_dim(task),
        hidden_size=config.hidden_size,
        state_size=config.state_size,
        num_layers=config.num_layers,
        mode=config.mode,
        input_hidden=config.input_hidden,
        step_min=config.step_min,
        step_max=config.step_max,
    )


def _mlp_init(rng_key: Array, sizes: tuple[int, ...], last_scale: float = 1.0) -> tuple:
    keys = jax.random.split(rng_key, len(sizes) - 1)
    return tuple(
        _dense_init(keys[i], sizes[i], sizes[i + 1], last_scale if i == len(sizes) - 2 else 1.0)
        for i in range(len(sizes) - 1)
    )


def _mlp(layers: tuple, x: Array) -> Array:
    for layer in layers[:-1]:
        x = jax.nn.relu(_dense(layer, x))
    return _dense(layers[-1], x)


def _decoder_init(rng_key: Array, L: int, Dx: int, K: int, config: BeliefConfig) -> dict:
    hidden = config.decoder_hidden
    if config.decoder == "linear":
        return {"x_net": _mlp_init(rng_key, (Dx,) + hidden[:-1] + (K * (L + 1),), 0.3)}
    if config.decoder == "bilinear":
        k_m, k_x = jax.random.split(rng_key)
        return {"m_net": _mlp_init(k_m, (L,) + hidden),
                "x_net": _mlp_init(k_x, (Dx,) + hidden[:-1] + (K * (hidden[-1] + 1),), 0.3)}
    sizes = (L + Dx,) + hidden
    keys = jax.random.split(rng_key, len(sizes))
    first = _dense_init(keys[0], sizes[0], sizes[1])
    return {
        "m": first["w"][:L],
        "x": {"w": first["w"][L:], "b": first["b"]},
        "hidden": tuple(
            _dense_init(keys[i], sizes[i], sizes[i + 1]) for i in range(1, len(sizes) - 1)
        ),
        "out": _dense_init(keys[-1], sizes[-1], K),
    }


def init_params(rng_key: Array, task: Task, config: BeliefConfig) -> BeliefParams:
    """Initial parameters of every network.

    Returns:
        A :class:`BeliefParams` of float32 pytrees.
    """
    k_enc, k_head, k_dec, k_pol, k_val = jax.random.split(rng_key, 5)
    H, L = config.hidden_size, config.latent_dim
    outputs = 2 * L if config.guide == "diagonal" else (L + 1) * config.factor_rank
    head = {"hidden": _dense_init(k_head, H, H), "out": _dense_init(k_head, H, outputs, 0.1)}
    decoder = _decoder_init(k_dec, L, _decoder_input_dim(task, config), _num_outputs(task), config)
    if not task.categorical_rewards:
        decoder["log_scale"] = jnp.zeros((), jnp.float32)
    k_p1, k_p2 = jax.random.split(k_pol)
    k_v1, k_v2 = jax.random.split(k_val)
    policy = {"hidden": _dense_init(k_p1, H, config.head_hidden),
              "out": _dense_init(k_p2, config.head_hidden, task.num_actions, 0.1)}
    value_head = {"hidden": _dense_init(k_v1, H, config.head_hidden),
                  "out": _dense_init(k_v2, config.head_hidden, 1, 0.1)}
    encoder = s5.encoder_init(k_enc, encoder_config(task, config))
    return BeliefParams(encoder, head, decoder, policy, value_head)


def history_input(obs: Array, prev_action: Array, prev_reward: Array, done: Array,
                  num_actions: int, t: Array, trial_length: int) -> Array:
    """One encoder input ``(obs, onehot(prev_action), prev_reward, done, t / trial_length)``.

    The trial step is an input so that the value and policy heads (and the belief) know how
    much of the trial is left: the tasks' returns are undiscounted sums over the trial.

    Args:
        obs: float32 ``[obs_dim]``, the current observation.
        prev_action: int32 scalar; a negative value (no previous action) gives a zero one-hot.
        prev_reward: float32 scalar (0 at the first step).
        done: the previous step ended an episode (0/1).
        t: int32 scalar, the trial step of ``obs`` (0 at the start).
        trial_length: steps per trial.

    Returns:
        float32 ``[obs_dim + num_actions + 3]``.
    """
    return jnp.concatenate([
        jnp.asarray(obs, jnp.float32),
        jax.nn.one_hot(prev_action, num_actions, dtype=jnp.float32),
        jnp.asarray(prev_reward, jnp.float32)[None],
        jnp.asarray(done, jnp.float32)[None],
        (jnp.asarray(t, jnp.float32) / trial_length)[None],
    ])


def history_inputs(trial: TrialBatch, num_actions: int, trial_length: int | None = None) -> Array:
    """The ``T + 1`` encoder inputs of ONE trial (``[T, ...]`` fields): float32 ``[T+1, D]``.

    The trial starts at trial step 0; ``trial_length`` (default ``T``, a whole trial)
    normalizes the time input, so pass the task's for a prefix of a trial.
    """
    T = trial.actions.shape[0]
    length = T if trial_length is None else trial_length
    first = history_input(trial.obs[0], -1, 0.0, 0, num_actions, 0, length)
    rest = jax.vmap(lambda o, a, r, d, t: history_input(o, a, r, d, num_actions, t, length))(
        trial.next_obs, trial.actions, trial.rewards, trial.dones, jnp.arange(1, T + 1)
    )
    return jnp.concatenate([first[None], rest], axis=0)


def initial_carry(config: BeliefConfig) -> tuple[s5.SSMState, ...]:
    """The encoder carry before any input (zeros)."""
    return tuple(s5.initial_state(config.state_size) for _ in range(config.num_layers))


def encoder_step(params: BeliefParams, carry, inputs: Array, reset: Array = False):
    """One encoder step: ``(carry, input [D]) -> (carry, features [H])``."""
    return s5.encoder_step(params.encoder, carry, inputs, reset)


def history_carries(params: BeliefParams, trial: TrialBatch, task: Task, config: BeliefConfig):
    """The encoder carry BEFORE each history input ``t = 0..T-1`` of ONE trial (leading
    ``[T]``): the S5 states to cache for training on windows (:class:`Window`)."""
    inputs = history_inputs(trial, task.num_actions, task.trial_length)[:-1]

    def body(carry, x):
        return encoder_step(params, carry, x)[0], carry

    return jax.lax.scan(body, initial_carry(config), inputs)[1]


class Window(NamedTuple):
    """A fixed window of beliefs per trial, encoded from a cached S5 state (the paper's
    training mode; the default re-encodes every trial from its start).

    Attributes:
        carry: the encoder carry before input ``start`` (pytree with leading ``[B]``),
            typically cached when the trial was played (so computed with older parameters).
        inputs: float32 ``[B, W, D]``, the history inputs ``start .. start + W - 1``.
        start: int32 ``[B]``, the first belief of each window (``0 <= start <= T - W``).
    """

    carry: Any
    inputs: Array
    start: Array


def make_window(batch: TrialBatch, carries, start: Array, length: int, task: Task) -> Window:
    """The :class:`Window` of ``length`` beliefs from ``start`` of every trial of ``batch``,
    given the cached ``carries`` of :func:`history_carries` (leading ``[B, T]``)."""
    inputs = jax.vmap(lambda trial: history_inputs(trial, task.num_actions, task.trial_length))(batch)
    take = jax.vmap(lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, length, axis=0))
    carry = jax.tree.map(lambda c: jax.vmap(lambda ci, s: ci[s])(c, start), carries)
    return Window(carry, take(inputs, start), jnp.asarray(start, jnp.int32))


def encode_history(params: BeliefParams, inputs: Array, config: BeliefConfig, carry=None):
    """Encode a sequence of history inputs ``[L, D]`` -> ``(carry, features [L, H])``."""
    carry = initial_carry(config) if carry is None else carry
    return s5.encoder_apply(params.encoder, carry, inputs, mode=config.mode)


def belief_head(params: BeliefParams, features: Array) -> tuple[Array, Array]:
    """Gaussian belief from features ``[..., H]`` -> ``(mean, log_scale)``, each ``[..., L]``."""
    head = params.belief_head
    z = _dense(head["out"], jax.nn.gelu(_dense(head["hidden"], features)))
    mean, raw = jnp.split(z, 2, axis=-1)
    log_scale = jnp.clip(raw, _LOG_SCALE_MIN, _LOG_SCALE_MAX)
    return mean, log_scale


def belief_factors(params: BeliefParams, features: Array, config: BeliefConfig) -> tuple[Array, Array]:
    """The pseudo-observation factor of each step (``guide="factors"``): features ``[..., H]``
    -> ``(U [..., L, r], rho [..., r])``, the factor ``U^T m ~ N(rho, I_r)``."""
    head = params.belief_head
    z = _dense(head["out"], jax.nn.gelu(_dense(head["hidden"], features)))
    rank = config.factor_rank
    u = z[..., :-rank].reshape(z.shape[:-1] + (config.latent_dim, rank))
    return u, z[..., -rank:]


def natural_init(config: BeliefConfig) -> tuple[Array, Array]:
    """The natural parameters of the prior ``N(0, I)``: ``(precision [L, L], eta [L])``."""
    L = config.latent_dim
    return jnp.eye(L, dtype=jnp.float32), jnp.zeros((L,), jnp.float32)


def natural_step(params: BeliefParams, natural: tuple[Array, Array], features: Array,
                 config: BeliefConfig) -> tuple[Array, Array]:
    """Add one step's factor (features ``[H]``) to the natural parameters ``(precision, eta)``."""
    u, rho = belief_factors(params, features, config)
    return natural[0] + u @ u.T, natural[1] + u @ rho


def natural_beliefs(params: BeliefParams, features: Array, config: BeliefConfig) -> tuple[Array, Array]:
    """Natural parameters of the belief at every step of a sequence that starts at the
    trial's start: features ``[..., N, H]`` -> ``(precision [..., N, L, L], eta [..., N, L])``."""
    u, rho = belief_factors(params, features, config)
    L = u.shape[-2]
    precision = jnp.eye(L, dtype=u.dtype) + jnp.cumsum(u @ jnp.swapaxes(u, -1, -2), axis=-3)
    eta = jnp.cumsum(jnp.einsum("...lr,...r->...l", u, rho), axis=-2)
    return precision, eta


def natural_to_moments(precision: Array, eta: Array) -> tuple[Array, Array]:
    """``(precision [..., L, L], eta [..., L])`` -> ``(mean [..., L], scale_tril [..., L, L])``,
    the covariance's lower Cholesky factor (computed from the precision's, never inverting
    the covariance explicitly)."""
    # Lower factor of precision^{-1}: with J the reversal, chol(J P J) = K gives
    # P^{-1} = (J K^{-T} J)(J K^{-T} J)^T and J K^{-T} J is lower triangular.
    k = jnp.linalg.cholesky(jnp.flip(precision, (-2, -1)))
    eye = jnp.broadcast_to(jnp.eye(precision.shape[-1], dtype=precision.dtype), precision.shape)
    k_inv_t = jnp.swapaxes(jax.scipy.linalg.solve_triangular(k, eye, lower=True), -1, -2)
    scale_tril = jnp.flip(k_inv_t, (-2, -1))
    mean = scale_tril @ (jnp.swapaxes(scale_tril, -1, -2) @ eta[..., None])  # P^{-1} eta
    return mean[..., 0], scale_tril


def belief_moments(params: BeliefParams, features: Array, config: BeliefConfig) -> tuple[Array, Array]:
    """The Gaussian belief at every step of a sequence of features ``[..., N, H]`` that starts
    at the trial's start: ``(mean [..., N, L], scale_tril [..., N, L, L])`` (for either guide;
    the diagonal guide's ``scale_tril`` is ``diag(exp(log_scale))``)."""
    if config.guide == "factors":
        return natural_to_moments(*natural_beliefs(params, features, config))
    mean, log_scale = belief_head(params, features)
    return mean, jnp.exp(log_scale)[..., None] * jnp.eye(mean.shape[-1], dtype=mean.dtype)


def belief_distribution(params: BeliefParams, features: Array, config: BeliefConfig) -> dist.Distribution:
    """``q(m | h_t)`` at every step of a feature sequence ``[..., N, H]`` from the trial's start
    (batch shape ``[..., N]``, event ``[L]``)."""
    if config.guide == "factors":
        mean, scale_tril = belief_moments(params, features, config)
        return dist.MultivariateNormal(mean, scale_tril=scale_tril)
    mean, log_scale = belief_head(params, features)
    return dist.Normal(mean, jnp.exp(log_scale)).to_event(1)


def sample_beliefs(rng_key: Array, params: BeliefParams, features: Array, config: BeliefConfig,
                   num_samples: int) -> Array:
    """``num_samples`` draws of the belief at every step: features ``[N, H]`` (from the trial's
    start) -> ``[N, S, L]``."""
    L = config.latent_dim
    eps = jax.random.normal(rng_key, (features.shape[0], num_samples, L))
    if config.guide == "factors":
        mean, scale_tril = belief_moments(params, features, config)
        return mean[:, None, :] + jnp.einsum("nij,nsj->nsi", scale_tril, eps)
    mean, log_scale = belief_head(params, features)
    return mean[:, None, :] + jnp.exp(log_scale)[:, None, :] * eps


def _mean_and_log_scale(params: BeliefParams, features: Array, config: BeliefConfig):
    """``(mean, log_scale)`` of the beliefs of a feature sequence from the trial's start; with
    ``guide="factors"`` the log of the marginal standard deviations."""
    if config.guide == "factors":
        mean, scale_tril = belief_moments(params, features, config)
        return mean, jnp.log(jnp.linalg.norm(scale_tril, axis=-1))
    return belief_head(params, features)


def prior_belief(params: BeliefParams, task: Task, config: BeliefConfig):
    """The learned prior read-out: belief 0, from the empty history at the start state.

    Returns:
        ``(carry, features [H], mean [L], log_scale [L])`` (with ``guide="factors"``, the
        log of the marginal standard deviations; the full belief is :func:`belief_moments`).
    """
    obs0 = task.observe(task.initial_state())
    x0 = history_input(obs0, -1, 0.0, 0, task.num_actions, 0, task.trial_length)
    carry, features = encoder_step(params, initial_carry(config), x0)
    mean, log_scale = _mean_and_log_scale(params, features[None], config)
    return carry, features, mean[0], log_scale[0]


def trial_beliefs(params: BeliefParams, trial: TrialBatch, task: Task, config: BeliefConfig):
    """Beliefs of ONE trial at every step ``t = 0..T``: ``(mean, log_scale)``, ``[T+1, L]``
    (with ``guide="factors"``, log marginal standard deviations; see :func:`trial_moments`)."""
    return _mean_and_log_scale(params, trial_features(params, trial, task, config), config)


def trial_features(params: BeliefParams, trial: TrialBatch, task: Task, config: BeliefConfig) -> Array:
    """S5 features of ONE trial's beliefs ``t = 0..T``: ``[T+1, H]``."""
    return encode_history(params, history_inputs(trial, task.num_actions, task.trial_length), config)[1]


def trial_moments(params: BeliefParams, trial: TrialBatch, task: Task, config: BeliefConfig):
    """Beliefs of ONE trial at every step: ``(mean [T+1, L], scale_tril [T+1, L, L])``."""
    return belief_moments(params, trial_features(params, trial, task, config), config)


def _decoder_x(obs: Array, actions: Array, moved_obs: Array, num_actions: int,
               config: BeliefConfig) -> Array:
    parts = {"obs": lambda: obs,
             "action": lambda: jax.nn.one_hot(actions, num_actions, dtype=jnp.float32),
             "moved_obs": lambda: moved_obs}
    return jnp.concatenate([parts[name]() for name in config.decoder_inputs], axis=-1)


def _decoder_outputs(decoder: dict, m: Array, x: Array) -> Array:
    """Decoder outputs for every pair (each m with each x): ``m [..., M, L]``, ``x [..., N, Dx]``
    -> ``[..., M, N, K]``. The MLP decoder splits its first layer (``W_m m + W_x x``) so that
    it costs ``M + N`` products instead of ``M N``; the bilinear and linear ones (no ``m_net``:
    ``phi`` the identity) are a matrix product."""
    if "x_net" in decoder:
        phi = _mlp(decoder["m_net"], m) if "m_net" in decoder else m  # [..., M, Hd]
        psi = _mlp(decoder["x_net"], x)  # [..., N, K (Hd + 1)]
        psi = psi.reshape(psi.shape[:-1] + (-1, phi.shape[-1] + 1))  # [..., N, K, Hd + 1]
        out = jnp.einsum("...mh,...nkh->...mnk", phi, psi[..., :-1])
        return out + psi[..., None, :, :, -1]
    pre_m = m @ decoder["m"]
    pre_x = _dense(decoder["x"], x)
    h = jax.nn.relu(pre_m[..., :, None, :] + pre_x[..., None, :, :])
    for layer in decoder["hidden"]:
        h = jax.nn.relu(_dense(layer, h))
    return _dense(decoder["out"], h)


def _distribution(decoder: dict, outputs: Array, task: Task) -> dist.Distribution:
    if task.categorical_rewards:
        return dist.Categorical(logits=outputs)
    scale = jnp.exp(jnp.clip(decoder["log_scale"], _LOG_SCALE_MIN, _LOG_SCALE_MAX))
    return dist.Normal(outputs[..., 0], scale)


def reward_distribution(params: BeliefParams, m: Array, obs: Array, action: Array,
                        moved_obs: Array, task: Task, config: BeliefConfig) -> dist.Distribution:
    """``p_theta(r | s, a, s', m)`` for one latent and one transition (vmap for more).

    Args:
        m: float32 ``[L]``.
        obs: float32 ``[obs_dim]`` before the move; action: int32 scalar;
        moved_obs: float32 ``[obs_dim]`` of the state moved into.

    Returns:
        ``Categorical`` over the index into ``task.reward_values``, or ``Normal`` over the value.
    """
    x = _decoder_x(obs, action, moved_obs, task.num_actions, config)
    outputs = _decoder_outputs(params.decoder, m[None], x[None])[0, 0]
    return _distribution(params.decoder, outputs, task)


def _reward_targets(task: Task, rewards: Array) -> Array:
    if task.categorical_rewards:
        values = jnp.asarray(task.reward_values, jnp.float32)
        return jnp.argmin(jnp.abs(values - rewards[..., None]), axis=-1)
    return rewards


def decoder_log_likelihood(params: BeliefParams, m: Array, trial: TrialBatch, task: Task,
                           config: BeliefConfig) -> Array:
    """``log p(r_s | s_s, a_s, s'_s, m_t)`` for every belief ``t`` and step ``s`` of ONE trial.

    Args:
        m: float32 ``[M, L]`` (e.g. ``M = T + 1`` beliefs).
        trial: one trial (``[T, ...]`` fields).

    Returns:
        float32 ``[M, T]``.
    """
    x = _decoder_x(trial.obs, trial.actions, trial.moved_obs, task.num_actions, config)
    outputs = _decoder_outputs(params.decoder, m, x)
    target = _reward_targets(task, trial.rewards)
    return _distribution(params.decoder, outputs, task).log_prob(target[None, :])


def policy_logits(params: BeliefParams, features: Array) -> Array:
    """Policy logits ``[..., A]`` from encoder features ``[..., H]``."""
    p = params.policy_head
    return _dense(p["out"], jax.nn.gelu(_dense(p["hidden"], features)))


def value(params: BeliefParams, features: Array) -> Array:
    """Value ``V(h)`` ``[...]`` from encoder features ``[..., H]``."""
    p = params.value_head
    return _dense(p["out"], jax.nn.gelu(_dense(p["hidden"], features)))[..., 0]


# --------------------------------------------------------------------------------------
# Data.
# --------------------------------------------------------------------------------------


def batch_from_trajectory(task: Task, trajectory) -> TrialBatch:
    """A :class:`TrialBatch` from a :class:`planning.rollout.Trajectory` (any leading axes)."""
    tr = trajectory.transitions
    state_leaves = jax.tree.leaves(tr.env_state.state)
    lead = tr.action.ndim

    def moved(state, action):
        return task.observe(task.transition(state, action))

    fn = moved
    for _ in range(lead):
        fn = jax.vmap(fn)
    del state_leaves
    return TrialBatch(
        obs=jnp.asarray(tr.obs, jnp.float32),
        actions=jnp.asarray(tr.action, jnp.int32),
        rewards=jnp.asarray(tr.reward, jnp.float32),
        dones=jnp.asarray(tr.done, jnp.int32),
        next_obs=jnp.asarray(tr.next_obs, jnp.float32),
        moved_obs=fn(tr.env_state.state, jnp.asarray(tr.action, jnp.int32)),
    )


def _check_batch(task: Task, batch: TrialBatch) -> None:
    if not isinstance(batch, TrialBatch):
        raise TypeError(f"expected a TrialBatch, got {type(batch).__name__}")
    if batch.actions.ndim != 2:
        raise ValueError(f"TrialBatch.actions must be [B, T], got shape {batch.actions.shape}")
    B, T = batch.actions.shape
    for name, shape in (("obs", (B, T, task.obs_dim)), ("rewards", (B, T)), ("dones", (B, T)),
                        ("next_obs", (B, T, task.obs_dim)), ("moved_obs", (B, T, task.obs_dim))):
        got = getattr(batch, name).shape
        if got != shape:
            raise ValueError(f"TrialBatch.{name} must have shape {shape}, got {got}")


# --------------------------------------------------------------------------------------
# The NumPyro model/guide pair.
# --------------------------------------------------------------------------------------


class BeliefModel(NamedTuple):
    """The model/guide pair of a task, with the configuration they were built from.

    ``model(batch, policy_targets=None, value_targets=None, policy_weight=1., value_weight=1.,
    window=None)`` and ``guide(...)`` (same arguments): ``batch`` a :class:`TrialBatch`
    ``[B, T]``; ``policy_targets`` float32 ``[B, T, A]`` (action distributions),
    ``value_targets`` float32 ``[B, T]``; either may be ``None`` (the term is absent).
    With a :class:`Window` of ``W`` beliefs, only those beliefs enter (each still decoding
    the whole trial, or its past) and the targets are the window's, ``[B, W, ...]``.
    """

    model: Callable
    guide: Callable
    task: Task
    config: BeliefConfig


def _param(site: str, task: Task, config: BeliefConfig):
    index = SITES.index(site)
    return numpyro.param(site, lambda key: init_params(key, task, config)[index])


def make_belief_model(task: Task, config: BeliefConfig | None = None) -> BeliefModel:
    """Build the NumPyro model and guide of the learned BAMDP for ``task``.

    Raises:
        TaskError: if ``task`` is not a Task; ValueError for a bad configuration.
    """
    if not isinstance(task, Task):
        raise TaskError(f"make_belief_model needs a models.task.Task, got {type(task).__name__}")
    config = BeliefConfig() if config is None else config
    if not isinstance(config, BeliefConfig):
        raise ValueError(f"config must be a BeliefConfig, got {type(config).__name__}")
    A, L = task.num_actions, config.latent_dim
    # The same N(0, I) either way; a MultivariateNormal for the full-covariance guide so that
    # the KL stays in closed form.
    prior = (dist.MultivariateNormal(jnp.zeros(L), scale_tril=jnp.eye(L)) if config.guide == "factors"
             else dist.Normal(jnp.zeros(L), 1.0).to_event(1))

    def features_of(encoder, batch: TrialBatch, window: Window | None) -> Array:
        """Features of every belief: ``[B, T+1, H]``, or ``[B, W, H]`` on a window."""
        params = BeliefParams(encoder, None, None, None, None)
        if window is not None:
            return jax.vmap(lambda x, c: encode_history(params, x, config, carry=c)[1])(
                window.inputs, window.carry)
        inputs = jax.vmap(lambda trial: history_inputs(trial, A, task.trial_length))(batch)
        return jax.vmap(lambda x: encode_history(params, x, config)[1])(inputs)

    def belief_steps(batch: TrialBatch, window: Window | None) -> Array:
        """The trial step of every belief: ``[B, T+1]`` or ``[B, W]``."""
        B, T = batch.actions.shape
        if window is None:
            return jnp.broadcast_to(jnp.arange(T + 1), (B, T + 1))
        return window.start[:, None] + jnp.arange(window.inputs.shape[1])

    def model(batch, policy_targets=None, value_targets=None, policy_weight=1.0, value_weight=1.0,
              window=None):
        B, T = batch.actions.shape
        steps = belief_steps(batch, window)
        N = steps.shape[1]  # beliefs per trial
        decoder = _param("decoder", task, config)
        params = BeliefParams(None, None, decoder, None, None)
        with handlers.scale(scale=1.0 / (B * N)):
            with numpyro.plate("trials", B, dim=-2), numpyro.plate("beliefs", N, dim=-1):
                with handlers.scale(scale=config.kl_weight):
                    m = numpyro.sample("m", prior)
                loglik = jax.vmap(
                    lambda m_b, trial: decoder_log_likelihood(params, m_b, trial, task, config)
                )(m, batch)  # [B, N, T]
                if config.decode == "past":
                    seen = jnp.arange(T)[None, None, :] < steps[:, :, None]
                    loglik = jnp.where(seen, loglik, 0.0)
                numpyro.factor("rewards", loglik.sum(-1))
        if policy_targets is None and value_targets is None:
            return
        encoder = _param("encoder", task, config)
        features = features_of(encoder, batch, window)
        if window is None:
            features = features[:, :T]
        P = features.shape[1]  # acting steps with targets
        if policy_targets is not None:
            head = BeliefParams(None, None, None, _param("policy_head", task, config), None)
            log_pi = jax.nn.log_softmax(policy_logits(head, features))
            cross_entropy = -(jnp.asarray(policy_targets, jnp.float32) * log_pi).sum()
            numpyro.factor("policy", -policy_weight * cross_entropy / (B * P))
        if value_targets is not None:
            head = BeliefParams(None, None, None, None, _param("value_head", task, config))
            with handlers.scale(scale=value_weight / (B * P)):
                numpyro.sample("value", dist.Normal(value(head, features), 1.0).to_event(2),
                               obs=jnp.asarray(value_targets, jnp.float32))

    def guide(batch, policy_targets=None, value_targets=None, policy_weight=1.0, value_weight=1.0,
              window=None):
        del policy_targets, value_targets, policy_weight, value_weight
        B = batch.actions.shape[0]
        encoder = _param("encoder", task, config)
        head = _param("belief_head", task, config)
        # Declared here too so that every site exists (and is trained by the model's terms
        # when targets are given) whatever arguments SVI was initialized with.
        _param("policy_head", task, config)
        _param("value_head", task, config)
        features = features_of(encoder, batch, window)
        N = features.shape[1]
        q = belief_distribution(BeliefParams(None, head, None, None, None), features, config)
        with handlers.scale(scale=1.0 / (B * N)):
            with numpyro.plate("trials", B, dim=-2), numpyro.plate("beliefs", N, dim=-1):
                with handlers.scale(scale=config.kl_weight):
                    numpyro.sample("m", q)

    def checked(fn):
        def wrapper(batch, policy_targets=None, value_targets=None, policy_weight=1.0,
                    value_weight=1.0, window=None):
            _check_batch(task, batch)
            B, T = batch.actions.shape
            P = T
            if window is not None:
                if not isinstance(window, Window):
                    raise TypeError(f"window must be a Window, got {type(window).__name__}")
                if config.guide != "diagonal":
                    raise ValueError(f"training windows need guide='diagonal' (the {config.guide!r} "
                                     "guide sums factors from the trial's start)")
                P = window.inputs.shape[1]
                D = input_dim(task)
                if window.inputs.shape != (B, P, D) or not 1 <= P <= T:
                    raise ValueError(f"Window.inputs must have shape [B={B}, W, D={D}] with "
                                     f"1 <= W <= T={T}, got {window.inputs.shape}")
                if window.start.shape != (B,):
                    raise ValueError(f"Window.start must have shape ({B},), got {window.start.shape}")
            if policy_targets is not None and policy_targets.shape != (B, P, A):
                raise ValueError(f"policy_targets must have shape {(B, P, A)}, got {policy_targets.shape}")
            if value_targets is not None and value_targets.shape != (B, P):
                raise ValueError(f"value_targets must have shape {(B, P)}, got {value_targets.shape}")
            return fn(batch, policy_targets, value_targets, policy_weight, value_weight, window)

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = make_belief_model.__doc__
        return wrapper

    return BeliefModel(checked(model), checked(guide), task, config)


# --------------------------------------------------------------------------------------
# Read-outs: the decoder's predictive reward at task-provided queries.
# --------------------------------------------------------------------------------------


def query_inputs(task: Task, states, actions: Array) -> tuple[Array, Array, Array]:
    """Decoder inputs for query transitions: ``states`` (pytree, leading ``[Q]``), ``actions [Q]``
    -> ``(obs [Q, d], actions [Q], moved_obs [Q, d])``."""
    actions = jnp.asarray(actions, jnp.int32)
    obs = jax.vmap(task.observe)(states)
    moved = jax.vmap(lambda s, a: task.observe(task.transition(s, a)))(states, actions)
    return obs, actions, moved


def predictive_rewards(params: BeliefParams, m: Array, queries: tuple[Array, Array, Array],
                       task: Task, config: BeliefConfig) -> Array:
    """The decoder at every (latent sample, query) pair.

    Args:
        m: float32 ``[S, L]`` samples of a belief.
        queries: ``(obs [Q, d], actions [Q], moved_obs [Q, d])`` from :func:`query_inputs`.

    Returns:
        Categorical rewards: probabilities ``[S, Q, K]`` over ``task.reward_values``;
        continuous rewards: the decoder's means ``[S, Q]`` (the noise scale is
        ``exp(params.decoder["log_scale"])``).
    """
    x = _decoder_x(*queries, task.num_actions, config)
    outputs = _decoder_outputs(params.decoder, m, x)
    if task.categorical_rewards:
        return jax.nn.softmax(outputs, axis=-1)
    return outputs[..., 0]


def trial_predictive(rng_key: Array, params: BeliefParams, trial: TrialBatch,
                     queries: tuple[Array, Array, Array], task: Task, config: BeliefConfig,
                     num_samples: int) -> Array:
    """The decoder at the queries under ``num_samples`` draws of the belief at every step of
    ONE trial: ``[T+1, S, Q, K]`` probabilities (categorical) or ``[T+1, S, Q]`` means."""
    m = sample_beliefs(rng_key, params, trial_features(params, trial, task, config), config, num_samples)
    return jax.vmap(lambda m_t: predictive_rewards(params, m_t, queries, task, config))(m)
