"""Faults: a non-finite loss or parameter stops the run (last good checkpoint and fault.json
kept); a run killed while writing its checkpoint resumes exactly; a corrupt checkpoint is
refused on resume."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.inference.test_runner import _reinforce_trainer
from tests.planning.test_reference_agents import _boxes_task
from varibased.inference import checkpoint, rl2, runner
from varibased.inference.checkpoint import CheckpointError
from varibased.models import registry

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Reference lines for the toy runs (the score is not what these tests check).
REFS = {"random": {"mean": 1.0, "se": 0.0}, "reference": {"mean": 2.0, "agent": "bayes_optimal"}}


def _config(task_name, steps, **kw):
    base = dict(task=task_name, agent="toy", num_env_steps=steps, seed=1, eval_every=0, eval_trials=8,
                checkpoint_every=1)
    return runner.RunConfig(**{**base, **kw})


def _inject(trainer, at: int, *, metric: str | None = None, value=jnp.nan):
    """``trainer`` whose iteration ``at`` (1-based) reports ``value`` in ``metric``, or, with
    ``metric=None``, puts ``value`` into its parameters (the toy's logits)."""

    def iteration(state):
        new, metrics = trainer.iteration(state)
        hit = new.iteration == at
        if metric is None:
            return new._replace(logits=jnp.where(hit, value, new.logits)), metrics
        return new, {**metrics, metric: jnp.where(hit, value, metrics[metric])}

    return trainer._replace(iteration=iteration)


def test_huge_learning_rate_stops_rl2_with_a_report(tmp_path):
    """A real trainer diverging by itself: adam with step 1e38 makes the parameters ~1e38
    after one update (still finite); the next forward pass overflows."""
    task = registry.make("bernoulli_bandit", num_arms=2, horizon=5)
    config = rl2.RL2Config.for_task("bernoulli_bandit", num_envs=4, num_minibatches=1, num_epochs=1,
                                    hidden_size=8, state_size=4, head_size=8, learning_rate=1e38)
    trainer = rl2.make_trainer(task, config)
    run_dir = tmp_path / "run"
    with pytest.raises(runner.NonFiniteError, match=r"iteration 2: non-finite metrics .*loss"):
        runner.train(run_dir, _config(task.name, 20 * 5, agent="rl2"), task, trainer, REFS, progress=False)
    fault = json.loads((run_dir / "fault.json").read_text())
    assert fault["iteration"] == 2
    assert {"loss", "policy_loss", "value_loss"} <= set(fault["non_finite_metrics"])
    assert fault["metrics"]["loss"] == "nan"
    assert any("params" in leaf for leaf in fault["non_finite_state"])
    state, meta = checkpoint.load(run_dir / "checkpoint.npz", trainer.init(jax.random.key(0)))
    assert meta["iteration"] == 1
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state.params))
    with (run_dir / "metrics.csv").open() as handle:
        assert [row["iteration"] for row in csv.DictReader(handle)] == ["1"]


@pytest.mark.parametrize("metric, value, names, what", [
    ("loss", jnp.nan, (["loss"], []), "metrics loss"),
    (None, jnp.inf, ([], [".logits"]), "parameters"),
])
def test_injected_fault_names_the_term(tmp_path, metric, value, names, what):
    task = _boxes_task()
    trainer = _inject(_reinforce_trainer(task), 3, metric=metric, value=value)
    run_dir = tmp_path / "run"
    with pytest.raises(runner.NonFiniteError, match=f"iteration 3: non-finite {what}; stopped"):
        runner.train(run_dir, _config(task.name, 96 * 6), task, trainer, REFS, progress=False)
    fault = json.loads((run_dir / "fault.json").read_text())
    assert fault["iteration"] == 3
    assert (fault["non_finite_metrics"], fault["non_finite_state"]) == names
    state, meta = checkpoint.load(run_dir / "checkpoint.npz", trainer.init(jax.random.key(0)))
    assert meta["iteration"] == 2 and int(state.iteration) == 2 and np.all(np.isfinite(state.logits))


_KILLED_RUN = textwrap.dedent("""
    import os, sys, time
    from varibased.inference import checkpoint, runner
    from tests.inference.test_faults import REFS, _config
    from tests.inference.test_runner import _reinforce_trainer
    from tests.planning.test_reference_agents import _boxes_task

    real_fsync, calls = os.fsync, []
    def fsync(fd):
        calls.append(fd)
        if len(calls) == 4:  # the 4th checkpoint: half-way through its write
            print("writing", flush=True)
            time.sleep(120)
        real_fsync(fd)
    os.fsync = fsync
    task = _boxes_task()
    runner.train(sys.argv[1], _config(task.name, 96 * 6), task, _reinforce_trainer(task), REFS,
                 progress=False)
""")


def _rows(run_dir):
    with (run_dir / "metrics.csv").open() as handle:
        return [(r["iteration"], r["return"], r["loss"]) for r in csv.DictReader(handle)]


def test_run_killed_during_a_checkpoint_write_resumes_exactly(tmp_path):
    task = _boxes_task()
    trainer = _reinforce_trainer(task)
    runner.train(tmp_path / "full", _config(task.name, 96 * 6), task, trainer, REFS, progress=False)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(killed)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state, meta = checkpoint.load(killed / "checkpoint.npz", trainer.init(jax.random.key(0)))
    assert meta["iteration"] == 3 and int(state.iteration) == 3  # the last complete write
    assert [row[0] for row in _rows(killed)] == ["1", "2", "3", "4"]  # iteration 4 was logged
    runner.train(killed, _config(task.name, 96 * 6), task, trainer, REFS, resume=True, progress=False)
    assert _rows(killed) == _rows(tmp_path / "full")


def test_resume_refuses_a_corrupt_checkpoint_and_keeps_the_files(tmp_path):
    task = _boxes_task()
    trainer = _reinforce_trainer(task)
    run_dir = tmp_path / "run"
    runner.train(run_dir, _config(task.name, 96 * 2), task, trainer, REFS, progress=False)
    ckpt = run_dir / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(CheckpointError, match="not a readable varibased checkpoint"):
        runner.train(run_dir, _config(task.name, 96 * 4), task, trainer, REFS, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
