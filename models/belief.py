"""The learned BAMDP (VariBAD): a latent task ``m``, a reward decoder, an S5 amortized guide,
and the policy and value heads, as ONE NumPyro model/guide pair.

Generative model of a batch of ``B`` trials of ``T`` steps (one latent per *belief step*
``t = 0..T``, VariBAD's "every belief decodes the whole trial")::

    m_{b,t} ~ N(0, I_L)                                     t = 0..T
    r_{b,s} ~ p_theta(r | s_s, a_s, s'_s, m_{b,t})           s = 0..T-1 (every s, for each t)
    [policy_targets_{b,t}  ~ pi_psi(. | h_t)   cross-entropy factor, if given]
    [value_targets_{b,t}   ~ N(V_psi(h_t), 1)  if given]

Guide: ``q_phi(m_{b,t} | h_t)``, a Gaussian read from the S5 encoding ``h_t`` of the history
inputs ``x_0..x_t`` (:mod:`models.history`), in one of the families of :mod:`models.guides`
(``"diagonal"``, VariBAD's; ``"factors"``, a full covariance that contains the true posterior
when the decoder is linear in ``m``); belief 0 is the learned *prior read-out* from the empty
history (only the known start observation). The reward decoder is :mod:`models.decoder`.
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
as arguments of pure functions (:func:`models.history.encoder_step`,
:func:`models.guides.belief_head`, :func:`models.decoder.reward_distribution`,
:func:`policy_logits`, :func:`value`), and a :class:`BeliefParams` NamedTuple is exactly
``SVI.get_params``' dict.

Rewards are the sample site ``"rewards"`` (``obs=`` the observed rewards; indices into
``task.reward_values`` for categorical rewards): with ``batch.rewards=None`` the same model
*generates* them from the decoder given its latents. :func:`model` and :func:`guide` are
top-level functions; :func:`make_belief_model` binds their ``task`` and ``config``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from varibased.models import decoder as decoder_lib
from varibased.models import guides, history, networks, s5, subsample
from varibased.models import validation as check
from varibased.models.decoder import DECODER_INPUTS
from varibased.models.heads import head_features, policy_logits, symlog, value
from varibased.models.history import TrialBatch, Window
from varibased.models.task import Task, TaskError

Array = jax.Array

__all__ = [
    "BeliefConfig",
    "BeliefParams",
    "BeliefModel",
    "GUIDES",
    "SITES",
    "init_params",
    "policy_logits",
    "value",
    "belief_distribution",
    "belief_moments",
    "sample_beliefs",
    "prior_belief",
    "trial_features",
    "trial_beliefs",
    "trial_moments",
    "trial_predictive",
    "model",
    "guide",
    "make_belief_model",
]

#: The parameter sites of the model/guide pair, in :class:`BeliefParams` order.
SITES = ("encoder", "belief_head", "decoder", "policy_head", "value_head")
#: The forms of the Gaussian guide (see :class:`BeliefConfig` and :mod:`models.guides`).
GUIDES = tuple(guides.FAMILIES)
#: how the value head's output maps to returns (see BeliefConfig.value_transform)
VALUE_TRANSFORMS = ("none", "symlog")


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
        guide: the guide family (:mod:`models.guides`): ``"diagonal"``, ``q(m | h_t) =
            N(mu(h_t), diag sigma(h_t)^2)`` from the S5 features at ``t`` (VariBAD);
            ``"factors"``, a full-covariance Gaussian, the exact posterior of ``m`` under
            rank-``factor_rank`` pseudo-observations read from the features of every step
            ``s <= t`` (exact under a ``"linear"`` decoder; no training windows).
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
        value_transform: ``"none"`` (the value head regresses returns) or ``"symlog"`` (it
            regresses ``symlog(G) = sign(G) log(1 + |G|)`` and :func:`value` reads out
            ``symexp``: one loss scale for returns in [-6, 56], as DreamerV3 does).
        heads_encoder_gradient: how much of the policy and value losses' gradient reaches the
            shared S5 encoder: 1 (all of it), 0 (none: the encoder is trained by the ELBO
            alone, VariBAD's default) or in between.
        elbo_steps, decode_steps: subsample the ELBO (:mod:`models.subsample`, VariBAD's
            ``vae_subsample_elbos`` / ``vae_subsample_decodes``): keep ``elbo_steps`` belief
            steps and ``decode_steps`` decoded steps per trial, drawn from the update's
            ``subsample_key`` (an unbiased estimate of the objective); 0 keeps all (exact).
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
    value_transform: str = "none"
    heads_encoder_gradient: float = 1.0
    elbo_steps: int = 0
    decode_steps: int = 0

    def __post_init__(self) -> None:
        owner = "BeliefConfig"
        hidden = tuple(self.decoder_hidden)
        if not hidden:
            raise ValueError(f"BeliefConfig.decoder_hidden must be a non-empty tuple of positive ints, "
                             f"got {hidden!r}")
        inputs = tuple(self.decoder_inputs)
        if len(set(inputs)) != len(inputs) or not set(inputs) <= set(DECODER_INPUTS):
            raise ValueError(
                f"BeliefConfig.decoder_inputs must be distinct names from {DECODER_INPUTS}, got {inputs!r}")
        check.set_fields(
            self, decoder_inputs=inputs,
            decoder_hidden=tuple(check.positive_int(owner, "decoder_hidden", h) for h in hidden),
            **{name: check.positive_int(owner, name, getattr(self, name)) for name in (
                "latent_dim", "hidden_size", "state_size", "num_layers", "head_hidden", "factor_rank")},
            **{name: check.nonnegative_int(owner, name, getattr(self, name))
               for name in ("input_hidden", "elbo_steps", "decode_steps")},
            decoder=check.choice(owner, "decoder", self.decoder, ("bilinear", "mlp", "linear")),
            guide=check.choice(owner, "guide", self.guide, GUIDES),
            decode=check.choice(owner, "decode", self.decode, ("trial", "past")),
            mode=check.choice(owner, "mode", self.mode, ("sequential", "parallel")),
            kl_weight=check.number(owner, "kl_weight", self.kl_weight, low=0.0, low_open=True),
            step_min=check.number(owner, "step_min", self.step_min, low=0.0, low_open=True),
            step_max=check.number(owner, "step_max", self.step_max, low=0.0, low_open=True),
            value_transform=check.choice(owner, "value_transform", self.value_transform, VALUE_TRANSFORMS),
            heads_encoder_gradient=check.number(owner, "heads_encoder_gradient", self.heads_encoder_gradient,
                                                low=0.0, high=1.0))
        if self.step_min > self.step_max:
            raise ValueError(f"BeliefConfig needs step_min <= step_max, got {self.step_min!r}, "
                             f"{self.step_max!r}")


class BeliefParams(NamedTuple):
    """All parameters, one pytree per NumPyro param site (see :data:`SITES`)."""

    encoder: Any
    belief_head: Any
    decoder: Any
    policy_head: Any
    value_head: Any



def init_params(rng_key: Array, task: Task, config: BeliefConfig) -> BeliefParams:
    """Initial parameters of every network.

    Returns:
        A :class:`BeliefParams` of float32 pytrees.
    """
    k_enc, k_head, k_dec, k_pol, k_val = jax.random.split(rng_key, 5)
    H = config.hidden_size
    head = networks.head_init(k_head, k_head, H, H, guides.family(config).num_outputs(config), 0.1)
    decoder = decoder_lib.init(k_dec, task, config)
    k_p1, k_p2 = jax.random.split(k_pol)
    k_v1, k_v2 = jax.random.split(k_val)
    policy = networks.head_init(k_p1, k_p2, H, config.head_hidden, task.num_actions, 0.1)
    value_head = networks.head_init(k_v1, k_v2, H, config.head_hidden, 1, 0.1)
    encoder = s5.encoder_init(k_enc, history.encoder_config(task, config))
    return BeliefParams(encoder, head, decoder, policy, value_head)


# Read-outs of the belief (for either guide family).


def belief_distribution(params: BeliefParams, features: Array, config: BeliefConfig) -> dist.Distribution:
    """``q(m | h_t)`` at every step of a feature sequence ``[..., N, H]`` from the trial's start
    (batch shape ``[..., N]``, event ``[L]``)."""
    return guides.family(config).distribution(params, features, config)


def belief_moments(params: BeliefParams, features: Array, config: BeliefConfig) -> tuple[Array, Array]:
    """The Gaussian belief at every step of a sequence of features ``[..., N, H]`` that starts
    at the trial's start: ``(mean [..., N, L], scale_tril [..., N, L, L])`` (the diagonal
    guide's ``scale_tril`` is ``diag(exp(log_scale))``)."""
    return guides.family(config).moments(params, features, config)


