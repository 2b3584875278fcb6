"""A run directory nobody can corrupt (issue 19, shared/RUNDIR.md): one writer, honest resume,
checkpoints checked for what they hold, bounded budgets, every input refused before work.

One test per case, grouped by entry point. Training uses the tiny REINFORCE trainer of
``test_runner`` on the 3-box task; the command-line cases stop before any compilation.
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.inference.test_bad_input import (  # noqa: F401
    _COMPILE_BUDGET_S,
    _COMPILE_SECONDS,
    _fake_run,
    _no_compile_cache,
)
from tests.inference.test_checkpoint_compat import DATA
from varibased.inference import checkpoint, cli, em, rl2, runner
from varibased.inference.checkpoint import CheckpointError
from varibased.inference.rundir import RunLock, RunLog, run_identity
from varibased.models import registry, validation
from varibased.planning.config import PlannerConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _warm_up():
    """Import the built-in tasks once (their module-level set-up runs a few eager ops)."""
    registry.names()
    registry.make("bernoulli_bandit")


@pytest.fixture
def no_compilation():
    """Fails the test if the block spent more than the budget compiling (as test_bad_input)."""
    _COMPILE_SECONDS.clear()
    yield
    assert sum(_COMPILE_SECONDS) < _COMPILE_BUDGET_S, f"compiled for {sum(_COMPILE_SECONDS):.2f} s"
REFS = {"random": {"mean": 1.0, "se": 0.0}, "reference": {"mean": 2.0, "agent": "bayes_optimal"}}
STEPS = 96  # one iteration of the toy trainer


def _config(iterations=2, **kw):
    base = dict(task="boxes", agent="toy", num_env_steps=STEPS * iterations, seed=1, eval_every=STEPS,
                eval_trials=8, checkpoint_every=1)
    return runner.RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, toy):
    """A finished 2-iteration run (checkpoint at iteration 2), copied by each test that uses it."""
    task, trainer = toy
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    runner.train(run_dir, _config(), task, trainer, REFS, progress=False)
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def _files(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def _rewrite_meta(path, change):
    """Rewrite a checkpoint's JSON header with ``change(meta)`` (a crafted file)."""
    with np.load(path) as archive:
        arrays = dict(archive)
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    change(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


def _cli(argv, capsys):
    _COMPILE_SECONDS.clear()
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert sum(_COMPILE_SECONDS) < _COMPILE_BUDGET_S, f"compiled for {sum(_COMPILE_SECONDS):.2f} s"
    return code, err


def _train_cli(out, *extra):
    return ["train", "--task", "bernoulli_bandit", "--agent", "rl2", "--steps", "1000", "--out", out,
            "--quiet", *extra]


# --------------------------------------------------------------------------------------
# One writer: the lock
# --------------------------------------------------------------------------------------

_HELD_RUN = textwrap.dedent("""
    import os, sys, time
    from varibased.inference import runner
    from tests.inference.test_run_safety import REFS, _config
    from tests.inference.test_runner import _reinforce_trainer
    from tests.planning.test_reference_agents import _boxes_task

    real_fsync, calls = os.fsync, []
    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # in the middle of the 2nd checkpoint write
            print("writing", flush=True)
            time.sleep(120)
        real_fsync(fd)
    os.fsync = fsync
    task = _boxes_task()
    runner.train(sys.argv[1], _config(4), task, _reinforce_trainer(task), REFS, progress=False)
""")


def test_second_writer_exits_2_naming_the_holder_and_changes_nothing(tmp_path, toy, capsys):
    task, trainer = toy
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", _HELD_RUN, str(run_dir)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        assert first.stdout.readline().strip() == "writing"
        before = _files(run_dir)
        assert json.loads(before[".lock"])["pid"] == first.pid
        with pytest.raises(runner.RunError, match=f"locked by pid {first.pid} on {socket.gethostname()}"):
            runner.train(run_dir, _config(4), task, trainer, REFS, progress=False)
        with pytest.raises(runner.RunError, match=f"locked by pid {first.pid}"):
            runner.train(run_dir, _config(4), task, trainer, REFS, resume=True, progress=False)
        for extra in ([], ["--resume"]):  # the command line: exit 2, before any work
            code, err = _cli(_train_cli(run_dir, *extra), capsys)
            assert code == 2 and f"locked by pid {first.pid}" in err, err
        assert _files(run_dir) == before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, toy, capsys):
    task, trainer = toy
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}))
    runner.train(tmp_path / "run", _config(1), task, trainer, REFS, progress=False)
    assert f"taking over the stale lock of {tmp_path / 'run'}: pid {dead.pid}" in capsys.readouterr().err
    assert not (tmp_path / "run" / ".lock").exists()  # released at the end


