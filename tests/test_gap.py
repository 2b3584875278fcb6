"""benchmarks/gap.py on a tiny VariBASeD GridNavi run trained through the runner: the runner's
parameter snapshots, the --smoke JSON, read-only use of the run, and clear errors."""

import dataclasses
import json
import pathlib
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import gap  # noqa: E402

from varibased.inference import checkpoint, runner, snapshots  # noqa: E402
from varibased.inference.em import EMConfig, make_trainer  # noqa: E402
from varibased.models import registry  # noqa: E402
from varibased.planning.references import references  # noqa: E402

TASK_CONFIG = {"size": 3, "episode_length": 4, "num_episodes": 2, "excluded": 1}
KEYS = {"all_exact", "learned_proposal", "learned_value", "learned_belief", "policy_alone"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two iterations of VariBASeD on a 3x3 GridNavi (8-step trials), evaluated at each."""
    task = registry.make("gridworld", **TASK_CONFIG)
    config = EMConfig.for_task("gridworld", num_envs=4, replay_trials=8, batch_trials=4,
                               svi_updates=2, num_particles=16, num_nested=2, depth=2,
                               hidden_size=8, state_size=4, head_hidden=8, input_hidden=8,
                               decoder_hidden=(8,), latent_dim=2)
    per_iteration = 4 * task.trial_length
    run_config = runner.RunConfig(
        task="gridworld", agent="varibased", num_env_steps=2 * per_iteration, seed=0,
        eval_every=per_iteration, eval_trials=8, agent_config=dataclasses.asdict(config),
        task_config=TASK_CONFIG)
    run_dir = tmp_path_factory.mktemp("gap") / "run"
    trainer = make_trainer(task, config)
    # the references gap.py --smoke uses (cached in memory: computed once per session)
    refs = references("gridworld", num_trials=200, **TASK_CONFIG)
    runner.train(run_dir, run_config, task, trainer, refs, progress=False)
    return run_dir, trainer


def test_runner_keeps_parameter_snapshots_at_every_evaluation(tiny_run):
    run_dir, trainer = tiny_run
    assert [s for s, _ in snapshots.snapshot_paths(run_dir)] == [0, 32, 64]
    loaded = snapshots.load_params_snapshots(run_dir)
    assert [s for s, _ in loaded] == [0, 32, 64]
    meta = checkpoint.read_metadata(snapshots.snapshot_paths(run_dir)[-1][1])
    assert meta == {"iteration": 2, "env_steps": 64}
    # the last snapshot holds the final state's parameters, and nothing else
    state, _ = checkpoint.load(run_dir / runner.CHECKPOINT_FILE, jax.jit(trainer.init)(jax.random.key(0)))
    for a, b in zip(jax.tree.leaves(loaded[-1][1]), jax.tree.leaves(trainer.params(state)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(loaded[0][1]), jax.tree.leaves(loaded[-1][1]), strict=True))


def test_gap_smoke_writes_the_table_without_touching_the_run(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    out = tmp_path / "gap.json"
    assert gap.main(["--run", str(run_dir), "--out", str(out), "--smoke", "--per-goal", "3"]) == 0
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").exists()
    assert result["num_runs"] == 1 and result["planner"]["num_particles"] == [16]
    assert result["planner"]["action_selection"] == "argmax" and result["planner"]["depth"] == 2
    (entry,) = result["checkpoints"]
    assert entry["env_steps"] == 64 and set(entry["K"]) == {"16"}
    row = entry["K"]["16"]
    assert KEYS | {f"{k}_se" for k in KEYS} <= set(row)
    # the exact planner on the tiny grid is far above random and not above Bayes-optimal
    assert 0.4 < row["all_exact"] <= 1 + 3 * row["all_exact_se"]
    assert row["all_exact_gain_over_prior"] > 0.4
    assert row["costs"]["planning"] == pytest.approx(1 - row["all_exact"])
    assert 0 <= entry["belief_tv"] <= 1
    for name in ("value_error_vs_qmdp", "value_error_vs_bayes_optimal"):
        assert {"signed", "abs"} <= set(entry[name])
        assert entry[name]["abs"] >= abs(entry[name]["signed"]) - 1e-9


def test_gap_refuses_what_is_not_a_varibased_gridworld_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert gap.main(["--run", str(tmp_path / "empty"), "--out", str(tmp_path / "a.json")]) == 2
    assert "error:" in capsys.readouterr().err
    other = tmp_path / "rl2"
    other.mkdir()
    other.joinpath("config.json").write_text(json.dumps(
        {"task": "gridworld", "agent": "rl2", "seed": 0, "agent_config": {}}))
    assert gap.main(["--run", str(other), "--out", str(tmp_path / "b.json")]) == 2
    assert "VariBASeD" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()