def sample_beliefs(rng_key: Array, params: BeliefParams, features: Array, config: BeliefConfig,
                   num_samples: int) -> Array:
    """``num_samples`` draws of the belief at every step: features ``[N, H]`` (from the trial's
    start) -> ``[N, S, L]``."""
    return guides.family(config).sample(rng_key, params, features, config, num_samples)


def prior_belief(params: BeliefParams, task: Task, config: BeliefConfig):
    """The learned prior read-out: belief 0, from the empty history at the start state.

    Returns:
        ``(carry, features [H], mean [L], log_scale [L])`` (log marginal standard deviations;
        the full belief is :func:`belief_moments`).
    """
    obs0 = task.observe(task.initial_state())
    x0 = history.history_input(obs0, -1, 0.0, 0, task.num_actions, 0, task.trial_length)
    carry, features = history.encoder_step(params, history.initial_carry(config), x0)
    mean, log_scale = guides.family(config).marginals(params, features[None], config)
    return carry, features, mean[0], log_scale[0]


def trial_features(params: BeliefParams, trial: TrialBatch, task: Task, config: BeliefConfig) -> Array:
    """S5 features of ONE trial's beliefs ``t = 0..T``: ``[T+1, H]``."""
    inputs = history.history_inputs(trial, task.num_actions, task.trial_length)
    return history.encode_history(params, inputs, config)[1]


