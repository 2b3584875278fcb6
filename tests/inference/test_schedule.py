"""The run's schedule (schedule.json), the references cache on disk, the persistent
compilation cache switch and line-based progress (issue 17)."""

import dataclasses
import importlib
import io
import json
import shutil

import jax
import pytest

from tests.inference.test_run_safety import REFS, STEPS, _config
from tests.planning.test_reference_agents import _boxes_task
from varibased.inference import cli, phases, runner, schedule
from varibased.models import registry
from varibased.planning import reference_cache
from varibased.planning import references as references_module


def _evaluations(run_dir):
    return json.loads((run_dir / "evaluations.json").read_text())


# ---------------------------------------------------------------------------------------
# The grid and the default cadence
# ---------------------------------------------------------------------------------------

def test_log_grid():
    grid = schedule.log_grid(10_000, 1_000_000, 8)
    assert grid[0] == 10_000 and grid[-1] == 1_000_000 and len(grid) == 17
    assert grid == sorted(set(grid)) and all(isinstance(p, int) for p in grid)
    assert schedule.log_grid(10_000, 25_000, 8)[-1] == 25_000  # stop included off the grid
    assert schedule.log_grid(5, 5, 3) == [5]
    assert schedule.log_grid(1, 10, 20) == list(range(1, 11))  # unique ints when points collide
    for bad in [(0, 10, 3), (10, 5, 3), (1, 10, 0), (1.5, 10, 3)]:
        with pytest.raises(ValueError, match="log_grid"):
            schedule.log_grid(*bad)


def test_default_cadence_is_bounded_and_at_least_one_iteration():
    # The case: 20,000 steps of 1,920-step iterations evaluated every iteration before.
    points = schedule.default_eval_at(20_000, 1920)
    assert points[0] == 0 and all(b - a >= 1920 for a, b in zip(points, points[1:], strict=False))
    assert len(points) <= 11 and all(p % 1920 == 0 and p < 20_000 for p in points)
    assert len(schedule.default_eval_at(10**7, 1000)) == 10
    assert schedule.default_eval_at(100, 1000) == [0]
    assert schedule.eval_at_from_every(0, 1000, 96) == []
    assert schedule.eval_at_from_every(10, 100, 96) == [0, 10]  # one point per iteration


def test_resolve_keeps_the_saved_schedule_except_what_is_given():
    new = schedule.resolve(None, {"num_env_steps": 300_000}, 1920)
    assert new["eval_at"] == schedule.default_eval_at(300_000, 1920) and new["eval_trials"] == 512
    resumed = schedule.resolve(new, {"num_env_steps": 600_000, "eval_trials": None}, 1920)
    assert resumed == {**new, "num_env_steps": 600_000}  # the derived points are kept
    every = schedule.resolve(new, {"eval_every": 100_000}, 1920)
    assert every["eval_at"] == [0, 100_000, 200_000] and every["num_env_steps"] == 300_000
    history = schedule.with_history(schedule.with_history(None, new), resumed)["history"]
    assert len(history) == 2 and history[1]["set"] == {"num_env_steps": 600_000} and "time" in history[1]


# ---------------------------------------------------------------------------------------
# Training with a schedule (the toy trainer of test_runner: 96 env steps per iteration)
# ---------------------------------------------------------------------------------------

def test_eval_at_records_the_requested_point_and_the_env_steps(tmp_path, toy):
    task, trainer = toy
    config = _config(iterations=6, eval_at=(0, 50, 100, 150, 500))
    runner.train(tmp_path / "run", config, task, trainer, REFS, progress=False)
    got = [(e["eval_at"], e["env_steps"], e["eval_points"]) for e in _evaluations(tmp_path / "run")]
    assert got == [(0, 0, [0]), (50, 96, [50]), (100, 192, [100, 150]), (500, 576, [500, 576])]
    saved = json.loads((tmp_path / "run" / "schedule.json").read_text())
    assert saved["eval_at"] == [0, 50, 100, 150, 500] and saved["num_env_steps"] == 576
    assert len(saved["history"]) == 1 and "time" in saved["history"][0]
    assert (tmp_path / "run" / "references.json").exists()


def test_resume_extends_steps_and_a_finished_run_does_nothing(tmp_path, toy, capsys):
    task, trainer = toy
    run_dir = tmp_path / "run"
    runner.train(run_dir, _config(iterations=2), task, trainer, REFS, progress=False)
    # The same schedule, finished: nothing to do, said once, no duplicate final evaluation.
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    capsys.readouterr()
    summary = runner.train(run_dir, _config(iterations=2), task, trainer, REFS, resume=True, progress=False)
    assert summary["nothing_to_do"] and "nothing to do" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    # A larger budget continues, recorded in the schedule's history.
    summary = runner.train(run_dir, _config(iterations=4), task, trainer, REFS, resume=True, progress=False)
    assert summary["env_steps"] == 4 * STEPS and "nothing_to_do" not in summary
    assert [e["env_steps"] for e in _evaluations(run_dir)] == [0, 96, 192, 288, 384]
    history = json.loads((run_dir / "schedule.json").read_text())["history"]
    assert history[-1]["set"] == {"num_env_steps": 4 * STEPS, "eval_at": [0, 96, 192, 288]}


