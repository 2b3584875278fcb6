"""SVI training of the learned BAMDP (:mod:`models.belief`): init once, jitted updates.

Usage::

    trainer = make_belief_svi(task, BeliefConfig(), SVIConfig(learning_rate=1e-3))
    state = trainer.init(rng_key, batch)                      # traced once
    state, loss = trainer.update(state, batch)                # one jitted update
    state, losses = trainer.update_many(state, batches)       # lax.scan over [U, B, T] batches
    params = trainer.get_params(state)                        # a models.belief.BeliefParams

``update`` and ``update_many`` are ``jax.jit``-compiled pure functions; they take the same
optional ``policy_targets`` / ``value_targets`` (and static weights) as the model, so the EM
trainer runs its M-step on the joint objective with them. The loss is
``TraceMeanField_ELBO`` (closed-form KL between the Gaussian guide and the N(0, I) prior).
When the belief's configuration subsamples the ELBO (``BeliefConfig.elbo_steps`` /
``decode_steps``, :mod:`models.subsample`), every update takes an explicit ``subsample_key``
(``subsample_keys [U]`` for ``update_many``) drawing the steps it keeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI, TraceMeanField_ELBO
from numpyro.infer.svi import SVIState

from varibased.models import subsample
from varibased.models import validation as check
from varibased.models.belief import BeliefConfig, BeliefModel, BeliefParams, make_belief_model
from varibased.models.history import TrialBatch
from varibased.models.task import Task

Array = jax.Array

__all__ = ["SVIConfig", "BeliefSVI", "make_belief_svi", "SVIState", "sample_minibatches", "fit"]


@dataclasses.dataclass(frozen=True)
class SVIConfig:
    """Optimizer settings.

    Attributes:
        learning_rate: Adam step size.
        max_grad_norm: global gradient-norm clip (``None``: no clipping).
        num_particles: Monte Carlo samples of the ELBO per update.
    """

    learning_rate: float = 1e-3
    max_grad_norm: float | None = 1.0
    num_particles: int = 1

    def __post_init__(self) -> None:
        check.set_fields(
            self,
            learning_rate=check.number("SVIConfig", "learning_rate", self.learning_rate, low=0.0,
                                       low_open=True),
            num_particles=check.positive_int("SVIConfig", "num_particles", self.num_particles),
        )
        if self.max_grad_norm is not None:
            check.set_fields(self, max_grad_norm=check.number(
                "SVIConfig", "max_grad_norm", self.max_grad_norm, low=0.0, low_open=True))


class BeliefSVI(NamedTuple):
    """Pure functions of an SVI trainer (see the module docstring).

    Attributes:
        init: ``(rng_key, batch, policy_targets=None, value_targets=None) -> SVIState``.
        update: ``(state, batch, policy_targets=None, value_targets=None, policy_weight=1.,
            value_weight=1., window=None, subsample_key=None) -> (state, loss)``, jitted
            (``window``: a :class:`~models.history.Window`, to train on fixed windows from
            cached S5 states; ``subsample_key``: needed when the ELBO is subsampled).
        update_many: same, with a leading axis ``U`` on ``batch``, the targets, the windows
            (``windows=``) and the keys (``subsample_keys=``): ``U`` updates in one
            ``lax.scan`` -> ``(state, losses [U])``, jitted.
        get_params: ``state -> BeliefParams``.
        loss: ``(rng_key, params, batch, ...) -> float``, the loss at given parameters.
        svi: the underlying ``numpyro.infer.SVI``.
        belief_model: the :class:`~models.belief.BeliefModel`.
    """

    init: Callable[..., SVIState]
    update: Callable[..., tuple[SVIState, Array]]
    update_many: Callable[..., tuple[SVIState, Array]]
    get_params: Callable[[SVIState], BeliefParams]
    loss: Callable[..., Array]
    svi: Any
    belief_model: BeliefModel


def make_belief_svi(task: Task, config: BeliefConfig | None = None,
                    svi_config: SVIConfig | None = None) -> BeliefSVI:
    """Build the SVI trainer of the learned model of ``task``."""
    belief_model = make_belief_model(task, config)
    svi_config = SVIConfig() if svi_config is None else svi_config
    if not isinstance(svi_config, SVIConfig):
        raise ValueError(f"svi_config must be an SVIConfig, got {type(svi_config).__name__}")
    optimizer = optax.adam(svi_config.learning_rate)
    if svi_config.max_grad_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(svi_config.max_grad_norm), optimizer)
    elbo = TraceMeanField_ELBO(num_particles=svi_config.num_particles)
    svi = SVI(belief_model.model, belief_model.guide, optimizer, elbo)

    def init(rng_key: Array, batch: TrialBatch, policy_targets=None, value_targets=None) -> SVIState:
        return svi.init(rng_key, batch, policy_targets, value_targets)

    def check_key(key) -> None:
        if key is None and subsample.subsamples(belief_model.config):
            raise ValueError("BeliefConfig.elbo_steps / decode_steps subsample the ELBO: every update "
                             "needs a subsample_key (update_many: subsample_keys [U])")

    def update(state: SVIState, batch: TrialBatch, policy_targets=None, value_targets=None,
               policy_weight=1.0, value_weight=1.0, window=None, subsample_key=None):
        check_key(subsample_key)
        return svi.update(state, batch, policy_targets, value_targets, policy_weight, value_weight,
                          window, subsample_key)

    def update_many(state: SVIState, batches: TrialBatch, policy_targets=None, value_targets=None,
                    policy_weight=1.0, value_weight=1.0, windows=None, subsample_keys=None):
        check_key(subsample_keys)

        def body(s, xs):
            batch, pt, vt, window, key = xs
            return update(s, batch, pt, vt, policy_weight, value_weight, window, key)

        return jax.lax.scan(body, state, (batches, policy_targets, value_targets, windows, subsample_keys))

    def get_params(state: SVIState) -> BeliefParams:
        # Every site is an unconstrained ``numpyro.param``, so the optimizer's values are the
        # parameters: no need for ``svi.init``'s constrain_fn (works on a restored state too).
        return BeliefParams(**svi.optim.get_params(state.optim_state))

    def loss(rng_key: Array, params: BeliefParams, batch: TrialBatch, policy_targets=None,
             value_targets=None, policy_weight=1.0, value_weight=1.0, subsample_key=None) -> Array:
        return elbo.loss(rng_key, params._asdict(), belief_model.model, belief_model.guide, batch,
                         policy_targets, value_targets, policy_weight, value_weight, None, subsample_key)

    return BeliefSVI(
        init=init,
        update=jax.jit(update),
        update_many=jax.jit(update_many),
        get_params=get_params,
        loss=jax.jit(loss),
        svi=svi,
        belief_model=belief_model,
    )


def sample_minibatches(rng_key: Array, data: TrialBatch, num_batches: int, batch_size: int) -> TrialBatch:
    """``num_batches`` minibatches of ``batch_size`` trials drawn without replacement within
    each minibatch: a :class:`TrialBatch` ``[num_batches, batch_size, T, ...]``."""
    num_trials = data.actions.shape[0]
    if batch_size > num_trials:
        raise ValueError(f"batch_size {batch_size} exceeds the {num_trials} trials of the data")
    keys = jax.random.split(rng_key, num_batches)
    index = jax.vmap(lambda k: jax.random.permutation(k, num_trials)[:batch_size])(keys)
    return jax.tree.map(lambda x: x[index], data)


def fit(rng_key: Array, trainer: BeliefSVI, data: TrialBatch, *, num_updates: int,
        batch_size: int = 64, updates_per_call: int = 10,
        state: SVIState | None = None) -> tuple[SVIState, np.ndarray]:
    """Train the belief alone (no policy/value targets) on a fixed data set of trials.

    Every call of the jitted ``update_many`` runs ``updates_per_call`` updates on fresh
    random minibatches of ``batch_size`` trials; ``num_updates`` is rounded up to a multiple.
    A subsampled ELBO (:mod:`models.subsample`) draws its steps from keys folded from each
    call's minibatch key.

    Returns:
        ``(state, losses)`` with the loss of every update (numpy ``[num_updates]``).
    """
    if num_updates < 1 or updates_per_call < 1:
        raise ValueError(f"need num_updates >= 1 and updates_per_call >= 1, got "
                         f"{num_updates}, {updates_per_call}")
    init_key, data_key = jax.random.split(rng_key)
    if state is None:
        state = trainer.init(init_key, jax.tree.map(lambda x: x[:batch_size], data))
    draw = jax.jit(sample_minibatches, static_argnums=(2, 3))
    losses = []
    num_calls = -(-num_updates // updates_per_call)
    subsampled = subsample.subsamples(trainer.belief_model.config)
    for key in jax.random.split(data_key, num_calls):
        keys = jax.random.split(jax.random.fold_in(key, 1), updates_per_call) if subsampled else None
        state, loss = trainer.update_many(state, draw(key, data, updates_per_call, batch_size),
                                          subsample_keys=keys)
        losses.append(loss)
    return state, np.asarray(jnp.concatenate(losses))
