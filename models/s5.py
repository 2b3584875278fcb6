"""S5: a diagonal complex state-space layer, written in real arithmetic, and a small encoder.

The continuous-time system of one layer (Smith, Warrington & Linderman, 2023) is

.. math::

    \\dot x(t) = \\Lambda x(t) + B u(t), \\qquad y(t) = \\operatorname{Re}(C x(t)) + D \\odot u(t),

with a diagonal complex ``Lambda`` (``P`` states), complex ``B`` (``P x H``), complex ``C``
(``H x P``) and real ``D`` (``H``). Zero-order hold with per-state step sizes ``Delta`` gives

.. math::

    \\bar\\Lambda = e^{\\Lambda \\Delta}, \\qquad \\bar B = \\Lambda^{-1}(\\bar\\Lambda - 1) B,
    \\qquad x_k = \\bar\\Lambda \\odot (1 - r_k)\\, x_{k-1} + \\bar B u_k,

where ``r_k`` is a **reset flag**: ``r_k = 1`` zeroes the memory before step ``k`` (a trial
boundary). Complex numbers are carried as separate real and imaginary float32 arrays (faster
than complex64 on CPU). The same recurrence comes in three forms that agree to float32
precision and all take and return the carried state:

* :func:`apply_parallel`: ``jax.lax.associative_scan`` with the reset inside the operator;
* :func:`apply_sequential`: ``jax.lax.scan`` of :func:`apply_step`;
* :func:`apply_step`: one step from a carried state (acting, planning).

Initialization is HiPPO-N: the eigenvalues of the normal part of the HiPPO-LegS matrix
(real parts ``-1/2``), with ``B`` and ``C`` expressed in its eigenbasis.

The encoder (:func:`encoder_init`, :func:`encoder_step`, :func:`encoder_apply`) is a linear
input projection to ``H`` followed by ``num_layers`` residual blocks
``x + GLU(GELU(S5(LayerNorm(x))))``; its carry is a tuple of :class:`SSMState` (one per layer).
Everything is written for one sequence; vmap over sequences at the boundary.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from varibased.models import networks
from varibased.models import validation as check

Array = jax.Array

__all__ = [
    "SSMParams",
    "SSMState",
    "EncoderConfig",
    "hippo_n_eigenvalues",
    "ssm_init",
    "discretize_zoh",
    "initial_state",
    "apply_step",
    "apply_sequential",
    "apply_parallel",
    "encoder_init",
    "encoder_initial_carry",
    "encoder_step",
    "encoder_apply",
]


class SSMParams(NamedTuple):
    """Parameters of one S5 layer (paper notation).

    Attributes:
        Lambda_log_neg_re: float32 ``[P]``; ``Re(Lambda) = -exp(.)`` keeps the system stable.
        Lambda_im: float32 ``[P]``, ``Im(Lambda)``.
        B_re, B_im: float32 ``[P, H]``.
        C_re, C_im: float32 ``[H, P]``.
        D: float32 ``[H]``, the feed-through.
        log_step: float32 ``[P]``, ``log Delta``.
    """

    Lambda_log_neg_re: Array
    Lambda_im: Array
    B_re: Array
    B_im: Array
    C_re: Array
    C_im: Array
    D: Array
    log_step: Array


class SSMState(NamedTuple):
    """The carried complex state ``x`` of one layer: real and imaginary parts, ``[P]`` each."""

    re: Array
    im: Array


def hippo_n_eigenvalues(P: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the normal part of the HiPPO-LegS matrix of size ``P``.

    Returns:
        ``(Lambda, V)``: complex128 eigenvalues ``[P]`` (real parts ``-1/2``) and the unitary
        eigenvector matrix ``[P, P]``.
    """
    n = np.arange(P, dtype=np.float64)
    p = np.sqrt(1.0 + 2.0 * n)
    A = -(np.tril(p[:, None] * p[None, :]) - np.diag(n))  # HiPPO-LegS
    q = np.sqrt(n + 0.5)
    S = A + q[:, None] * q[None, :]  # normal part: -1/2 I + skew-symmetric
    Lambda_re = np.mean(np.diag(S)) * np.ones(P)
    Lambda_im, V = np.linalg.eigh(S * -1j)
    return Lambda_re + 1j * Lambda_im, V