@pytest.mark.parametrize("holder, message", [
    ({"pid": 1, "host": "another-host", "started": "t"}, "locked by pid 1 on another-host"),
    ("not json", "does not say by whom"),
])
def test_lock_of_another_host_or_unreadable_is_refused(tmp_path, holder, message, no_compilation):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text(holder if isinstance(holder, str) else json.dumps(holder))
    with pytest.raises(runner.RunError, match=message):
        RunLock(tmp_path / "run").acquire()
    with pytest.raises(runner.RunError, match=message):
        runner.check_run_dir(tmp_path / "run", _config(), resume=False)


# --------------------------------------------------------------------------------------
# Resume never rewrites history
# --------------------------------------------------------------------------------------

def test_resume_without_checkpoint_exits_2_and_changes_nothing(run_copy, toy, tmp_path, capsys):
    task, trainer = toy
    (run_copy / "checkpoint.npz").unlink()
    before = _files(run_copy)
    with pytest.raises(runner.RunError, match="checkpoint.npz does not exist"):
        runner.train(run_copy, _config(4), task, trainer, REFS, resume=True, progress=False)
    assert _files(run_copy) == before
    # the command line, on a run directory as `varibased train` writes it
    cli_run = tmp_path / "cli_run"
    _fake_run(cli_run)
    metrics = (cli_run / "metrics.csv").read_bytes()
    code, err = _cli(_train_cli(cli_run, "--resume"), capsys)
    assert code == 2 and "checkpoint.npz does not exist" in err
    assert (cli_run / "metrics.csv").read_bytes() == metrics


def test_entries_after_the_checkpoint_are_moved_aside_and_reported(tmp_path, toy, capsys):
    task, trainer = toy
    run_dir = tmp_path / "run"
    runner.train(run_dir, _config(2), task, trainer, REFS, progress=False)
    at_two = (run_dir / "checkpoint.npz").read_bytes()
    runner.train(run_dir, _config(4), task, trainer, REFS, resume=True, progress=False)
    rows_before = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    evaluations_before = json.loads((run_dir / "evaluations.json").read_text())
    # a crash after iteration 4's rows, before its checkpoint
    (run_dir / "checkpoint.npz").write_bytes(at_two)
    capsys.readouterr()
    runner.train(run_dir, _config(4), task, trainer, REFS, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "2 metrics row(s) and 2 evaluation(s) logged after it were moved to" in err
    moved_rows = list(run_dir.glob("metrics.after-crash-*.csv"))
    moved_evaluations = list(run_dir.glob("evaluations.after-crash-*.json"))
    assert len(moved_rows) == len(moved_evaluations) == 1
    assert moved_rows[0].read_text().splitlines(keepends=True) == rows_before[:1] + rows_before[3:]
    assert json.loads(moved_evaluations[0].read_text()) == evaluations_before[3:]
    # the rows before the checkpoint are kept byte for byte; the run then continues
    assert (run_dir / "metrics.csv").read_text().splitlines(keepends=True)[:3] == rows_before[:3]
    assert [e["env_steps"] for e in json.loads((run_dir / "evaluations.json").read_text())] == \
        [0, 96, 192, 288, 384]


@pytest.mark.parametrize("damage, file, message", [
    (lambda t: t[: t.index("\n", t.index("\n") + 1) + 9], "metrics.csv", r"metrics.csv line 3 is cut short"),
    (lambda t: t[:15], "metrics.csv", r"metrics.csv line 1 is cut short"),
    (lambda t: t.replace("\n2,", "\n2,,", 1), "metrics.csv", r"metrics.csv line 3 has"),
    (lambda t: t.replace("\n2,", "\nx,", 1), "metrics.csv", r"metrics.csv line 3: iteration 'x'"),
    (lambda t: t[: len(t) // 2], "evaluations.json", r"evaluations.json line 1 does not parse"),
    (lambda t: '{"a": 1}', "evaluations.json", "is not a list of evaluations"),
])
def test_damaged_log_is_refused_naming_file_and_line(run_copy, toy, damage, file, message):
    task, trainer = toy
    path = run_copy / file
    path.write_text(damage(path.read_text()))
    before = _files(run_copy)
    with pytest.raises(runner.RunError, match=message):
        runner.train(run_copy, _config(4), task, trainer, REFS, resume=True, progress=False)
    assert _files(run_copy) == before


def test_config_json_is_never_rewritten_on_resume(run_copy, toy):
    task, trainer = toy
    saved = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**saved, "note": "kept"}, indent=1))
    before = (run_copy / "config.json").read_bytes()
    runner.train(run_copy, _config(3), task, trainer, REFS, resume=True, progress=False)
    assert (run_copy / "config.json").read_bytes() == before