def test_a_run_without_schedule_json_gets_one_derived_from_its_config(tmp_path, toy):
    task, trainer = toy
    run_dir = tmp_path / "run"
    runner.train(run_dir, _config(iterations=2), task, trainer, REFS, progress=False)
    (run_dir / "schedule.json").unlink()  # as written before schedule.json existed
    runner.train(run_dir, _config(iterations=3), task, trainer, REFS, resume=True, progress=False)
    history = json.loads((run_dir / "schedule.json").read_text())["history"]
    assert history[0]["note"] == "derived from config.json"
    assert history[0]["set"]["num_env_steps"] == 2 * STEPS
    assert history[1]["set"]["num_env_steps"] == 3 * STEPS


def test_progress_without_a_terminal_is_line_based(tmp_path, toy, capsys):
    task, trainer = toy
    runner.train(tmp_path / "run", _config(iterations=3), task, trainer, REFS, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "compiling toy on boxes…" in err
    assert "toy on boxes: 3/3 it (100%" in err
    out = io.StringIO()
    bar = phases.LineProgress(100, desc="x", file=out)
    for _ in range(100):
        bar.update(1)
    bar.close()
    assert "\r" not in out.getvalue() and len(out.getvalue().splitlines()) == 10


def test_compile_cache_switch(monkeypatch, tmp_path):
    monkeypatch.setenv(reference_cache.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(phases.NO_COMPILE_CACHE_ENV, raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert phases.compile_cache_wanted() and not phases.compile_cache_wanted(flag_off=True)
    try:
        assert phases.set_compile_cache(True) == tmp_path / "jax"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
        monkeypatch.setenv(phases.NO_COMPILE_CACHE_ENV, "1")
        assert not phases.compile_cache_wanted()
    finally:
        assert phases.set_compile_cache(False) is None
    assert not jax.config.jax_enable_compilation_cache
    assert cli.build_parser().parse_args(["evaluate", "x", "--no-compile-cache"]).no_compile_cache


# ---------------------------------------------------------------------------------------
# References cached on disk
# ---------------------------------------------------------------------------------------

def make_cached_boxes():
    """The 3-box task under its own id (a custom task, registered from this module)."""
    return dataclasses.replace(_boxes_task(), name="cached_boxes")


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv(reference_cache.CACHE_ENV, str(tmp_path / "cache"))
    registry.register("cached_boxes", make_cached_boxes, overwrite=True)
    references_module._MEMORY.clear()
    yield tmp_path / "cache" / "references"
    registry.unregister("cached_boxes")
    references_module._MEMORY.clear()


def test_references_cache_hit_miss_and_corrupt(cache, capsys, monkeypatch):
    calls = []

    def fake_compute(task, *, num_trials, seed):  # the cache is under test, not the values
        calls.append((task.name, num_trials, seed))
        return {**REFS, "num_trials": num_trials, "seed": seed}

    monkeypatch.setattr(references_module, "compute_references", fake_compute)
    first = references_module.references("cached_boxes", num_trials=20, announce=True)
    assert "computing references for cached_boxes" in capsys.readouterr().err and len(calls) == 1
    files = list(cache.glob("cached_boxes-*.json"))
    assert len(files) == 1
    references_module._MEMORY.clear()
    second = references_module.references("cached_boxes", num_trials=20, announce=True)
    assert "references for cached_boxes: cached" in capsys.readouterr().err and second == first
    assert len(calls) == 1
    references_module.references("cached_boxes", num_trials=21)  # another key: another file
    assert len(list(cache.glob("cached_boxes-*.json"))) == 2 and len(calls) == 2
    files[0].write_text("{not json")
    references_module._MEMORY.clear()
    third = references_module.references("cached_boxes", num_trials=20, announce=True)
    err = capsys.readouterr().err
    assert "corrupt" in err and "recomputing" in err and "computing references" in err and len(calls) == 3
    assert third == first and json.loads(files[0].read_text())["references"] == first


def test_references_cache_key_follows_the_task_source(cache, tmp_path, monkeypatch):
    module = tmp_path / "boxes_mod.py"
    module.write_text("from tests.inference.test_schedule import make_cached_boxes\n\n"
                      "def factory():\n    return make_cached_boxes()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("boxes_mod")
    key = reference_cache.cache_key("cached_boxes", mod.factory, {}, 20, 0)
    module.write_text(module.read_text() + "# edited\n")
    assert reference_cache.cache_key("cached_boxes", mod.factory, {}, 20, 0) != key
    assert reference_cache.cache_key("cached_boxes", mod.factory, {}, 20, 1) != \
        reference_cache.cache_key("cached_boxes", mod.factory, {}, 20, 0)
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)
