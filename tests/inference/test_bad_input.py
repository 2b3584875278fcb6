"""Validation at the boundary: every bad input gets a clear message naming the problem,
before anything is compiled.

"Before compilation" is measured: each case runs with a listener on JAX's backend
compilation events, and may spend at most ``_COMPILE_BUDGET_S`` in XLA compilation (eager
one-primitive ops in task constructors compile in milliseconds; a training iteration or a
reference evaluation takes seconds).
"""

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from tests.planning.test_reference_agents import _boxes_task
from varibased.inference import agents, checkpoint, cli, em, rl2, runner
from varibased.inference.checkpoint import CheckpointError
from varibased.models import registry
from varibased.models.belief import BeliefConfig
from varibased.models.task import Task, TaskError
from varibased.planning.config import PlannerConfig
from varibased.planning.model import exact_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
_COMPILE_BUDGET_S = 0.5
_COMPILE_SECONDS: list[float] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: _COMPILE_SECONDS.append(seconds)
    if event == "/jax/core/compile/backend_compile_duration" else None
)


@pytest.fixture(autouse=True)
def _no_compile_cache(monkeypatch):
    """A warm persistent compilation cache hides compilation: these cases measure it off."""
    from varibased.inference import phases

    monkeypatch.setenv(phases.NO_COMPILE_CACHE_ENV, "1")
    phases.set_compile_cache(False)


@pytest.fixture(scope="module", autouse=True)
def _warm_up():
    """Import the built-in tasks once (their module-level set-up runs a few eager ops), so
    that each case measures only its own work."""
    registry.names()
    Task(**_fields())


@pytest.fixture
def no_compilation():
    """Fails the test if the block spent more than the budget compiling."""
    _COMPILE_SECONDS.clear()
    yield
    assert sum(_COMPILE_SECONDS) < _COMPILE_BUDGET_S, (
        f"{len(_COMPILE_SECONDS)} compilations took {sum(_COMPILE_SECONDS):.2f} s before the error")


# --------------------------------------------------------------------------------------
# Tasks: registry constructors and a user-defined task
# --------------------------------------------------------------------------------------

REGISTRY_CASES = [
    ("nope", {}, "unknown task 'nope'; known tasks: "),
    ("gridworld", dict(size=1), "too small"),
    ("gridworld", dict(size=2.5), "size must be an int"),
    ("gridworld", dict(episode_length=0), "episode_length must be positive"),
    ("gridworld", dict(excluded=0), "excluded must be >= 1"),
    ("gridworld", dict(colour="red"), "bad arguments"),
    ("gridworld", dict(num_episodes=10**9), "exceeds 100000 steps"),
    ("bernoulli_bandit", dict(horizon=10**9), "exceeds 100000 steps"),
    ("bernoulli_bandit", dict(num_arms=0), "num_arms must be a positive int"),
    ("bernoulli_bandit", dict(alpha=[1.0, 2.0, 3.0]), r"alpha must be a scalar or have shape \(2,\)"),
    ("bernoulli_bandit", dict(beta=-1.0), "beta must be positive"),
    ("bernoulli_bandit", dict(horizon=True), "horizon must be a positive int"),
    ("function_optimization", dict(lengthscale=0.0), "lengthscale must be positive"),
    ("function_optimization", dict(noise=float("nan")), "noise must be positive and finite"),
    ("function_optimization", dict(num_points=0), "num_points must be a positive int"),
]


@pytest.mark.parametrize("name, kwargs, message", REGISTRY_CASES)
def test_registry_make_refuses(name, kwargs, message, no_compilation):
    with pytest.raises(TaskError, match=message):
        registry.make(name, **kwargs)


def _fields(**changes):
    task = _boxes_task()
    base = {f.name: getattr(task, f.name) for f in dataclasses.fields(Task)}
    return {**base, **changes}


def _raises_in_prior():
    raise RuntimeError("a typo in the prior")