# --------------------------------------------------------------------------------------
# The run's identity
# --------------------------------------------------------------------------------------

def test_identity_in_config_and_checkpoint(finished_run):
    saved = json.loads((finished_run / "config.json").read_text())
    fields = {k: saved[k] for k in ("format", "task", "task_config", "agent", "agent_config", "seed")}
    expected = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert saved["format"] == 2 and saved["identity"] == expected == run_identity(saved)
    assert checkpoint.read_metadata(finished_run / "checkpoint.npz")["identity"] == expected


def test_swapped_checkpoint_of_another_seed_is_refused(run_copy, toy, tmp_path):
    task, trainer = toy
    runner.train(tmp_path / "other", _config(seed=2), task, trainer, REFS, progress=False)
    shutil.copy(tmp_path / "other" / "checkpoint.npz", run_copy / "checkpoint.npz")
    before = _files(run_copy)
    with pytest.raises(CheckpointError, match="belongs to another run .*another seed or config"):
        runner.train(run_copy, _config(4), task, trainer, REFS, resume=True, progress=False)
    with pytest.raises(runner.RunError, match="cannot resume: .* belongs to another run"):  # run(), the CLI
        runner.check_run_dir(run_copy, _config(4), resume=True)
    assert _files(run_copy) == before


def test_checkpoint_without_identity_refused_in_a_run_with_one(run_copy, toy):
    task, trainer = toy
    _rewrite_meta(run_copy / "checkpoint.npz", lambda m: m["metadata"].pop("identity"))
    with pytest.raises(CheckpointError, match="carries no run identity"):
        runner.train(run_copy, _config(4), task, trainer, REFS, resume=True, progress=False)


def test_evaluate_refuses_a_swapped_checkpoint(tmp_path, capsys):
    """A v1 run (no identity): a checkpoint that carries another identity is refused."""
    shutil.copytree(DATA / "v1_runs" / "rl2", tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoint.npz"
    _rewrite_meta(ckpt, lambda m: m["metadata"].update(identity="0" * 64))
    with pytest.raises(CheckpointError, match="belongs to another run"):
        runner.evaluate_run(tmp_path / "run", trials=4, reference_trials=20)
    code, err = _cli(["evaluate", tmp_path / "run", "--trials", "4"], capsys)
    assert code == 2 and "belongs to another run" in err


# --------------------------------------------------------------------------------------
# Checkpoint checks on load, and save
# --------------------------------------------------------------------------------------

def _template():
    return {"w": jnp.zeros((2, 3)), "step": jnp.int32(0), "rng_key": jax.random.key(0)}


def _huge_header(path):
    """leaf_00000 (``w``) with a crafted .npy header of shape (10**12,) and no data."""
    with np.load(path) as archive:
        arrays = dict(archive)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**12,)})
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            data = header.getvalue() if name == "leaf_00002" else buffer.getvalue()
            archive.writestr(f"{name}.npy", data)


