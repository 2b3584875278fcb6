"""The training driver: run directory, resume equals an uninterrupted run, faults."""

import csv
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.planning.test_reference_agents import _boxes_task
from varibased.inference import runner
from varibased.inference.trainer import Trainer
from varibased.models.agent import Agent
from varibased.models.rollout import run_trials
from varibased.planning.references import compute_references


class _State(NamedTuple):
    logits: jax.Array
    rng_key: jax.Array
    iteration: jax.Array


def _reinforce_trainer(task, nan_at: int = -1) -> Trainer:
    """A tiny REINFORCE learner of a fixed action distribution (open-loop), for driver tests."""

    def agent(state, evaluation):
        def act(key, agent_state, env_state, obs):
            if evaluation:
                return jnp.argmax(state.logits), ()
            return jax.random.categorical(key, state.logits), ()

        return Agent(lambda k, p: (), act, lambda s, t: s)

    def iteration(state):
        key, run_key = jax.random.split(state.rng_key)
        trajectory = run_trials(run_key, task, agent(state, False), 32)
        actions, rewards = trajectory.transitions.action, trajectory.transitions.reward
        advantage = rewards - rewards.mean()
        score = jax.nn.one_hot(actions, task.num_actions) - jax.nn.softmax(state.logits)
        grad = score * advantage[..., None]
        logits = state.logits + 0.5 * grad.mean((0, 1))
        logits = jnp.where(state.iteration + 1 == nan_at, jnp.nan, logits)
        metrics = {"return": rewards.sum(-1).mean(), "loss": -advantage.mean()}
        return _State(logits, key, state.iteration + 1), metrics

    def init(rng_key):
        return _State(jnp.zeros(task.num_actions), rng_key, jnp.int32(0))

    return Trainer(init, iteration, agent, 32 * task.trial_length, None)


@pytest.fixture(scope="module")
def setup():
    task = _boxes_task()
    return task, compute_references(task, num_trials=500)


def _config(**kw):
    base = dict(task="boxes", agent="toy", num_env_steps=96 * 6, seed=1, eval_every=96 * 2,
                eval_trials=64, checkpoint_every=2)
    base.update(kw)
    return runner.RunConfig(**base)


def _rows(run_dir):
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_run_directory_contents(tmp_path, setup):
    task, refs = setup
    summary = runner.train(tmp_path / "run", _config(), task, _reinforce_trainer(task), refs, progress=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "metrics.csv", "evaluations.json", "checkpoint.npz", "learning_curve.png"} <= files
    assert summary["env_steps"] == 96 * 6 and summary["iterations"] == 6
    evaluations = json.loads((tmp_path / "run" / "evaluations.json").read_text())
    assert [e["env_steps"] for e in evaluations] == [0, 192, 384, 576]
    assert all(len(e["returns"]) == 64 for e in evaluations)


def test_resume_equals_uninterrupted(tmp_path, setup):
    task, refs = setup
    trainer = _reinforce_trainer(task)
    runner.train(tmp_path / "full", _config(), task, trainer, refs, progress=False)
    runner.train(tmp_path / "part", _config(num_env_steps=96 * 4), task, trainer, refs, progress=False)
    runner.train(tmp_path / "part", _config(), task, trainer, refs, resume=True, progress=False)
    full, resumed = _rows(tmp_path / "full"), _rows(tmp_path / "part")
    assert [r["iteration"] for r in resumed] == [str(i) for i in range(1, 7)]
    for a, b in zip(full, resumed, strict=True):
        assert a["return"] == b["return"] and a["loss"] == b["loss"]
    ev_full = json.loads((tmp_path / "full" / "evaluations.json").read_text())
    ev_part = json.loads((tmp_path / "part" / "evaluations.json").read_text())
    assert [e["env_steps"] for e in ev_part] == [0, 192, 384, 576]
    assert [e["returns"] for e in ev_full] == [e["returns"] for e in ev_part]


def test_refuses_existing_run_and_mismatched_resume(tmp_path, setup):
    task, refs = setup
    trainer = _reinforce_trainer(task)
    runner.train(tmp_path / "run", _config(num_env_steps=96), task, trainer, refs, progress=False)
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    with pytest.raises(runner.RunError, match="already holds files"):
        runner.train(tmp_path / "run", _config(), task, trainer, refs, progress=False)
    with pytest.raises(runner.RunError, match="differs in seed"):
        runner.train(tmp_path / "run", _config(seed=2), task, trainer, refs, resume=True, progress=False)
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before