def trial_beliefs(params: BeliefParams, trial: TrialBatch, task: Task, config: BeliefConfig):
    """Beliefs of ONE trial at every step ``t = 0..T``: ``(mean, log_scale)``, ``[T+1, L]``
    (log marginal standard deviations; see :func:`trial_moments`)."""
    features = trial_features(params, trial, task, config)
    return guides.family(config).marginals(params, features, config)


def trial_moments(params: BeliefParams, trial: TrialBatch, task: Task, config: BeliefConfig):
    """Beliefs of ONE trial at every step: ``(mean [T+1, L], scale_tril [T+1, L, L])``."""
    return belief_moments(params, trial_features(params, trial, task, config), config)


def trial_predictive(rng_key: Array, params: BeliefParams, trial: TrialBatch,
                     queries: tuple[Array, Array, Array], task: Task, config: BeliefConfig,
                     num_samples: int) -> Array:
    """The decoder at the queries under ``num_samples`` draws of the belief at every step of
    ONE trial: ``[T+1, S, Q, K]`` probabilities (categorical) or ``[T+1, S, Q]`` means."""
    m = sample_beliefs(rng_key, params, trial_features(params, trial, task, config), config, num_samples)
    return jax.vmap(lambda m_t: decoder_lib.predictive_rewards(params, m_t, queries, task, config))(m)


# The NumPyro model/guide pair.