def ssm_init(
    rng_key: Array, P: int, H: int, *, step_min: float = 1e-3, step_max: float = 1e-1
) -> SSMParams:
    """HiPPO-N initialization of one S5 layer with ``P`` states and ``H`` features."""
    if P < 1 or H < 1:
        raise ValueError(f"S5 needs P >= 1 and H >= 1, got P={P}, H={H}")
    if not 0 < step_min <= step_max:
        raise ValueError(f"need 0 < step_min <= step_max, got {step_min}, {step_max}")
    Lambda, V = hippo_n_eigenvalues(P)
    k_b, k_c, k_d, k_s = jax.random.split(rng_key, 4)
    # jnp throughout (no host conversion), so that the init can be traced inside jit.
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    dot = lambda a, b: jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)
    V_re, V_im = f32(V.real), f32(V.imag)
    B = jax.random.normal(k_b, (P, H), jnp.float32) / np.sqrt(H)
    C = jax.random.normal(k_c, (H, P, 2), jnp.float32) / np.sqrt(2 * P)
    log_step = jax.random.uniform(k_s, (P,), minval=np.log(step_min), maxval=np.log(step_max))
    return SSMParams(
        Lambda_log_neg_re=f32(np.log(-Lambda.real)),
        Lambda_im=f32(Lambda.imag),
        B_re=dot(V_re.T, B),  # B_tilde = V^H B
        B_im=-dot(V_im.T, B),
        C_re=dot(C[..., 0], V_re) - dot(C[..., 1], V_im),  # C_tilde = C V
        C_im=dot(C[..., 0], V_im) + dot(C[..., 1], V_re),
        D=jax.random.normal(k_d, (H,), jnp.float32),
        log_step=f32(log_step),
    )


def discretize_zoh(params: SSMParams) -> tuple[SSMState, Array, Array]:
    """Zero-order hold: ``(Lambda_bar [P] as SSMState, B_bar_re [P,H], B_bar_im [P,H])``."""
    lam_re = -jnp.exp(params.Lambda_log_neg_re)
    lam_im = params.Lambda_im
    step = jnp.exp(params.log_step)
    mag = jnp.exp(lam_re * step)
    bar_re = mag * jnp.cos(lam_im * step)
    bar_im = mag * jnp.sin(lam_im * step)
    # (Lambda_bar - 1) / Lambda, in real arithmetic.
    num_re, num_im = bar_re - 1.0, bar_im
    denom = lam_re**2 + lam_im**2
    g_re = (num_re * lam_re + num_im * lam_im) / denom
    g_im = (num_im * lam_re - num_re * lam_im) / denom
    B_bar_re = g_re[:, None] * params.B_re - g_im[:, None] * params.B_im
    B_bar_im = g_re[:, None] * params.B_im + g_im[:, None] * params.B_re
    return SSMState(bar_re, bar_im), B_bar_re, B_bar_im


def initial_state(P: int) -> SSMState:
    """The zero state of one layer."""
    return SSMState(jnp.zeros((P,), jnp.float32), jnp.zeros((P,), jnp.float32))


def _readout(params: SSMParams, x: SSMState, u: Array) -> Array:
    return x.re @ params.C_re.T - x.im @ params.C_im.T + params.D * u


def apply_step(params: SSMParams, state: SSMState, u: Array, reset: Array) -> tuple[SSMState, Array]:
    """One recurrence step from a carried state.

    Args:
        params: the layer.
        state: the carried :class:`SSMState` (``[P]`` each).
        u: float32 ``[H]``, the input at this step.
        reset: bool/int scalar; if set, the memory is zeroed before this step.

    Returns:
        ``(state, y)``: the new state and the float32 output ``[H]``.
    """
    lam, B_re, B_im = discretize_zoh(params)
    keep = 1.0 - jnp.asarray(reset, jnp.float32)
    x_re, x_im = state.re * keep, state.im * keep
    new = SSMState(
        lam.re * x_re - lam.im * x_im + B_re @ u,
        lam.re * x_im + lam.im * x_re + B_im @ u,
    )
    return new, _readout(params, new, u)