def test_non_finite_stops_and_keeps_last_good_checkpoint(tmp_path, setup):
    task, refs = setup
    trainer = _reinforce_trainer(task, nan_at=3)
    with pytest.raises(runner.NonFiniteError, match="iteration 3: non-finite parameters"):
        runner.train(tmp_path / "run", _config(), task, trainer, refs, progress=False)
    fault = json.loads((tmp_path / "run" / "fault.json").read_text())
    assert fault["iteration"] == 3 and any("logits" in leaf for leaf in fault["non_finite_state"])
    from varibased.inference import checkpoint

    state, meta = checkpoint.load(tmp_path / "run" / "checkpoint.npz", trainer.init(jax.random.key(0)))
    assert meta["iteration"] == 2 and np.all(np.isfinite(state.logits))


@pytest.mark.parametrize("bad, message", [
    (dict(num_env_steps=-5), r"num_env_steps must be an int in \[1, "),
    (dict(eval_trials=0), "eval_trials"),
    (dict(eval_every=-1), "eval_every"),
    (dict(seed=-1), "seed"),
])
def test_bad_run_config(bad, message):
    with pytest.raises(ValueError, match=message):
        _config(**bad)


def test_resume_accepts_fields_added_since_the_run_at_their_legacy_values(tmp_path):
    """A run saved before an agent-config field existed (here BeliefConfig.guide, decoder and
    factor_rank, in the flat form of version 1) resumes when the field is at its legacy value,
    and is refused otherwise."""
    from varibased.inference import agents, configs

    config = agents.make_config("varibased", "gridworld")
    nested = agents.config_to_json(config)
    flat = {alias: _lookup(nested, path) for alias, path in configs.ALIASES["varibased"].items()}
    flat.update({k: v for k, v in nested.items() if not isinstance(v, dict)})
    for field in ("guide", "decoder", "factor_rank"):
        del flat[field]
    run_config = runner.RunConfig(task="gridworld", agent="varibased", num_env_steps=1000, seed=0,
                                  agent_config=nested)
    saved = {**json.loads(json.dumps(run_config.to_json())), "agent_config": flat}
    (tmp_path / runner.CONFIG_FILE).write_text(json.dumps(saved))
    runner.check_run_dir(tmp_path, run_config, resume=True, check_checkpoint=False)
    changed = runner.RunConfig(**{**run_config.__dict__, "agent_config": agents.config_to_json(
        configs.replace(config, {"belief.guide": "factors"}))})
    with pytest.raises(runner.RunError, match=r"differs in agent_config.belief"):
        runner.check_run_dir(tmp_path, changed, resume=True, check_checkpoint=False)


def _lookup(tree, path):
    for part in path.split("."):
        tree = tree[part]
    return tree


def test_resume_or_fresh_never_touches_another_run(tmp_path, setup):
    task, refs = setup
    trainer = _reinforce_trainer(task)
    base = tmp_path / "nb"
    assert runner.resume_or_fresh(base, _config()) == (base, False)  # absent
    runner.train(base, _config(num_env_steps=96), task, trainer, refs, progress=False)
    before = (base / "checkpoint.npz").read_bytes()
    assert runner.resume_or_fresh(base, _config()) == (base, True)  # same config: continue
    other, resume = runner.resume_or_fresh(base, _config(seed=2))
    assert other == tmp_path / "nb-2" and not resume
    runner.train(other, _config(seed=2, num_env_steps=96), task, trainer, refs, progress=False)
    assert runner.resume_or_fresh(base, _config(seed=2)) == (other, True)
    assert runner.resume_or_fresh(base, _config(seed=3)) == (tmp_path / "nb-3", False)
    assert (base / "checkpoint.npz").read_bytes() == before


def test_resume_starts_from_the_saved_config_not_todays_defaults(tmp_path):
    """A run saved before a default changed (here GridNavi's planner.outcome) resumes under its
    own config: the check reaches the checkpoint instead of refusing "config differs"; a --set
    that contradicts the saved config is still refused."""
    from varibased.inference import agents, configs

    old = configs.replace(agents.make_config("varibased", "gridworld"), {"planner.outcome": "sample"})
    run_config = runner.RunConfig(task="gridworld", agent="varibased", num_env_steps=1000, seed=0,
                                  agent_config=agents.config_to_json(old))
    (tmp_path / runner.CONFIG_FILE).write_text(json.dumps(run_config.to_saved_json()))
    with pytest.raises(runner.RunError, match="checkpoint"):
        runner.run("gridworld", "varibased", None, steps=2000, run_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(runner.RunError, match="differs in agent_config.num_envs"):
        runner.run("gridworld", "varibased", {"num_envs": 8}, steps=2000, run_dir=tmp_path, resume=True,
                   progress=False)
