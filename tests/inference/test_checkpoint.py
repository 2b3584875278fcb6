"""Checkpoints: round trip, atomic writes, refusal of corrupt and foreign files."""

import os
import signal
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from varibased.inference import checkpoint
from varibased.inference.checkpoint import CheckpointError


class _State(NamedTuple):
    params: dict
    step: jax.Array
    rng_key: jax.Array


def _state(seed=0):
    return _State({"w": jnp.arange(6.0).reshape(2, 3) + seed, "b": jnp.zeros(3)}, jnp.int32(seed),
                  jax.random.key(seed))


def test_round_trip(tmp_path):
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, _state(3), {"iteration": 7, "config": {"lr": 0.1}})
    state, meta = checkpoint.load(path, _state(0))
    assert meta == {"iteration": 7, "config": {"lr": 0.1}}
    np.testing.assert_array_equal(state.params["w"], _state(3).params["w"])
    assert int(state.step) == 3
    np.testing.assert_array_equal(jax.random.key_data(state.rng_key), jax.random.key_data(jax.random.key(3)))
    assert checkpoint.read_metadata(path)["iteration"] == 7


def test_refuses_missing_corrupt_truncated_and_foreign(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.npz", _state())
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"definitely not a zip file")
    with pytest.raises(CheckpointError, match="not a readable"):
        checkpoint.load(garbage, _state())
    good = tmp_path / "good.npz"
    checkpoint.save(good, _state())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CheckpointError):
        checkpoint.load(truncated, _state())
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a readable|not a varibased"):
        checkpoint.load(foreign, _state())
    other = _State({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}, jnp.int32(0), jax.random.key(0))
    with pytest.raises(CheckpointError, match="shape"):
        checkpoint.load(good, other)
    with pytest.raises(CheckpointError, match="another structure"):
        checkpoint.load(good, {"w": jnp.zeros(3)})


def test_killed_write_never_corrupts_the_latest(tmp_path):
    path = tmp_path / "latest.npz"
    checkpoint.save(path, _state(1), {"iteration": 1})
    script = textwrap.dedent(f"""
        import os, jax.numpy as jnp
        from varibased.inference import checkpoint
        real_fsync = os.fsync
        def slow_fsync(fd):
            print("writing", flush=True)
            import time; time.sleep(60)
        os.fsync = slow_fsync
        checkpoint.save({str(path)!r}, {{"big": jnp.ones((1000, 1000))}}, {{"iteration": 2}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state, meta = checkpoint.load(path, _state(0))
    assert meta["iteration"] == 1 and int(state.step) == 1