def apply_sequential(
    params: SSMParams, state: SSMState, u: Array, resets: Array
) -> tuple[SSMState, Array]:
    """The layer over a sequence by ``lax.scan`` of the step.

    Args:
        state: the carried state before the first step.
        u: float32 ``[L, H]``.
        resets: ``[L]`` flags (memory zeroed before step ``k`` where set).

    Returns:
        ``(state, y)``: the state after the last step and the outputs ``[L, H]``.
    """
    lam, B_re, B_im = discretize_zoh(params)
    Bu_re, Bu_im = u @ B_re.T, u @ B_im.T
    keep = 1.0 - jnp.asarray(resets, jnp.float32)

    def body(x: SSMState, inputs):
        bu_re, bu_im, k = inputs
        x_re, x_im = x.re * k, x.im * k
        new = SSMState(lam.re * x_re - lam.im * x_im + bu_re, lam.re * x_im + lam.im * x_re + bu_im)
        return new, new

    last, xs = jax.lax.scan(body, state, (Bu_re, Bu_im, keep))
    return last, _readout(params, xs, u)


def _scan_operator(left, right):
    """Compose two segments ``x -> a x + b``; a reset in ``right`` discards ``left``."""
    a_re_l, a_im_l, b_re_l, b_im_l, r_l = left
    a_re_r, a_im_r, b_re_r, b_im_r, r_r = right
    keep = 1.0 - r_r
    a_re = jnp.where(r_r > 0, a_re_r, a_re_r * a_re_l - a_im_r * a_im_l)
    a_im = jnp.where(r_r > 0, a_im_r, a_re_r * a_im_l + a_im_r * a_re_l)
    b_re = (a_re_r * b_re_l - a_im_r * b_im_l) * keep + b_re_r
    b_im = (a_re_r * b_im_l + a_im_r * b_re_l) * keep + b_im_r
    return a_re, a_im, b_re, b_im, jnp.maximum(r_l, r_r)


def apply_parallel(
    params: SSMParams, state: SSMState, u: Array, resets: Array
) -> tuple[SSMState, Array]:
    """The layer over a sequence by ``jax.lax.associative_scan`` (same contract as
    :func:`apply_sequential`).

    The carried state enters through the first element: ``b_0 += Lambda_bar (1 - r_0) x_{-1}``.
    """
    lam, B_re, B_im = discretize_zoh(params)
    L = u.shape[0]
    Bu_re, Bu_im = u @ B_re.T, u @ B_im.T
    r = jnp.asarray(resets, jnp.float32)[:, None] * jnp.ones_like(Bu_re)
    k0 = 1.0 - r[0]
    Bu_re = Bu_re.at[0].add((lam.re * state.re - lam.im * state.im) * k0)
    Bu_im = Bu_im.at[0].add((lam.re * state.im + lam.im * state.re) * k0)
    a_re = jnp.broadcast_to(lam.re, (L,) + lam.re.shape)
    a_im = jnp.broadcast_to(lam.im, (L,) + lam.im.shape)
    _, _, x_re, x_im, _ = jax.lax.associative_scan(_scan_operator, (a_re, a_im, Bu_re, Bu_im, r))
    xs = SSMState(x_re, x_im)
    return SSMState(x_re[-1], x_im[-1]), _readout(params, xs, u)


