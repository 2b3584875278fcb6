"""Pictures of a run directory (inference.pictures) and ``varibased plot``, on tiny runs."""

import dataclasses
import json
import struct

import pytest

from varibased.inference import agents, cli, pictures, runner
from varibased.models.bandit import make_bernoulli_bandit
from varibased.models.function_optimization import make_function_optimization
from varibased.models.gridworld import make_gridworld

# Hand-set references (the runner only needs random and R_ref; not exact: no bug check).
REFS = {"random": {"mean": -2.0, "se": 0.0}, "posterior_sampling": {"mean": 0.0, "se": 0.0},
        "reference": {"agent": "bayes_optimal", "mean": 1.0, "se": 0.0, "exact": False},
        "bayes_optimal": {"mean": 1.0, "se": 0.0}}
TINY_EM = dict(num_envs=4, num_particles=4, num_nested=2, depth=2, svi_updates=1, batch_trials=4,
               replay_trials=8, hidden_size=16, state_size=8, head_hidden=16, latent_dim=3,
               decoder_hidden=(8,))
TINY_RL2 = dict(num_envs=4, num_minibatches=1, num_epochs=1)


def _png_size(path):
    """(width, height) of a PNG, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _assert_picture(path, min_width=500, min_height=300):
    assert path.exists(), path
    width, height = _png_size(path)
    assert width >= min_width and height >= min_height, (path.name, width, height)
    assert path.stat().st_size > 10_000, (path.name, path.stat().st_size)  # something drawn


def _tiny_run(run_dir, agent, task, overrides):
    config = agents.make_config(agent, task.name, overrides)
    trainer = agents.make_trainer(agent, task, config)
    run_config = runner.RunConfig(
        task=task.name, agent=agent, num_env_steps=trainer.env_steps_per_iteration, eval_trials=4,
        agent_config=json.loads(json.dumps(dataclasses.asdict(config))))
    runner.train(run_dir, run_config, task, trainer, REFS, progress=False)
    return run_dir


@pytest.fixture(autouse=True)
def all_pictures(monkeypatch):
    monkeypatch.setenv("VARIBASED_RUN_PICTURES", "all")  # make test asks the other tests for "curve"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A VariBASeD run on a 3x3 GridNavi and an RL^2 run on a bandit, one iteration each."""
    base = tmp_path_factory.mktemp("runs")
    grid = make_gridworld(size=3, episode_length=4, num_episodes=2, excluded=1)
    bandit = make_bernoulli_bandit(num_arms=2, horizon=6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VARIBASED_RUN_PICTURES", "all")
        return (_tiny_run(base / "varibased-grid", "varibased", grid, TINY_EM),
                _tiny_run(base / "rl2-bandit", "rl2", bandit, TINY_RL2))


def test_run_pictures_can_be_limited_to_the_learning_curve(runs, tmp_path, monkeypatch):
    grid = make_gridworld(size=3, episode_length=4, num_episodes=2, excluded=1)
    run_dir = tmp_path / "copy"
    run_dir.mkdir()
    for name in ("metrics.csv", "evaluations.json"):
        (run_dir / name).write_bytes((runs[0] / name).read_bytes())
    monkeypatch.setenv("VARIBASED_RUN_PICTURES", "curve")
    assert [p.name for p in pictures.write_run_pictures(run_dir, grid, None, None, REFS)] == [
        pictures.CURVE_FILE]
    monkeypatch.setenv("VARIBASED_RUN_PICTURES", "none")
    assert pictures.write_run_pictures(run_dir, grid, None, None, REFS) == []


def test_every_run_directory_holds_the_three_pictures(runs):
    for run_dir in runs:
        for name in (pictures.CURVE_FILE, pictures.TRIAL_FILE, pictures.DIAGNOSTICS_FILE):
            _assert_picture(run_dir / name)
        assert not list(run_dir.glob("*.tmp.png"))


def test_diagnostics_show_the_logged_metrics(runs, tmp_path):
    rows = pictures.read_metrics(runs[0])
    logged = {"loss", "planner_ess", "resample_rate", "target_entropy", "value_estimate", "return"}
    assert logged <= set(rows[0])
    _assert_picture(pictures.plot_diagnostics(tmp_path / "d.png", rows, pictures.read_evaluations(runs[0])))
    with pytest.raises(ValueError, match="no metrics"):
        pictures.plot_diagnostics(tmp_path / "e.png", [])


def test_a_failing_picture_warns_and_never_raises(runs, tmp_path):
    grid = make_gridworld(size=3, episode_length=4, num_episodes=2, excluded=1)
    run_dir = tmp_path / "copy"
    run_dir.mkdir()
    for name in ("metrics.csv", "evaluations.json", "config.json"):
        (run_dir / name).write_bytes((runs[0] / name).read_bytes())
    with pytest.warns(RuntimeWarning, match="trial.png"):
        written = pictures.write_run_pictures(run_dir, grid, trainer=None, state=None, refs=REFS)
    assert [p.name for p in written] == [pictures.CURVE_FILE, pictures.DIAGNOSTICS_FILE]
    # At a checkpoint the pictures are throttled: the first checkpoint call only starts the clock.
    assert pictures.write_run_pictures(tmp_path / "other", grid, None, None, REFS, final=False) == []


def test_trial_kind():
    assert pictures.trial_kind(make_gridworld()) == "grid"
    assert pictures.trial_kind(make_function_optimization()) == "function"
    assert pictures.trial_kind(make_bernoulli_bandit()) == "generic"


def test_cli_plot_overlays_a_varibased_and_an_rl2_run(runs, tmp_path, capsys):
    out = tmp_path / "sub" / "compare.png"
    assert cli.main(["plot", *map(str, runs), "--out", str(out)]) == 0
    _assert_picture(out, min_width=1000)
    assert "2 runs" in capsys.readouterr().out


def test_cli_plot_rejects_a_directory_that_is_not_a_run(runs, tmp_path, capsys):
    assert cli.main(["plot", str(runs[0]), str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a run directory" in err
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"task": "t", "agent": "a", "agent_config": {}, "seed": 0,
                                                 "task_config": {}}))
    assert cli.main(["plot", str(empty), "--out", str(tmp_path / "y.png")]) == 2
    assert "no evaluations" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
