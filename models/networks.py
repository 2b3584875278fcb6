"""Small network helpers: dense layers, MLPs, two-layer heads and layer norm, as pure
functions of parameter pytrees (plain dicts of float32 arrays).

They are shared by the S5 encoder (:mod:`models.s5`), the learned BAMDP (belief head,
decoder, policy and value heads; :mod:`models.belief`) and the RL^2 baseline, so that every
network in the library is initialized and applied the same way. Initializers take their
random keys explicitly and consume them in a fixed order.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["dense_init", "dense", "mlp_init", "mlp", "head_init", "head", "layer_norm_init",
           "layer_norm", "clip_log_scale", "LOG_SCALE_MIN", "LOG_SCALE_MAX"]

#: The range of every learned log standard deviation (belief head, reward noise).
LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 2.0


def dense_init(rng_key: Array, n_in: int, n_out: int, scale: float = 1.0) -> dict[str, Array]:
    """A dense layer ``x @ w + b`` with ``w ~ N(0, scale^2 / n_in)`` and ``b = 0``.

    Returns:
        ``{"w": float32 [n_in, n_out], "b": float32 [n_out]}``.
    """
    w = jax.random.normal(rng_key, (n_in, n_out), jnp.float32) * (scale / np.sqrt(n_in))
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def dense(params: dict[str, Array], x: Array) -> Array:
    """Apply a dense layer: ``x [..., n_in]`` -> ``[..., n_out]``."""
    return x @ params["w"] + params["b"]


def mlp_init(rng_key: Array, sizes: tuple[int, ...], last_scale: float = 1.0) -> tuple:
    """An MLP with layer sizes ``sizes = (n_in, h_1, ..., n_out)``; the last layer's weights
    are scaled by ``last_scale``. One key per layer, split from ``rng_key``.

    Returns:
        A tuple of ``len(sizes) - 1`` dense layers.
    """
    keys = jax.random.split(rng_key, len(sizes) - 1)
    return tuple(
        dense_init(keys[i], sizes[i], sizes[i + 1], last_scale if i == len(sizes) - 2 else 1.0)
        for i in range(len(sizes) - 1)
    )


def mlp(layers: tuple, x: Array) -> Array:
    """Apply an MLP (ReLU between layers, none after the last): ``[..., n_in] -> [..., n_out]``."""
    for layer in layers[:-1]:
        x = jax.nn.relu(dense(layer, x))
    return dense(layers[-1], x)


def head_init(hidden_key: Array, out_key: Array, n_in: int, n_hidden: int, n_out: int,
              out_scale: float = 1.0) -> dict[str, dict[str, Array]]:
    """A two-layer head ``{"hidden": dense(n_in, n_hidden), "out": dense(n_hidden, n_out)}``.

    The two keys are given separately (callers may pass the same key twice, as the belief head
    does, to keep their random streams)."""
    return {"hidden": dense_init(hidden_key, n_in, n_hidden),
            "out": dense_init(out_key, n_hidden, n_out, out_scale)}


def head(params: dict[str, dict[str, Array]], x: Array,
         activation: Callable[[Array], Array] = jax.nn.gelu) -> Array:
    """Apply a two-layer head: ``out(activation(hidden(x)))``, ``[..., n_in] -> [..., n_out]``."""
    return dense(params["out"], activation(dense(params["hidden"], x)))


def layer_norm_init(size: int) -> dict[str, Array]:
    """Layer-norm parameters ``{"scale": ones [size], "bias": zeros [size]}``."""
    return {"scale": jnp.ones((size,), jnp.float32), "bias": jnp.zeros((size,), jnp.float32)}


def layer_norm(params: dict[str, Array], x: Array, eps: float = 1e-5) -> Array:
    """Normalize ``x [..., size]`` over its last axis, then scale and shift."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * params["scale"] + params["bias"]


def clip_log_scale(log_scale: Array) -> Array:
    """Clip a learned log standard deviation to ``[LOG_SCALE_MIN, LOG_SCALE_MAX]`` (any shape)."""
    return jnp.clip(log_scale, LOG_SCALE_MIN, LOG_SCALE_MAX)
