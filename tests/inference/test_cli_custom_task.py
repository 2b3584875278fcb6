"""Your own task on the command line (``--task package.module:factory``), ``evaluate --set``
and the help that lists every config field.

The end-to-end test writes a task module into a temporary directory and runs the installed
``varibased`` from there (the current directory is on the import path, as with ``python -m``),
at the smallest budget: one training iteration of a tiny VariBASeD.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from varibased.inference import cli

VARIBASED = pathlib.Path(sys.executable).with_name("varibased")

TASK_MODULE = '''
import dataclasses

from varibased.models.bandit import make_bernoulli_bandit


def make_task():
    """A 2-armed Bernoulli bandit of 4 pulls under its own name (no exact belief: fewer references)."""
    task = make_bernoulli_bandit(num_arms=2, horizon=4)
    return dataclasses.replace(task, name="my_bandit", belief_init=None, belief_update=None,
                               belief_sample=None, belief_log_prob=None)


def not_a_task():
    return 3
'''

#: one iteration of a tiny VariBASeD (4 trials of 4 steps)
TINY = ["num_envs=4", "num_particles=2", "num_nested=1", "depth=1", "svi_updates=1", "batch_trials=4",
        "replay_trials=8", "hidden_size=8", "state_size=4", "head_hidden=8", "input_hidden=0",
        "decoder_hidden=[8]", "latent_dim=2"]


def _varibased(*argv, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([str(VARIBASED), *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``varibased train --task mymod:make_task`` run from the module's directory."""
    where = tmp_path_factory.mktemp("custom")
    (where / "mymod.py").write_text(TASK_MODULE)
    proc = _varibased("train", "--task", "mymod:make_task", "--agent", "varibased", "--steps", "16",
                      "--out", "run", "--eval-trials", "2", "--reference-trials", "10", "--eval-every", "0",
                      "--quiet", *[f"--set={s}" for s in TINY], cwd=where)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return where


def test_train_records_the_import_path_and_evaluate_needs_it_named(trained):
    saved = json.loads((trained / "run" / "config.json").read_text())
    assert saved["task"] == "mymod:make_task"
    # named again: evaluated (and a planner field set for the evaluation)
    proc = _varibased("evaluate", "run", "--task", "mymod:make_task", "--trials", "8",
                      "--set", "planner.outcome=enumerate", "--json", "result.json", cwd=trained)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "varibased on mymod:make_task" in proc.stdout and "normalized score" in proc.stdout
    result = json.loads((trained / "result.json").read_text())
    assert result["trials"] == 8 and result["config"]["planner"]["outcome"] == "enumerate"
    # not named: refused, with the recorded path, before any import of the user's code
    proc = _varibased("evaluate", "run", "--trials", "8", cwd=trained)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "--task mymod:make_task" in proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "run", "--task", "gridworld"], "task 'gridworld' is not this run's task 'mymod:make_task'"),
    (["evaluate", "run", "--task", "mymod:make_task", "--set", "learning_rate=1e-3"],
     r"evaluate --set learning_rate: svi.learning_rate is fixed by training .* planner fields: "),
    (["evaluate", "run", "--task", "mymod:make_task", "--set", "bogus=1"], r"has no field\(s\) \['bogus'\]"),
    (["train", "--task", "mymod:not_a_task", "--out", "other"], "returned int, not a Task"),
    (["train", "--task", "mymod:nope", "--out", "other"], "module 'mymod' has no 'nope'"),
    (["train", "--task", "nomod:make_task", "--out", "other"], "cannot import module 'nomod'"),
    (["train", "--task", "mymod:", "--out", "other"], "an import path must be package.module:factory"),
    (["references", "--task", "mymod:nope"], "module 'mymod' has no 'nope'"),
    (["config", "--task", "nomod:make_task"], "cannot import module 'nomod'"),
])
def test_custom_task_errors(trained, argv, message, monkeypatch, capsys):
    """In process (refused before any compilation), from the module's directory."""
    monkeypatch.chdir(trained)
    monkeypatch.syspath_prepend(str(trained))
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert re.search(message, err), err
    assert not (trained / "other").exists()


def test_rl2_evaluate_has_no_settings(tmp_path, capsys):
    from tests.inference.test_bad_input import _fake_run

    _fake_run(tmp_path / "run")
    code = cli.main(["evaluate", str(tmp_path / "run"), "--set", "learning_rate=1"])
    assert code == 2 and "rl2 has no planner" in capsys.readouterr().err


def test_help_lists_every_config_field(capsys):
    from varibased.inference import agents

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for agent in agents.AGENTS:
        for path in agents.config_fields(agent):
            assert re.search(rf"^  {re.escape(path)} +\S", out, re.M), (agent, path)
    assert re.search(r"^  planner.num_particles +16 +K, particles", out, re.M)
    assert cli.main(["config", "--task", "gridworld", "--agent", "varibased"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  belief.kl_weight +0.1 +weight beta of the KL term", out, re.M)  # gridworld's own
    assert len(re.findall(r"^  \S", out, re.M)) == len(agents.config_fields("varibased"))