@pytest.mark.parametrize("craft, message", [
    (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    (lambda p: _rewrite_meta(p, lambda m: m.update(prng_keys=[])), "PRNG-key arrays"),
    (lambda p: _rewrite_meta(p, lambda m: m.pop("treedef")), "'treedef' is missing"),
    (lambda p: _rewrite_meta(p, lambda m: m.update(prng_keys="0")), "'prng_keys' is not a list"),
    (lambda p: _rewrite_meta(p, lambda m: m.update(leaves=[[3, "f4"]])), "'leaves' is not a list"),
    (lambda p: _rewrite_meta(p, lambda m: m.update(metadata=[])), "'metadata' is not a JSON object"),
    (lambda p: _rewrite_meta(p, lambda m: m.clear()), "format None"),
    (_huge_header, r"array 2 has shape \(1000000000000,\)"),
])
def test_malformed_checkpoint_is_a_checkpoint_error(tmp_path, craft, message):
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, _template(), {"iteration": 1})
    craft(path)
    with pytest.raises(CheckpointError, match=message) as error:
        checkpoint.load(path, _template())
    assert str(path) in str(error.value)


def test_string_iteration_in_metadata_is_refused_on_resume(run_copy, toy):
    task, trainer = toy
    _rewrite_meta(run_copy / "checkpoint.npz", lambda m: m["metadata"].update(iteration="2"))
    before = _files(run_copy)
    with pytest.raises(CheckpointError, match="non-negative int iteration"):
        runner.train(run_copy, _config(4), task, trainer, REFS, resume=True, progress=False)
    assert _files(run_copy) == before


def test_nan_checkpoint_is_refused(run_copy, toy):
    task, trainer = toy
    path = run_copy / "checkpoint.npz"
    state, meta = checkpoint.load(path, trainer.init(jax.random.key(0)))
    checkpoint.save(path, state._replace(logits=jnp.full_like(state.logits, jnp.nan)), meta)
    with pytest.raises(CheckpointError, match=r"array 0 \(.logits\) holds non-finite values"):
        checkpoint.load(path, trainer.init(jax.random.key(0)))
    with pytest.raises(CheckpointError, match="non-finite"):
        runner.train(run_copy, _config(4), task, trainer, REFS, resume=True, progress=False)


def test_save_refuses_object_leaves_and_writes_nothing(tmp_path):
    with pytest.raises(CheckpointError, match="leaf \\['o'\\] of dtype object"):
        checkpoint.save(tmp_path / "c.npz", {"o": np.array([None, 1], dtype=object), "w": jnp.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_has_the_mode_of_the_other_files(tmp_path):
    old = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "c.npz", _template())
        (tmp_path / "other").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == (tmp_path / "other").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------------------
# Valid JSON only
# --------------------------------------------------------------------------------------

def _strict_json(text):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))


def test_evaluations_json_writes_null_not_nan(tmp_path):
    log = RunLog(tmp_path, None, None)
    log.add_evaluation({"env_steps": 0, "se": float("nan"), "returns": [1.0, float("inf")]})
    assert _strict_json((tmp_path / "evaluations.json").read_text()) == [
        {"env_steps": 0, "se": None, "returns": [1.0, None]}]


def test_one_eval_trial_is_refused(no_compilation):
    with pytest.raises(ValueError, match="eval_trials must be >= 2"):
        _config(eval_trials=1)


# --------------------------------------------------------------------------------------
# Budgets bounded before any work
# --------------------------------------------------------------------------------------

def test_memory_estimate_and_limit(monkeypatch, no_compilation):
    config = PlannerConfig(num_particles=1000, num_nested=10)
    assert config.memory_bytes(num_envs=100, node_bytes=1000) == 100 * 1000 * 10 * 1000
    assert config.memory_bytes(100, 1000) == config.replace(depth=1000).memory_bytes(100, 1000)  # a scan
    with pytest.raises(ValueError, match=r"needs about 0.931 GiB \(1000000000 bytes\), above the limit"):
        config.check_memory(100, 1000, limit=10**8)
    monkeypatch.setenv("VARIBASED_MEMORY_LIMIT", "1e8")
    assert validation.memory_limit() == 10**8
    with pytest.raises(ValueError, match="above the limit"):
        config.check_memory(100, 1000)
    monkeypatch.delenv("VARIBASED_MEMORY_LIMIT")
    pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert validation.memory_limit() == pages // 2