def _param(site: str, task: Task, config: BeliefConfig):
    index = SITES.index(site)
    return numpyro.param(site, lambda key: init_params(key, task, config)[index])


def model(batch: TrialBatch, policy_targets: Array | None = None, value_targets: Array | None = None,
          policy_weight: float = 1.0, value_weight: float = 1.0, window: Window | None = None,
          subsample_key: Array | None = None, *, task: Task, config: BeliefConfig) -> None:
    """The generative model of ``B`` trials of ``T`` steps (see the module docstring).

    Sites: ``m`` ``[B, N]`` x ``[L]`` (``N = T + 1`` beliefs, or ``W`` on a window);
    ``rewards`` ``[B, N]`` x ``[T]``, observed at ``batch.rewards`` (``[B, T]``, the same
    rewards for every belief; indices into ``task.reward_values`` for categorical rewards),
    generated from the decoder when ``batch.rewards`` is ``None``; ``policy`` (a factor) and
    ``value`` when targets are given.

    Args:
        batch: a :class:`~models.history.TrialBatch` ``[B, T]``.
        policy_targets: float32 ``[B, P, A]`` action distributions, or ``None`` (no term).
        value_targets: float32 ``[B, P]``, or ``None`` (no term). ``P = T``, or ``W`` on a window.
        policy_weight, value_weight: weights of the two terms.
        window: a :class:`~models.history.Window` of ``W`` beliefs per trial: only those
            beliefs enter (each still decoding the whole trial, or its past).
        subsample_key: a key drawing the belief and decoded steps that enter the ELBO when
            ``config.elbo_steps`` / ``config.decode_steps`` subsample them (``None``: all; the
            guide must get the same key). Then ``N`` is ``elbo_steps`` and the rewards site is
            ``[B, N]`` x ``[decode_steps]``, scaled by ``T / decode_steps``.
        task, config: the task and :class:`BeliefConfig` (keywords; bound by
            :func:`make_belief_model`).
    """
    history.check_model_arguments(batch, policy_targets, value_targets, window, task, config, subsample_key)
    B, T = batch.actions.shape
    steps = history.belief_steps(batch, window)
    beliefs, decodes = subsample.elbo_indices(subsample_key, config, B, steps.shape[1], T)
    steps = steps if beliefs is None else subsample.take_steps(steps, beliefs)
    N = steps.shape[1]  # beliefs per trial
    params = BeliefParams(None, None, _param("decoder", task, config), None, None)
    x = decoder_lib.decoder_inputs(batch.obs, batch.actions, batch.moved_obs, task.num_actions,
                                   config)  # [B, T, Dx]
    decoded = jnp.broadcast_to(jnp.arange(T), (B, T))  # the decoded steps of each trial
    if decodes is not None:
        x, decoded = subsample.take_steps(x, decodes), decodes
    S = decoded.shape[1]
    with handlers.scale(scale=1.0 / (B * N)):
        with numpyro.plate("trials", B, dim=-2), numpyro.plate("beliefs", N, dim=-1):
            with handlers.scale(scale=config.kl_weight):
                m = numpyro.sample("m", guides.family(config).prior(config.latent_dim))
            outputs = jax.vmap(lambda m_b, x_b: decoder_lib.decoder_outputs(params, m_b, x_b))(m, x)
            rewards = decoder_lib.distribution(params, outputs, task)  # batch [B, N, S]
            if config.decode == "past":
                rewards = rewards.mask(decoded[:, None, :] < steps[:, :, None])
            observed = None if batch.rewards is None else jnp.broadcast_to(
                subsample.take_steps(decoder_lib.reward_targets(task, batch.rewards), decoded)[:, None, :],
                (B, N, S))
            with handlers.scale(scale=T / S):
                numpyro.sample("rewards", rewards.to_event(1), obs=observed)
    if policy_targets is None and value_targets is None:
        return
    encoder = BeliefParams(_param("encoder", task, config), None, None, None, None)
    features = history.batch_features(encoder, batch, window, task, config)
    if window is None:
        features = features[:, :T]
    P = features.shape[1]  # acting steps with targets
    features = head_features(features, config)
    if policy_targets is not None:
        head = BeliefParams(None, None, None, _param("policy_head", task, config), None)
        log_pi = jax.nn.log_softmax(policy_logits(head, features))
        cross_entropy = -(jnp.asarray(policy_targets, jnp.float32) * log_pi).sum()
        numpyro.factor("policy", -policy_weight * cross_entropy / (B * P))
    if value_targets is not None:
        head = BeliefParams(None, None, None, None, _param("value_head", task, config))
        targets = jnp.asarray(value_targets, jnp.float32)
        if config.value_transform == "symlog":
            targets = symlog(targets)
        with handlers.scale(scale=value_weight / (B * P)):
            numpyro.sample("value", dist.Normal(value(head, features), 1.0).to_event(2), obs=targets)


