"""S5: the parallel, sequential and step forms are the same recurrence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.models import s5

P, H, L = 8, 6, 23
_STEP = jax.jit(s5.apply_step)


def _inputs(seed: int):
    k_p, k_u, k_r, k_x = jax.random.split(jax.random.key(seed), 4)
    params = s5.ssm_init(k_p, P, H, step_min=0.05, step_max=0.5)
    u = jax.random.normal(k_u, (L, H))
    resets = (jax.random.uniform(k_r, (L,)) < 0.2).astype(jnp.float32)
    x0 = s5.SSMState(*jax.random.normal(k_x, (2, P)))
    return params, u, resets, x0


def _stepwise(params, state, u, resets):
    ys = []
    for k in range(u.shape[0]):
        state, y = _STEP(params, state, u[k], resets[k])
        ys.append(y)
    return state, jnp.stack(ys)


def _complex_reference(params, x0, u, resets):
    """The recurrence in complex128 numpy, straight from the equations."""
    lam = -np.exp(np.float64(params.Lambda_log_neg_re)) + 1j * np.float64(params.Lambda_im)
    step = np.exp(np.float64(params.log_step))
    lam_bar = np.exp(lam * step)
    B = np.float64(params.B_re) + 1j * np.float64(params.B_im)
    C = np.float64(params.C_re) + 1j * np.float64(params.C_im)
    B_bar = ((lam_bar - 1) / lam)[:, None] * B
    x = np.float64(x0.re) + 1j * np.float64(x0.im)
    ys = []
    for k in range(u.shape[0]):
        x = lam_bar * x * (1 - float(resets[k])) + B_bar @ np.float64(u[k])
        ys.append((C @ x).real + np.float64(params.D) * np.float64(u[k]))
    return x, np.stack(ys)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_forms_agree_with_resets_and_carried_state(seed):
    params, u, resets, x0 = _inputs(seed)
    resets = resets.at[0].set(float(seed == 2))  # also a reset at the very first step
    seq_state, seq_y = jax.jit(s5.apply_sequential)(params, x0, u, resets)
    par_state, par_y = jax.jit(s5.apply_parallel)(params, x0, u, resets)
    step_state, step_y = _stepwise(params, x0, u, resets)
    ref_state, ref_y = _complex_reference(params, x0, u, resets)
    for y in (seq_y, par_y, step_y):
        np.testing.assert_allclose(y, ref_y, atol=1e-5)
    for state in (seq_state, par_state, step_state):
        np.testing.assert_allclose(state.re, ref_state.real, atol=1e-5)
        np.testing.assert_allclose(state.im, ref_state.imag, atol=1e-5)


def test_reset_cuts_the_memory():
    params, u, _, x0 = _inputs(3)
    resets = jnp.zeros((L,)).at[10].set(1.0)
    _, y_full = s5.apply_parallel(params, x0, u, resets)
    # After the reset only the inputs from step 10 on matter.
    _, y_tail = s5.apply_sequential(params, s5.initial_state(P), u[10:], jnp.zeros((L - 10,)))
    np.testing.assert_allclose(y_full[10:], y_tail, atol=1e-5)


def test_continuing_a_sequence_equals_one_pass():
    params, u, resets, x0 = _inputs(4)
    state_a, y_a = s5.apply_parallel(params, x0, u[:9], resets[:9])
    state_b, y_b = s5.apply_parallel(params, state_a, u[9:], resets[9:])
    state, y = s5.apply_sequential(params, x0, u, resets)
    np.testing.assert_allclose(jnp.concatenate([y_a, y_b]), y, atol=1e-5)
    np.testing.assert_allclose(state_b.re, state.re, atol=1e-5)


def test_hippo_n_eigenvalues():
    Lambda, V = s5.hippo_n_eigenvalues(16)
    np.testing.assert_allclose(Lambda.real, -0.5, atol=1e-12)
    np.testing.assert_allclose(V.conj().T @ V, np.eye(16), atol=1e-10)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_forms_agree_and_gradients_are_finite(num_layers):
    config = s5.EncoderConfig(input_dim=5, hidden_size=H, state_size=P, num_layers=num_layers)
    k_p, k_u, k_r = jax.random.split(jax.random.key(5), 3)
    params = s5.encoder_init(k_p, config)
    inputs = jax.random.normal(k_u, (L, 5))
    resets = (jax.random.uniform(k_r, (L,)) < 0.2).astype(jnp.float32)
    carry0 = s5.encoder_initial_carry(config)
    carry0, _ = s5.encoder_apply(params, carry0, inputs[:4])  # a non-zero carried state
    c_seq, f_seq = s5.encoder_apply(params, carry0, inputs, resets, mode="sequential")
    c_par, f_par = s5.encoder_apply(params, carry0, inputs, resets, mode="parallel")
    step = jax.jit(s5.encoder_step)
    carry, feats = carry0, []
    for k in range(L):
        carry, f = step(params, carry, inputs[k], resets[k])
        feats.append(f)
    assert f_seq.shape == (L, H)
    np.testing.assert_allclose(f_par, f_seq, atol=1e-5)
    np.testing.assert_allclose(jnp.stack(feats), f_seq, atol=1e-5)
    for a, b in zip(jax.tree.leaves((c_par, carry)), jax.tree.leaves((c_seq, c_seq)), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)

    def loss(p, mode):
        return jnp.sum(s5.encoder_apply(p, carry0, inputs, resets, mode=mode)[1] ** 2)

    for mode in ("sequential", "parallel"):
        grads = jax.grad(loss)(params, mode)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    g_seq = jax.grad(loss)(params, "sequential")
    g_par = jax.grad(loss)(params, "parallel")
    for a, b in zip(jax.tree.leaves(g_seq), jax.tree.leaves(g_par), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="state_size"):
        s5.EncoderConfig(input_dim=3, state_size=0)
    with pytest.raises(ValueError, match="mode"):
        s5.EncoderConfig(input_dim=3, mode="fast")
