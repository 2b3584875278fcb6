"""The guide families of the learned belief ``q_phi(m | h_t)``, behind one interface.

A :class:`GuideFamily` is a NamedTuple of pure functions; the belief model, its read-outs and
the learned planning model call them without knowing which family they hold, so nothing
branches on a guide's name. The family is selected once from ``BeliefConfig.guide`` by
:func:`family`. Two instances:

* :data:`diagonal` (VariBAD): ``q(m | h_t) = N(mu(h_t), diag sigma(h_t)^2)`` read from the S5
  features at ``t`` by the belief head (``[H] -> [2 L]``).
* :data:`factors`: a full-covariance Gaussian, the exact posterior of ``m ~ N(0, I)`` under
  pseudo-observations ``U_s^T m ~ N(rho_s, I_r)`` read from the features of every step
  ``s <= t`` (``[H] -> [(L + 1) r]``):

  .. math::

      \\Lambda_t = I + \\sum_{s \\le t} U_s U_s^T, \\qquad
      \\eta_t = \\sum_{s \\le t} U_s \\rho_s, \\qquad
      q(m | h_t) = \\mathcal N(\\Lambda_t^{-1} \\eta_t, \\Lambda_t^{-1}).

  Its state along a history is the natural parameters ``(Lambda, eta)``; training windows
  are not available (the sums run from the trial's start).

Functions take a :class:`~models.belief.BeliefParams` (they read ``belief_head``) and a
:class:`~models.belief.BeliefConfig` (``latent_dim``, ``factor_rank``). Sequence functions
read features ``[..., N, H]`` of a sequence that starts at the trial's start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from varibased.models import networks

if TYPE_CHECKING:
    from varibased.models.belief import BeliefConfig, BeliefParams

Array = jax.Array

__all__ = [
    "GuideFamily",
    "diagonal",
    "factors",
    "FAMILIES",
    "family",
    "belief_head",
    "belief_factors",
    "natural_init",
    "natural_step",
    "natural_beliefs",
    "natural_to_moments",
]


class GuideFamily(NamedTuple):
    """One family of Gaussian guides ``q(m | h_t)`` (batch shapes below: ``N`` steps).

    Attributes:
        name: the ``BeliefConfig.guide`` value that selects it.
        supports_windows: whether training on cached-state windows is possible.
        num_outputs: ``config -> int``, the belief head's output size.
        prior: ``latent_dim -> Distribution``, ``N(0, I)`` in the family's form (so that the
            ELBO's KL is in closed form).
        distribution: ``(params, features [..., N, H], config) -> Distribution`` with batch
            ``[..., N]`` and event ``[L]``.
        moments: ``(params, features [..., N, H], config) -> (mean [..., N, L],
            scale_tril [..., N, L, L])``.
        marginals: ``(params, features [..., N, H], config) -> (mean, log_scale)``, each
            ``[..., N, L]`` (log marginal standard deviations).
        sample: ``(rng_key, params, features [N, H], config, num_samples) -> [N, S, L]``.
        init_state: ``config -> state``, the incremental state of the empty history.
        update_state: ``(params, state, features [H], config) -> state``, after one more step.
        sample_state: ``(rng_key, params, state, features [H], num) -> [num, L]``, draws of
            the belief of the history whose last features are ``features``.
    """

    name: str
    supports_windows: bool
    num_outputs: Callable[[Any], int]
    prior: Callable[[int], dist.Distribution]
    distribution: Callable[..., dist.Distribution]
    moments: Callable[..., tuple[Array, Array]]
    marginals: Callable[..., tuple[Array, Array]]
    sample: Callable[..., Array]
    init_state: Callable[[Any], Any]
    update_state: Callable[..., Any]
    sample_state: Callable[..., Array]


# --------------------------------------------------------------------------------------
# Diagonal (VariBAD).
# --------------------------------------------------------------------------------------


def belief_head(params: BeliefParams, features: Array) -> tuple[Array, Array]:
    """Diagonal Gaussian belief from features ``[..., H]`` -> ``(mean, log_scale)``, each
    ``[..., L]`` (the log-scale clipped by :func:`networks.clip_log_scale`)."""
    mean, raw = jnp.split(networks.head(params.belief_head, features), 2, axis=-1)
    return mean, networks.clip_log_scale(raw)


def _diagonal_moments(params: BeliefParams, features: Array, config: BeliefConfig):
    del config
    mean, log_scale = belief_head(params, features)
    return mean, jnp.exp(log_scale)[..., None] * jnp.eye(mean.shape[-1], dtype=mean.dtype)


def _diagonal_distribution(params: BeliefParams, features: Array, config: BeliefConfig):
    del config
    mean, log_scale = belief_head(params, features)
    return dist.Normal(mean, jnp.exp(log_scale)).to_event(1)


def _diagonal_sample(rng_key: Array, params: BeliefParams, features: Array, config: BeliefConfig,
                     num_samples: int) -> Array:
    eps = jax.random.normal(rng_key, (features.shape[0], num_samples, config.latent_dim))
    mean, log_scale = belief_head(params, features)
    return mean[:, None, :] + jnp.exp(log_scale)[:, None, :] * eps


def _diagonal_sample_state(rng_key: Array, params: BeliefParams, state, features: Array,
                           num: int) -> Array:
    del state
    mean, log_scale = belief_head(params, features)
    return mean + jnp.exp(log_scale) * jax.random.normal(rng_key, (num,) + mean.shape)


diagonal = GuideFamily(
    name="diagonal",
    supports_windows=True,
    num_outputs=lambda config: 2 * config.latent_dim,
    prior=lambda L: dist.Normal(jnp.zeros(L), 1.0).to_event(1),
    distribution=_diagonal_distribution,
    moments=_diagonal_moments,
    marginals=lambda params, features, config: belief_head(params, features),
    sample=_diagonal_sample,
    init_state=lambda config: (),
    update_state=lambda params, state, features, config: (),
    sample_state=_diagonal_sample_state,
)


# --------------------------------------------------------------------------------------
# Factors (full covariance, natural parameters summed along the history).
# --------------------------------------------------------------------------------------


def belief_factors(params: BeliefParams, features: Array, config: BeliefConfig) -> tuple[Array, Array]:
    """The pseudo-observation factor of each step: features ``[..., H]`` ->
    ``(U [..., L, r], rho [..., r])``, the factor ``U^T m ~ N(rho, I_r)``."""
    z = networks.head(params.belief_head, features)
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


def _factors_moments(params: BeliefParams, features: Array, config: BeliefConfig):
    return natural_to_moments(*natural_beliefs(params, features, config))


def _factors_distribution(params: BeliefParams, features: Array, config: BeliefConfig):
    mean, scale_tril = _factors_moments(params, features, config)
    return dist.MultivariateNormal(mean, scale_tril=scale_tril)


def _factors_marginals(params: BeliefParams, features: Array, config: BeliefConfig):
    mean, scale_tril = _factors_moments(params, features, config)
    return mean, jnp.log(jnp.linalg.norm(scale_tril, axis=-1))


def _factors_sample(rng_key: Array, params: BeliefParams, features: Array, config: BeliefConfig,
                    num_samples: int) -> Array:
    eps = jax.random.normal(rng_key, (features.shape[0], num_samples, config.latent_dim))
    mean, scale_tril = _factors_moments(params, features, config)
    return mean[:, None, :] + jnp.einsum("nij,nsj->nsi", scale_tril, eps)


def _factors_sample_state(rng_key: Array, params: BeliefParams, state, features: Array,
                          num: int) -> Array:
    del params, features
    mean, scale_tril = natural_to_moments(*state)
    return mean + jax.random.normal(rng_key, (num,) + mean.shape) @ scale_tril.T


factors = GuideFamily(
    name="factors",
    supports_windows=False,
    num_outputs=lambda config: (config.latent_dim + 1) * config.factor_rank,
    prior=lambda L: dist.MultivariateNormal(jnp.zeros(L), scale_tril=jnp.eye(L)),
    distribution=_factors_distribution,
    moments=_factors_moments,
    marginals=_factors_marginals,
    sample=_factors_sample,
    init_state=natural_init,
    update_state=natural_step,
    sample_state=_factors_sample_state,
)

#: The guide families by ``BeliefConfig.guide`` name.
FAMILIES: dict[str, GuideFamily] = {"diagonal": diagonal, "factors": factors}


def family(config: BeliefConfig) -> GuideFamily:
    """The :class:`GuideFamily` that ``config.guide`` names."""
    return FAMILIES[config.guide]