# --------------------------------------------------------------------------------------
# The encoder: input projection + residual S5 blocks.
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Size of the S5 encoder.

    Attributes:
        input_dim: size of the per-step input vector (``None`` in an agent's saved config:
            the trainer sets it from the task).
        hidden_size: ``H``, the feature size.
        state_size: ``P``, complex states per layer.
        num_layers: residual S5 blocks.
        mode: ``"sequential"`` (``lax.scan``; the faster one on CPU for short trials) or
            ``"parallel"`` (``associative_scan``) for whole sequences.
        step_min, step_max: range of the initial ZOH step sizes ``Delta`` (log-uniform).
            Trials here are tens of steps, not thousands: with ``Delta`` in ``[0.01, 1]`` a
            single input (a found goal) moves the state by ``O(Delta |B|)`` and is remembered
            for ``~1 / (Delta |Re Lambda|)`` steps.
        input_hidden: hidden units of a GELU layer embedding each input before the first
            S5 block (0: a linear embedding). A linear recurrence can only sum linear
            projections of its inputs; a nonlinear embedding lets it accumulate products
            of an input's parts (e.g. "this cell" and "reward +1"), as VariBAD's input
            embeddings do before its GRU.
    """

    input_dim: int | None = None
    hidden_size: int = 64
    state_size: int = 32
    num_layers: int = 1
    mode: str = "sequential"
    step_min: float = 0.01
    step_max: float = 1.0
    input_hidden: int = 0

    def __post_init__(self) -> None:
        owner = "EncoderConfig"
        if self.input_dim is not None:
            check.set_fields(self, input_dim=check.positive_int(owner, "input_dim", self.input_dim))
        check.set_fields(
            self, **{name: check.positive_int(owner, name, getattr(self, name))
                     for name in ("hidden_size", "state_size", "num_layers")},
            input_hidden=check.nonnegative_int(owner, "input_hidden", self.input_hidden),
            mode=check.choice(owner, "mode", self.mode, ("sequential", "parallel")),
            step_min=check.number(owner, "step_min", self.step_min, low=0.0, low_open=True),
            step_max=check.number(owner, "step_max", self.step_max, low=0.0, low_open=True))
        if self.step_min > self.step_max:
            raise ValueError(f"EncoderConfig needs step_min <= step_max, got {self.step_min}, "
                             f"{self.step_max}")


def encoder_init(rng_key: Array, config: EncoderConfig) -> dict:
    """Parameters of the encoder (a pytree of float32 arrays)."""
    H = config.hidden_size
    keys = jax.random.split(rng_key, 1 + 2 * config.num_layers)
    layers = []
    for i in range(config.num_layers):
        layers.append(
            {
                "norm": networks.layer_norm_init(H),
                "ssm": ssm_init(keys[1 + 2 * i], config.state_size, H,
                                step_min=config.step_min, step_max=config.step_max),
                "glu": networks.dense_init(keys[2 + 2 * i], H, 2 * H),
            }
        )
    if config.input_hidden:
        k_hidden, k_out = jax.random.split(keys[0])
        embed = networks.head_init(k_hidden, k_out, config.input_dim, config.input_hidden, H)
    else:
        embed = networks.dense_init(keys[0], config.input_dim, H)
    return {"input": embed, "layers": tuple(layers)}


def _embed(p: dict, inputs: Array) -> Array:
    """The input embedding: linear, or one GELU hidden layer (``input_hidden > 0``)."""
    if "hidden" in p:
        return networks.head(p, inputs, jax.nn.gelu)
    return networks.dense(p, inputs)


def encoder_initial_carry(config: EncoderConfig) -> tuple[SSMState, ...]:
    """The zero carry: one :class:`SSMState` per layer."""
    return tuple(initial_state(config.state_size) for _ in range(config.num_layers))


def _block_out(layer: dict, x: Array, y: Array) -> Array:
    z = networks.dense(layer["glu"], jax.nn.gelu(y))
    a, g = jnp.split(z, 2, axis=-1)
    return x + a * jax.nn.sigmoid(g)


def encoder_step(
    params: dict, carry: tuple[SSMState, ...], inputs: Array, reset: Array = False
) -> tuple[tuple[SSMState, ...], Array]:
    """One step of the encoder.

    Args:
        params: from :func:`encoder_init`.
        carry: one :class:`SSMState` per layer.
        inputs: float32 ``[input_dim]``.
        reset: if set, every layer's memory is zeroed before this step.

    Returns:
        ``(carry, features)`` with features float32 ``[H]``.
    """
    x = _embed(params["input"], inputs)
    new_carry = []
    for layer, state in zip(params["layers"], carry, strict=True):
        state, y = apply_step(layer["ssm"], state, networks.layer_norm(layer["norm"], x), reset)
        x = _block_out(layer, x, y)
        new_carry.append(state)
    return tuple(new_carry), x


def encoder_apply(
    params: dict,
    carry: tuple[SSMState, ...],
    inputs: Array,
    resets: Array | None = None,
    *,
    mode: str = "sequential",
) -> tuple[tuple[SSMState, ...], Array]:
    """The encoder over a sequence, continuing from ``carry``.

    Args:
        inputs: float32 ``[L, input_dim]``.
        resets: ``[L]`` flags or ``None`` (no resets).
        mode: ``"sequential"`` (layer by layer, ``lax.scan`` of the step) or ``"parallel"``
            (layer by layer, ``associative_scan``).

    Returns:
        ``(carry, features [L, H])``.
    """
    if resets is None:
        resets = jnp.zeros(inputs.shape[:1], jnp.float32)
    if mode not in ("sequential", "parallel"):
        raise ValueError(f"mode must be 'sequential' or 'parallel', got {mode!r}")
    apply = apply_sequential if mode == "sequential" else apply_parallel
    x = _embed(params["input"], inputs)
    new_carry = []
    for layer, state in zip(params["layers"], carry, strict=True):
        state, y = apply(layer["ssm"], state, networks.layer_norm(layer["norm"], x), resets)
        x = _block_out(layer, x, y)
        new_carry.append(state)
    return tuple(new_carry), x