USER_TASK_CASES = [
    (dict(name="my task"), "identifier-like"),
    (dict(num_actions=0), "num_actions must be a positive int"),
    (dict(obs_dim=2.0), "obs_dim must be a positive int"),
    (dict(prior=None), "prior must be a function"),
    (dict(transition="up"), "transition must be a function"),
    (dict(belief_update=3), "belief_update must be a function or None"),
    (dict(observe=lambda s: jnp.zeros(3)), r"observe\(state\) must have shape \(obs_dim,\)"),
    (dict(transition=lambda s, a: jnp.zeros(2, jnp.int32)), "shaped like initial_state"),
    (dict(reward_distribution=lambda p, s, a, n: dist.Categorical(probs=jnp.ones((4, 2)) / 2)),
     "must be a scalar"),
    (dict(reward_distribution=lambda p, s, a, n: dist.Normal(0.0, 1.0)), "integer index"),
    (dict(reward_values=(1.0,)), ">= 2 distinct numbers"),
    (dict(reward_values=(1.0, 1.0)), ">= 2 distinct numbers"),
    (dict(thompson_resample="sometimes"), "thompson_resample must be"),
    (dict(belief_sample=lambda k, b: {"goal": jnp.int32(0)}), "belief_sample must return a task shaped"),
    (dict(prior=_raises_in_prior), "its prior failed to evaluate: a typo in the prior"),
    (dict(initial_state=lambda: 1 / 0), "initial_state failed"),
]


@pytest.mark.parametrize("changes, message", USER_TASK_CASES)
def test_user_task_refused(changes, message, no_compilation):
    with pytest.raises(TaskError, match=message):
        Task(**_fields(**changes))


def test_register_refuses_bad_factories(no_compilation):
    with pytest.raises(TaskError, match="calls itself 'boxes'"):
        registry.register("boxes_two", _boxes_task)
    with pytest.raises(TaskError, match="returned int, not a Task"):
        registry.register("three", lambda: 3)
    with pytest.raises(TaskError, match="non-empty string"):
        registry.register("", _boxes_task)
    registry.register("boxes", _boxes_task)
    try:
        with pytest.raises(TaskError, match="already registered"):
            registry.register("boxes", _boxes_task)
    finally:
        registry.unregister("boxes")
    minimal = Task(**_fields(belief_init=None, belief_update=None, belief_sample=None))
    with pytest.raises(TaskError, match="does not provide belief_init, belief_update, belief_sample"):
        exact_model(minimal)


# --------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------

def _em(**fields):
    return em.EMConfig.for_task("my_task", **fields)


def _rl2(**fields):
    return rl2.RL2Config.for_task("my_task", **fields)


_em.__name__, _rl2.__name__ = "EMConfig", "RL2Config"

CONFIG_CASES = [
    (PlannerConfig, dict(num_particles=0), "num_particles"),
    (PlannerConfig, dict(depth=2.5), "depth"),
    (PlannerConfig, dict(num_nested=True), "num_nested"),
    (PlannerConfig, dict(alpha=0.0), r"alpha must be a finite number in \(0"),
    (PlannerConfig, dict(alpha=float("inf")), "alpha must be a finite number"),
    (PlannerConfig, dict(gamma=1.5), r"gamma must be a finite number in \[0.0, 1.0\]"),
    (PlannerConfig, dict(ess_threshold=0.0), "ess_threshold"),
    (PlannerConfig, dict(resampling="magic"), "resampling: unknown value 'magic'"),
    (PlannerConfig, dict(outcome="mean"), "outcome: unknown value"),
    (PlannerConfig, dict(belief_update_in_imagination="yes"), "must be a bool"),
    (_em, dict(num_envs=0), r"num_envs must be an int in \[1, "),
    (_em, dict(num_envs=3), "must be a multiple of num_envs"),
    (_em, dict(batch_trials=512), "must not exceed replay_trials"),
    (_em, dict(learning_rate=float("nan")), r"learning_rate must be a finite number in \(0"),
    (_em, dict(learning_rate=-1e-3), "learning_rate"),
    (_em, dict(value_lambda=1.5), r"value_lambda must be a finite number in \[0.0, 1.0\]"),
    (_em, dict(policy_weight=-1.0), "policy_weight"),
    (_em, dict(depth=0), "depth"),
    (_em, dict(alpha=0.0), "alpha"),
    (_em, dict(latent_dim=0), "latent_dim"),
    (_em, dict(decoder_inputs=("colour",)), "decoder_inputs"),
    (_em, dict(s5_mode="fast"), "mode"),
    (_rl2, dict(num_envs=6, num_minibatches=4), "must divide num_envs"),
    (_rl2, dict(gamma=-0.1), "gamma"),
    (_rl2, dict(learning_rate="fast"), "learning_rate must be a finite number"),
    (BeliefConfig, dict(latent_dim=0), "latent_dim"),
    (BeliefConfig, dict(decoder_hidden=()), "decoder_hidden"),
    (BeliefConfig, dict(decoder="transformer"), "decoder"),
    (BeliefConfig, dict(kl_weight=0.0), "kl_weight"),
    (BeliefConfig, dict(step_min=0.5, step_max=0.1), "step_min <= step_max"),
    (runner.RunConfig, dict(task="t", agent="a", num_env_steps=10, checkpoint_every=0), "checkpoint_every"),
    (runner.RunConfig, dict(task="t", agent="a", num_env_steps=10, seed=1.5), "seed"),
]