def test_oversized_config_is_refused_when_built(no_compilation):
    with pytest.raises(ValueError, match=r"planning with K=1000000000 .* needs about"):
        em.EMConfig.for_task("gridworld", num_particles=10**9)
    with pytest.raises(ValueError, match=r"num_particles must be an int in \[1, 2147483647\]"):
        PlannerConfig(num_particles=2**31)


@pytest.fixture
def v1_varibased(tmp_path):
    shutil.copytree(DATA / "v1_runs" / "varibased", tmp_path / "run")
    return tmp_path / "run"


def test_evaluate_huge_particles_refused_before_compilation(v1_varibased, capsys, monkeypatch):
    monkeypatch.setenv("VARIBASED_MEMORY_LIMIT", str(8 * 2**30))
    code, err = _cli(["evaluate", v1_varibased, "--particles", "1000000"], capsys)
    assert code == 2 and err.startswith("error: ")
    assert "planning with K=1000000 x K_omega=1 over 512 environments needs about" in err


def test_depth_beyond_the_trial_refused_before_compilation(v1_varibased, capsys):
    code, err = _cli(["evaluate", v1_varibased, "--depth", "1000000"], capsys)
    assert code == 2 and "planner.depth (1000000) exceeds the task's trial length (20)" in err


# --------------------------------------------------------------------------------------
# The command line: every input checked before the first expensive step
# --------------------------------------------------------------------------------------

