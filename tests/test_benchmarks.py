"""The benchmark scripts' bookkeeping (no training here: figures live in benchmarks/)."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import belief_accuracy  # noqa: E402
import efficiency  # noqa: E402
import merge_runs  # noqa: E402
import tuning  # noqa: E402


def _fake_run(path: pathlib.Path, seed: int, scores: list[float], agent: str = "varibased") -> None:
    path.mkdir(parents=True)
    path.joinpath("config.json").write_text(json.dumps({
        "task": "gridworld", "agent": agent, "seed": seed, "num_env_steps": 300,
        "eval_trials": 2, "agent_config": {"num_envs": 1}}))
    evaluations = [{"env_steps": 100 * i, "wall_seconds": 10.0 * i, "wall_seconds_with_compile": 10.0 * i + 5,
                    "normalized_score": s, "normalized_score_se": 0.01, "returns": [s, s]}
                   for i, s in enumerate(scores)]
    path.joinpath("evaluations.json").write_text(json.dumps(evaluations))


def test_merge_runs_cuts_to_common_evaluations_and_finds_levels(tmp_path):
    _fake_run(tmp_path / "a", 0, [0.0, 0.6, 0.8, 0.95])
    _fake_run(tmp_path / "b", 1, [0.0, 0.4, 1.0])  # stopped one evaluation earlier
    result = merge_runs.merge([tmp_path / "a", tmp_path / "b"])
    assert result["seeds"] == 2 and result["seed_values"] == [0, 1]
    assert result["curve"]["env_steps"] == [0, 100, 200]
    assert result["curve"]["normalized_score_mean"] == pytest.approx([0.0, 0.5, 0.9])
    assert result["steps_to"] == {"0.5": 100, "0.8": 200, "0.9": 200, "0.95": None}
    assert result["seconds_to"]["0.5"] == pytest.approx(10.0)
    assert result["env_steps"] == 200
    assert result["env_steps_per_s"] == pytest.approx(400 / 40.0)
    assert result["final_normalized_score"]["mean"] == pytest.approx(0.9)


def test_merge_runs_refuses_mixed_agents_and_missing_files(tmp_path):
    _fake_run(tmp_path / "a", 0, [0.0, 0.5])
    _fake_run(tmp_path / "b", 0, [0.0, 0.5], agent="rl2")
    with pytest.raises(SystemExit, match="mix tasks/agents"):
        merge_runs.merge([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "c").mkdir()
    with pytest.raises(SystemExit, match="not a run directory"):
        merge_runs.merge([tmp_path / "c"])


@pytest.mark.parametrize("budget", ["gridworld.ppo=100", "maze.rl2=100", "gridworld.rl2=-5",
                                    "gridworld.rl2"])
def test_efficiency_rejects_a_bad_budget(budget, tmp_path, capsys):
    with pytest.raises(SystemExit):
        efficiency.main(["--out", str(tmp_path / "e.json"), "--budget", budget])
    assert "--budget" in capsys.readouterr().err


def test_efficiency_rejects_a_bad_grid_and_sweep_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        efficiency.main(["--out", str(tmp_path / "e.json"), "--per-decade", "0"])
    assert "--per-decade" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        efficiency.main(["--out", str(tmp_path / "e.json"), "--sweep-runs", str(tmp_path)])
    assert "not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_efficiency_rejects_too_few_sweep_trials(tmp_path, capsys):
    with pytest.raises(SystemExit):
        efficiency.main(["--out", str(tmp_path / "e.json"), "--sweep-trials", "1"])
    assert "--sweep-trials" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--set-fo", "guide='full'"], "--set-fo: BeliefConfig.guide"),
    (["--set", "latent=3"], "--set 'latent=3': expected KEY=VALUE"),
    (["--set", "kl_weight=-1"], "--set: BeliefConfig.kl_weight"),
    (["--tasks", "gridworld,maze"], "unknown task"),
])
def test_belief_accuracy_refuses_bad_options_before_any_run(tmp_path, argv, message):
    out = tmp_path / "belief.json"
    with pytest.raises(SystemExit, match=message):
        belief_accuracy.main(["--out", str(out), *argv])
    assert not out.exists()


def test_planning_step_smoke_writes_scores_and_refuses_bad_options(tmp_path, capsys):
    import planning_step

    out = tmp_path / "ps.json"
    result = planning_step.main(["--out", str(out), "--particles", "2", "--variants", "baseline,stratified",
                                 "--per-goal", "2"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result)) and set(saved["scores"]) == {"baseline", "stratified"}
    assert saved["settings"]["trials"] == 42 and out.with_suffix(".png").stat().st_size > 1000
    for entry in (saved["scores"][v]["2"] for v in saved["scores"]):
        assert -0.5 < entry["score"] < 1.2 and entry["se"] > 0
    with pytest.raises(SystemExit) as exit_info:
        planning_step.main(["--out", str(tmp_path / "x.json"), "--variants", "magic"])
    assert exit_info.value.code == 2 and "unknown variants ['magic']" in capsys.readouterr().err


def _fake_point(directory: pathlib.Path, name: str, seed: int, scores: list[float]) -> None:
    directory.mkdir(exist_ok=True)
    curve = {"env_steps": [0, 100, 200][:len(scores)], "normalized_score_mean": scores}
    directory.joinpath(f"{name}-s{seed}.json").write_text(json.dumps({"curve": curve}))


def test_tuning_summarizes_finished_points_over_seeds(tmp_path, capsys):
    _fake_point(tmp_path, "baseline", 0, [0.0, 0.6, 0.9])
    _fake_point(tmp_path, "baseline", 1, [0.0, 0.4, 1.0])
    _fake_point(tmp_path, "lr1e-3", 0, [0.0, 0.95])
    rows = tuning.summarize("rl2", tmp_path, list(tuning.POINTS["rl2"]))
    assert [r["name"] for r in rows] == ["baseline", "lr1e-3"]
    base = rows[0]
    assert base["num_seeds"] == 2 and base["seeds"] == [0, 1]
    assert base["final_normalized_score"]["mean"] == pytest.approx(0.95)
    assert base["final_normalized_score"]["se"] == pytest.approx(0.05)
    assert base["steps_to"] == {"0.5": 100, "0.8": 200, "0.9": 200}
    assert rows[1]["final_normalized_score"]["se"] is None and rows[1]["steps_to"]["0.9"] == 100
    with pytest.raises(SystemExit):
        tuning.main(["--agent", "rl2", "--point", "nope", "--dir", str(tmp_path),
                     "--out", str(tmp_path / "t.json")])
    assert "unknown for rl2" in capsys.readouterr().err


def test_tuning_gives_both_agents_the_same_number_of_points():
    assert len(tuning.POINTS["varibased"]) == len(tuning.POINTS["rl2"])
    assert all(points["baseline"] == {} for points in tuning.POINTS.values())


def test_throughput_smoke_writes_the_interface_keys(tmp_path):
    import throughput

    out = tmp_path / "throughput.json"
    result = throughput.main(["--out", str(out), "--smoke"])
    saved = json.loads(out.read_text())
    assert saved["smoke"] and set(saved) >= {"planner", "rl2_us_per_step", "svi_update_s", "em_split",
                                             "varibased_env_steps_per_s", "rl2_env_steps_per_s", "configs"}
    assert [row["K"] for row in saved["planner"]] == [4, 8]
    for row in saved["planner"]:
        assert {"K", "K_omega", "D", "num_envs", "particle_steps_per_s", "evals_per_s", "bare_s5_steps_per_s",
                "us_per_real_step", "compile_seconds", "config"} <= set(row)
        assert row["evals_per_s"] == pytest.approx(row["particle_steps_per_s"] * row["K_omega"])
    assert set(saved["svi_update_s"]) == {"full", "subsampled"} and set(saved["em_split"]) == {"acting_s",
                                                                                                "learning_s"}
    assert set(saved["svi"]["parts"]) == {"encoder", "decoder", "heads"}
    assert saved["configs"]["varibased_subsampled"]["belief"]["elbo_steps"] == 3
    assert saved["configs"]["varibased"]["belief"]["elbo_steps"] == 0 and "rl2" in saved["configs"]
    assert all(v > 0 for v in (saved["rl2_us_per_step"], saved["varibased_env_steps_per_s"],
                               *saved["svi_update_s"].values(), *saved["em_split"].values()))
    assert result["ratios"]["varibased_over_rl2_env_steps"] > 0