@pytest.mark.parametrize("cls, kwargs, message", CONFIG_CASES,
                         ids=[f"{c.__name__}-{next(iter(k))}" for c, k, _ in CONFIG_CASES])
def test_config_refused(cls, kwargs, message, no_compilation):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_wrong_config_types_and_fields(no_compilation):
    task = _boxes_task()
    with pytest.raises(ValueError, match=r"EMConfig has no field\(s\) \['bogus'\]"):
        em.EMConfig.for_task("gridworld", bogus=1)
    with pytest.raises(ValueError, match=r"RL2Config has no field\(s\)"):
        rl2.RL2Config.for_task("gridworld", bogus=1)
    with pytest.raises(TypeError, match="make_trainer needs an EMConfig, got PlannerConfig"):
        em.make_trainer(task, PlannerConfig())
    with pytest.raises(ValueError, match="needs an RL2Config, got EMConfig"):
        rl2.make_trainer(task, em.EMConfig())
    with pytest.raises(ValueError, match="unknown agent 'ppo'"):
        agents.make_config("ppo", "gridworld")


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------

def _template():
    return {"w": jnp.zeros((2, 3)), "step": jnp.int32(0), "rng_key": jax.random.key(0)}


@pytest.mark.parametrize("kind, message", [
    ("foreign_npz", "not a readable|not a varibased"),
    ("json", "not a readable"),
    ("truncated", "not a readable|corrupt"),
    ("other_structure", "another structure"),
    ("other_shape", "shape"),
    ("future_version", "version 2"),
])
def test_checkpoint_refused(tmp_path, kind, message):
    path = tmp_path / "ckpt.npz"
    if kind == "foreign_npz":
        np.savez(path, x=np.zeros(3))
    elif kind == "json":
        path.write_text(json.dumps({"iteration": 3}))
    elif kind == "truncated":
        checkpoint.save(path, _template())
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "other_structure":
        checkpoint.save(path, {"w": jnp.zeros((2, 3))})
    elif kind == "other_shape":
        checkpoint.save(path, {**_template(), "w": jnp.zeros((3, 3))})
    else:
        checkpoint.save(path, _template())
        with np.load(path) as archive:
            arrays = dict(archive)
        meta = json.loads(bytes(arrays["__meta__"]).decode())
        arrays["__meta__"] = np.frombuffer(json.dumps({**meta, "version": 2}).encode(), np.uint8)
        np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path, _template())


# --------------------------------------------------------------------------------------
# The command line (in-process; two real subprocess runs at the end)
# --------------------------------------------------------------------------------------

def _fake_run(run_dir: pathlib.Path, checkpoint_bytes: bytes = b"", steps: int = 1000) -> dict:
    """A run directory as ``varibased train --task bernoulli_bandit --agent rl2 --steps N``
    would leave it (config.json exactly as the CLI builds it)."""
    config = agents.make_config("rl2", "bernoulli_bandit")
    run_config = runner.RunConfig(task="bernoulli_bandit", agent="rl2", num_env_steps=steps, seed=0,
                                  eval_every=max(steps // 10, 1), eval_trials=512, checkpoint_every=10,
                                  agent_config=dataclasses.asdict(config))
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(run_config.to_json(), indent=2))
    (run_dir / "metrics.csv").write_text("iteration,return\n1,0.5\n")
    if checkpoint_bytes:
        (run_dir / "checkpoint.npz").write_bytes(checkpoint_bytes)
    return {p.name: p.read_bytes() for p in run_dir.iterdir()}


def _train(out, *extra):
    return ["train", "--task", "bernoulli_bandit", "--agent", "rl2", "--steps", "1000", "--out", str(out),
            "--quiet", *extra]