CLI_CASES = [
    (_train_cli("{tmp}/run", "--seed", str(2**64)), r"--seed must be an int in \[0, 2\*\*32\)"),
    (["evaluate", "{tmp}/run", "--seed", str(2**32)], r"--seed must be an int in \[0, 2\*\*32\)"),
    (["references", "--task", "gridworld", "--seed", "-1", "--out", "{tmp}/refs"], "--seed must be"),
    (_train_cli("{tmp}/run", "--reference-trials", "1"), "--reference-trials must be an int in \\[2,"),
    (_train_cli("{tmp}/run", "--reference-trials", "0"), "--reference-trials must be an int in \\[2,"),
    (_train_cli("{tmp}/run", "--eval-trials", "1"), "--eval-trials must be an int in \\[2,"),
    (_train_cli("{tmp}/a_file/run"), "a_file is not a directory"),
    (_train_cli("{tmp}/dangling"), "dangling symlink"),
    (["references", "--task", "gridworld", "--out", "{tmp}/a_file"], "is a file, not a directory"),
    (["evaluate", "{tmp}/run", "--json", "{tmp}"], "is a directory, not a file"),
    (["evaluate", "{tmp}/run", "--json", "{tmp}/a_file/out.json"], "a_file is not a directory"),
]


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[" ".join(a[:2] + a[-2:]) for a, _ in CLI_CASES])
def test_cli_refuses_before_work(argv, message, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = _cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("value, ok", [("1e5", True), ("100_000", True), ("lots", False), ("1.5", False)])
def test_environment_variables_are_parsed(value, ok, monkeypatch, capsys):
    monkeypatch.setenv("VARIBASED_DEMO_STEPS", value)
    code, err = _cli(["references", "--task", "nope"], capsys)
    assert code == 2
    if ok:
        assert "unknown task 'nope'" in err
        assert validation.parse_count("VARIBASED_DEMO_STEPS", value) == 100_000
    else:
        assert "environment variable VARIBASED_DEMO_STEPS must be a whole number" in err


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(task="nope"), "config.json: unknown task 'nope'"),
    (lambda c: c.update(task_config={"colour": "red"}), "json: task 'bernoulli_bandit': bad arguments"),
    (lambda c: c.update(task_config=[1]), "task_config must be a JSON object"),
    (lambda c: c.pop("seed"), "config.json: seed is missing"),
    (lambda c: c.update(agent_config=[1]), "agent_config must be a JSON object"),
    (lambda c: c.update(agent=5), "agent must be a non-empty string"),
])
def test_evaluate_refuses_a_bad_config_json(tmp_path, change, message, capsys):
    shutil.copytree(DATA / "v1_runs" / "rl2", tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    change(saved)
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    code, err = _cli(["evaluate", tmp_path / "run", "--trials", "4"], capsys)
    assert code == 2 and err.startswith("error: ") and message in err, err


def test_sigint_keeps_the_last_iteration_and_says_how_to_resume(tmp_path, toy, monkeypatch):
    task, trainer = toy
    add_row = RunLog.add_row

    def add_row_then_interrupt(self, row):
        add_row(self, row)
        if row["iteration"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RunLog, "add_row", add_row_then_interrupt)
    run_dir = tmp_path / "run"
    with pytest.raises(runner.TrainingInterrupted, match=f"iteration 2 .* --resume --out {run_dir}"):
        runner.train(run_dir, _config(4), task, trainer, REFS, progress=False)
    assert checkpoint.read_metadata(run_dir / "checkpoint.npz")["iteration"] == 2
    with (run_dir / "metrics.csv").open() as handle:
        assert [r["iteration"] for r in csv.DictReader(handle)] == ["1", "2"]
    assert not (run_dir / ".lock").exists()
    monkeypatch.setattr(RunLog, "add_row", add_row)
    summary = runner.train(run_dir, _config(4), task, trainer, REFS, resume=True, progress=False)
    assert summary["iterations"] == 4


def test_cli_interrupt_exits_130_without_traceback(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise runner.TrainingInterrupted("interrupted: the checkpoint of iteration 2 is saved; continue "
                                         "with the same command and --resume")

    monkeypatch.setattr(runner, "run", interrupted)
    code, err = _cli(_train_cli(tmp_path / "run"), capsys)
    assert code == 130 and "--resume" in err and "Traceback" not in err
    monkeypatch.setattr(runner, "run", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    code, err = _cli(_train_cli(tmp_path / "run"), capsys)
    assert code == 130 and err.startswith("interrupted")


# --------------------------------------------------------------------------------------
# The library API
# --------------------------------------------------------------------------------------

API_CASES = [
    (lambda: runner.RunConfig(task=None, agent=5, num_env_steps=10), "RunConfig.task must be a non-empty"),
    (lambda: _config(agent_config=[1]), "RunConfig.agent_config must be a dict"),
    (lambda: _config(eval_every=True), "eval_every must be an int"),
    (lambda: _config(seed=True), "seed must be an int"),
    (lambda: _config(agent_config={"f": object()}), "which JSON cannot store"),
    (lambda: _config(task_config={"x": float("nan")}), "non-finite number"),
    (lambda: em.EMConfig(policy_weight=True), "policy_weight must be a finite number"),
    (lambda: em.EMConfig(value_lambda=True), "value_lambda must be a finite number"),
    (lambda: rl2.RL2Config(num_epochs=True), "num_epochs"),
]


@pytest.mark.parametrize("make, message", API_CASES, ids=[m for _, m in API_CASES])
def test_api_refuses(make, message, no_compilation):
    with pytest.raises(ValueError, match=message):
        make()


def test_numpy_integers_are_accepted_and_serialized(no_compilation):
    config = em.EMConfig(num_envs=np.int64(32), svi_updates=np.int32(3))
    assert type(config.num_envs) is int and config == em.EMConfig(num_envs=32, svi_updates=3)
    run_config = _config(seed=np.int64(3), agent_config={**dataclasses.asdict(config), "extra": np.int64(4)},
                         task_config={"n": np.int32(2), "p": np.float32(0.5)})
    saved = json.loads(json.dumps(run_config.to_saved_json()))
    assert saved["seed"] == 3 and saved["agent_config"]["extra"] == 4 and saved["task_config"]["n"] == 2
