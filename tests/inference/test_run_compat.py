"""Run directories written by version 1 (main 0dd7b1e: a flat ``config.json``) keep loading,
training and evaluating.

``tests/data/v1_runs/{varibased,rl2}`` were written by that commit's command line
(``varibased train --task bernoulli_bandit --steps 120 --eval-every 40 --eval-trials 8
--checkpoint-every 1`` with tiny ``--set`` sizes). Their agent configs use the flat field
names, which load through the alias table of :mod:`varibased.inference.configs`."""

import json
import shutil

import pytest

from varibased.inference import agents, runner
from varibased.inference.em import EMConfig

from .test_checkpoint_compat import DATA

V1_RUNS = DATA / "v1_runs"


@pytest.fixture(params=["varibased", "rl2"])
def v1_run(request, tmp_path):
    run_dir = tmp_path / request.param
    shutil.copytree(V1_RUNS / request.param, run_dir)
    return run_dir


def test_flat_config_translates_to_the_nested_one(v1_run):
    saved = json.loads((v1_run / "config.json").read_text())
    config = agents.config_from_json(saved["agent"], saved["agent_config"])
    if saved["agent"] == "varibased":
        assert isinstance(config, EMConfig)
        flat = saved["agent_config"]
        assert config.planner.num_particles == flat["num_particles"] == 2
        assert config.belief.mode == flat["s5_mode"] and config.svi.learning_rate == flat["learning_rate"]
        assert config.belief.decoder_hidden == tuple(flat["decoder_hidden"])
    else:
        assert config.encoder.hidden_size == saved["agent_config"]["hidden_size"] == 8


def test_v1_run_evaluates_and_resumes(v1_run):
    saved = json.loads((v1_run / "config.json").read_text())
    result = runner.evaluate_run(v1_run, trials=4, reference_trials=20)
    assert 0 <= result["mean_return"] <= 20  # 20 pulls of Bernoulli arms
    assert ("planner" in result["config"]) == (saved["agent"] == "varibased")
    # 2 iterations of 4 trials x 20 steps were saved; 200 steps need a 3rd.
    summary = runner.run("bernoulli_bandit", saved["agent"], saved["agent_config"], steps=200,
                         run_dir=v1_run, resume=True, eval_every=40, eval_trials=8, checkpoint_every=1,
                         reference_trials=20, progress=False)
    assert summary["iterations"] == 3 and summary["env_steps"] == 240
    rows = (v1_run / "metrics.csv").read_text().splitlines()
    saved_rows = (V1_RUNS / saved["agent"] / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and rows[:3] == saved_rows[:3]  # history kept, one row added
    with pytest.raises(runner.RunError, match="differs"):
        runner.run("bernoulli_bandit", saved["agent"], {**saved["agent_config"], "num_envs": 8}, steps=240,
                   run_dir=v1_run, resume=True, eval_every=40, eval_trials=8, checkpoint_every=1,
                   reference_trials=20, progress=False)