CLI_CASES = [
    (["train", "--task", "nope"], "unknown task 'nope'"),
    (["train", "--task", "gridworld", "--steps", "-5"], "--steps must be a positive integer, got -5"),
    (["train", "--task", "gridworld", "--steps", "0"], "--steps must be a positive integer"),
    (["train", "--task", "gridworld", "--particles", "0"], "--particles must be >= 1"),
    (["train", "--task", "gridworld", "--agent", "rl2", "--depth", "4"], "planning budgets of varibased"),
    (["train", "--task", "gridworld", "--set", "learning_rate"], "--set expects KEY=VALUE"),
    (["train", "--task", "gridworld", "--set", "bogus=1"], r"EMConfig has no field\(s\) \['bogus'\]"),
    (["train", "--task", "gridworld", "--set", "num_envs=-1"], r"num_envs must be an int in \[1, "),
    (["train", "--task", "gridworld", "--set", "learning_rate=fast"], "learning_rate must be a finite"),
    (["train", "--task", "gridworld", "--eval-trials", "0"], r"--eval-trials must be an int in \[2, "),
    (["train", "--task", "gridworld", "--checkpoint-every", "0"], r"checkpoint_every must be an int in"),
    (["train", "--task", "gridworld", "--seed", "-1"], r"seed must be an int in \[0, "),
    (["evaluate", "{tmp}/not_a_run"], "is not a run directory"),
    (["evaluate", "{tmp}", "--trials", "1"], "--trials must be >= 2"),
    (["references", "--task", "nope"], "unknown task 'nope'"),
    (["references", "--task", "gridworld", "--trials", "1"], "--trials must be >= 2"),
]


def _run_cli(argv, capsys):
    _COMPILE_SECONDS.clear()
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert sum(_COMPILE_SECONDS) < _COMPILE_BUDGET_S, f"compiled for {sum(_COMPILE_SECONDS):.2f} s"
    return code, err


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[" ".join(a[:4]) for a, _ in CLI_CASES])
def test_cli_refuses(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default --out lands in tmp
    code, err = _run_cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_cli_unknown_agent_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--task", "gridworld", "--agent", "ppo"])
    assert exit_info.value.code == 2
    assert "error: argument --agent: invalid choice: 'ppo'" in capsys.readouterr().err


def test_cli_never_overwrites_a_run(tmp_path, capsys):
    before = _fake_run(tmp_path / "run", b"checkpoint bytes")
    code, err = _run_cli(_train(tmp_path / "run"), capsys)
    assert code == 2 and "already holds files" in err and "nothing was overwritten" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_cli_resume_problems_are_caught_before_compiling(tmp_path, capsys):
    before = _fake_run(tmp_path / "corrupt", b"not a zip file at all")
    code, err = _run_cli(_train(tmp_path / "corrupt", "--resume"), capsys)
    assert code == 2 and "cannot resume" in err and "not a readable varibased checkpoint" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "corrupt").iterdir()} == before
    _fake_run(tmp_path / "other_seed")
    code, err = _run_cli(_train(tmp_path / "other_seed", "--resume", "--seed", "3"), capsys)
    assert code == 2 and "its config differs in seed" in err
    code, err = _run_cli(_train(tmp_path / "missing", "--resume"), capsys)
    assert code == 2 and "cannot resume" in err and "config.json does not exist" in err
    (tmp_path / "a_file").write_text("x")
    code, err = _run_cli(_train(tmp_path / "a_file"), capsys)
    assert code == 2 and "is a file, not a run directory" in err


def test_varibased_run_config_survives_its_json_round_trip(tmp_path):
    """A varibased config has tuple fields (JSON lists): resuming it must not see a difference."""
    config = agents.make_config("varibased", "gridworld")
    run_config = runner.RunConfig(task="gridworld", agent="varibased", num_env_steps=10,
                                  agent_config=dataclasses.asdict(config))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(run_config.to_json()))
    runner.check_run_dir(tmp_path / "run", run_config, resume=True, check_checkpoint=False)


@pytest.mark.parametrize("content, message", [
    ("garbage", "not a readable varibased checkpoint"),
    ("foreign", "not a readable varibased checkpoint|not a varibased checkpoint"),
])
def test_cli_evaluate_refuses_bad_checkpoints(tmp_path, capsys, content, message):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    _fake_run(tmp_path / "run", b"garbage" if content == "garbage" else foreign.read_bytes())
    code, err = _run_cli(["evaluate", str(tmp_path / "run"), "--trials", "8"], capsys)
    assert code == 2 and err.startswith("error: ") and re.search(message, err)


def test_cli_evaluate_refuses_a_corrupt_config(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{not json")
    code, err = _run_cli(["evaluate", str(tmp_path / "run")], capsys)
    assert code == 2 and "config.json is corrupt" in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--task", "nope"], "error: unknown task 'nope'"),
    (["evaluate", "definitely/not/a/run"], "error: definitely/not/a/run is not a run directory"),
])
def test_cli_subprocess_exit_status(argv, message):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "varibased.inference.cli", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""
    assert "Traceback" not in proc.stderr



@pytest.mark.parametrize("cls, kwargs", [
    (BeliefConfig, dict(kl_weight=float("inf"))),
    (BeliefConfig, dict(step_max=float("inf"))),
    (_em, dict(learning_rate=True)),
])
def test_formerly_unvalidated_inputs(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)