def guide(batch: TrialBatch, policy_targets: Array | None = None, value_targets: Array | None = None,
          policy_weight: float = 1.0, value_weight: float = 1.0, window: Window | None = None,
          subsample_key: Array | None = None, *, task: Task, config: BeliefConfig) -> None:
    """The amortized guide ``q_phi(m_{b,t} | h_t)`` of :func:`model` (same arguments; the
    targets and weights are unused). Site ``m`` ``[B, N]`` x ``[L]`` from the S5 features of
    every belief, in the family ``config.guide`` (:mod:`models.guides`); needs ``batch.rewards``."""
    history.check_model_arguments(batch, policy_targets, value_targets, window, task, config, subsample_key)
    if batch.rewards is None:
        raise ValueError("the guide reads the observed history: batch.rewards must be given")
    B = batch.actions.shape[0]
    encoder = _param("encoder", task, config)
    head = _param("belief_head", task, config)
    # Declared here too so that every site exists (and is trained by the model's terms
    # when targets are given) whatever arguments SVI was initialized with.
    _param("policy_head", task, config)
    _param("value_head", task, config)
    features = history.batch_features(BeliefParams(encoder, None, None, None, None), batch,
                                      window, task, config)
    read = functools.partial(belief_distribution, BeliefParams(None, head, None, None, None), config=config)
    beliefs, _ = subsample.elbo_indices(subsample_key, config, B, features.shape[1], batch.actions.shape[1])
    q = read(features) if beliefs is None else subsample.take_beliefs(read, features, beliefs)
    N = q.batch_shape[1]
    with handlers.scale(scale=1.0 / (B * N)):
        with numpyro.plate("trials", B, dim=-2), numpyro.plate("beliefs", N, dim=-1):
            with handlers.scale(scale=config.kl_weight):
                numpyro.sample("m", q)


class BeliefModel(NamedTuple):
    """The model/guide pair of a task, bound to the task and the configuration (see
    :func:`model`: ``model(batch, policy_targets=None, value_targets=None, policy_weight=1.,
    value_weight=1., window=None)``, and ``guide`` with the same arguments)."""

    model: Callable
    guide: Callable
    task: Task
    config: BeliefConfig


def make_belief_model(task: Task, config: BeliefConfig | None = None) -> BeliefModel:
    """:func:`model` and :func:`guide` with ``task`` and ``config`` bound.

    Raises:
        TaskError: if ``task`` is not a Task; ValueError for a bad configuration.
    """
    if not isinstance(task, Task):
        raise TaskError(f"make_belief_model needs a models.task.Task, got {type(task).__name__}")
    config = BeliefConfig() if config is None else config
    if not isinstance(config, BeliefConfig):
        raise ValueError(f"config must be a BeliefConfig, got {type(config).__name__}")
    return BeliefModel(functools.partial(model, task=task, config=config),
                       functools.partial(guide, task=task, config=config), task, config)
