"""Policy and value heads: the symlog value read-out and the heads' gradient into the shared
encoder (BeliefConfig.value_transform, heads_encoder_gradient)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference.em import EMConfig
from varibased.models import heads
from varibased.models.belief import BeliefConfig


def test_symlog_and_symexp_are_inverse():
    x = jnp.array([-56.0, -6.0, -0.1, 0.0, 0.1, 1.0, 37.2, 56.0])
    np.testing.assert_allclose(heads.symexp(heads.symlog(x)), x, rtol=1e-5, atol=1e-6)
    assert float(heads.symlog(jnp.float32(56.0))) == pytest.approx(np.log(57.0), rel=1e-6)


@pytest.mark.parametrize("g", [0.0, 0.25, 1.0])
def test_head_gradient_into_the_encoder_is_scaled(g):
    config = BeliefConfig(heads_encoder_gradient=g)
    w = jnp.array([1.0, -2.0, 3.0])

    def loss(w):
        features = jnp.tanh(w * 0.5)  # stands for the S5 encoder
        return jnp.sum(heads.head_features(features, config) ** 2)

    features = jnp.tanh(w * 0.5)
    np.testing.assert_allclose(heads.head_features(features, config), features)  # values unchanged

    full = jax.grad(lambda w: jnp.sum(jnp.tanh(w * 0.5) ** 2))(w)
    np.testing.assert_allclose(jax.grad(loss)(w), g * full, rtol=1e-6, atol=1e-7)


def test_value_options_are_validated():
    with pytest.raises(ValueError, match="value_transform"):
        BeliefConfig(value_transform="log")
    with pytest.raises(ValueError, match="heads_encoder_gradient"):
        BeliefConfig(heads_encoder_gradient=1.5)
    with pytest.raises(ValueError, match="value_targets"):
        EMConfig.for_task("my_task", value_targets="stored")
    with pytest.raises(ValueError, match="window=0"):
        EMConfig.for_task("my_task", value_targets="current", window=5)
