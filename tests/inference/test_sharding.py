"""Sharding: one EM iteration on two (forced host) devices equals the single-device one.

``XLA_FLAGS=--xla_force_host_platform_device_count=2`` must be set before jax is imported,
so the two-device comparison runs in a subprocess that prints its measurements as JSON.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import pytest

from varibased.inference import sharding
from varibased.inference.trainer import Trainer

ROOT = pathlib.Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
    import dataclasses, json
    import jax, jax.numpy as jnp, numpy as np
    from varibased.inference import em, sharding
    from varibased.models import registry
    from tests.inference.test_runner import _reinforce_trainer
    from tests.planning.test_reference_agents import _boxes_task

    assert len(jax.devices()) == 2, jax.devices()
    out = {}

    def split(state):
        floats, ints = [], []
        for leaf in jax.tree.leaves(state):
            if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                leaf = jax.random.key_data(leaf)
            (floats if jnp.issubdtype(leaf.dtype, jnp.floating) else ints).append(np.asarray(leaf))
        return floats, ints

    # 1. VariBASeD: one EM iteration, environments split over the two devices.
    task = registry.make("bernoulli_bandit", num_arms=2, horizon=5)
    config = em.EMConfig.for_task(
        "bernoulli_bandit", num_envs=4, num_particles=4, num_nested=2, depth=2, svi_updates=2,
        batch_trials=4, replay_trials=8, latent_dim=2, hidden_size=8, state_size=4,
        decoder_hidden=(8,), head_hidden=8)
    trainer = em.make_trainer(task, config)
    mesh = sharding.make_mesh()
    sharded = sharding.shard_trainer(trainer, mesh)
    single_state, single_metrics = jax.jit(trainer.iteration)(trainer.init(jax.random.key(3)))
    state, metrics = sharded.iteration(sharded.init(jax.random.key(3)))
    out["em_metrics"] = [[float(single_metrics[k]), float(metrics[k])] for k in sorted(metrics)]
    (f_single, i_single), (f_sharded, i_sharded) = split(single_state), split(state)
    out["em_ints_equal"] = all(np.array_equal(a, b) for a, b in zip(i_single, i_sharded))
    out["em_state_max_abs_diff"] = max(float(np.max(np.abs(a - b))) for a, b in zip(f_single, f_sharded))
    out["em_state_scale"] = max(float(np.max(np.abs(a))) for a in f_single)
    out["state_devices"] = len(jax.tree.leaves(state)[0].sharding.device_set)
    hlo = sharded.iteration.lower(state).compile().as_text()
    out["partitioned"] = "num_partitions=2" in hlo
    out["collectives"] = any(op in hlo for op in ("all-gather", "all-reduce", "all-to-all"))

    # 2. Seeds: two independent runs, one per device, each equal to its own run.
    boxes = _boxes_task()
    toy = _reinforce_trainer(boxes)
    seeds = sharding.shard_seeds(toy, sharding.make_mesh(num_seed_shards=2))
    stacked = seeds.init(jax.random.split(jax.random.key(0), 2))
    for _ in range(3):
        stacked, seed_metrics = seeds.iteration(stacked)
    out["seed_sharding"] = stacked.logits.sharding.spec[0]
    one = jax.jit(toy.iteration)
    diffs = []
    for i, key in enumerate(jax.random.split(jax.random.key(0), 2)):
        alone = toy.init(key)
        for _ in range(3):
            alone, alone_metrics = one(alone)
        diffs.append(float(np.max(np.abs(np.asarray(alone.logits) - np.asarray(stacked.logits[i])))))
        diffs.append(abs(float(alone_metrics["return"]) - float(seed_metrics["return"][i])))
    out["seed_max_abs_diff"] = max(diffs)
    try:
        odd = dataclasses.replace(config, num_envs=3, replay_trials=9)
        sharding.shard_trainer(em.make_trainer(task, odd), mesh)
        out["indivisible_error"] = None
    except ValueError as error:
        out["indivisible_error"] = str(error)
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def two_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_em_iteration_sharded_equals_single_device(two_devices):
    out = two_devices
    assert out["partitioned"] and out["collectives"] and out["state_devices"] == 2
    for single, sharded in out["em_metrics"]:
        assert sharded == pytest.approx(single, rel=1e-5, abs=1e-6)
    assert out["em_ints_equal"]  # actions, counters, replay cursor and keys: identical
    assert out["em_state_max_abs_diff"] <= 1e-5 * max(out["em_state_scale"], 1.0)


def test_seeds_sharded_equal_their_own_runs(two_devices):
    assert two_devices["seed_sharding"] == "seeds"
    assert two_devices["seed_max_abs_diff"] <= 1e-6


def test_indivisible_environments_refused(two_devices):
    assert "num_envs (3) must be divisible by the 2 devices" in two_devices["indivisible_error"]


def test_mesh_and_wrappers_validate_before_compiling():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == ("seeds", "envs") and mesh.devices.size == len(jax.devices())
    with pytest.raises(ValueError, match="num_seed_shards"):
        sharding.make_mesh(num_seed_shards=0)
    with pytest.raises(ValueError, match="must divide the number of devices"):
        sharding.make_mesh(num_seed_shards=len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="needs an inference.trainer.Trainer"):
        sharding.shard_trainer(object(), mesh)
    dummy = Trainer(lambda k: k, lambda s: (s, {}), lambda s, e: None, 1, None)
    with pytest.raises(ValueError, match="jax.sharding.Mesh"):
        sharding.shard_trainer(dummy, "cpu")
    seeds = sharding.shard_seeds(dummy, mesh)
    with pytest.raises(ValueError, match="1-D array of keys"):
        seeds.init(jax.random.key(0))
