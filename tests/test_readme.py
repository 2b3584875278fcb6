"""The README's command-line examples run as written, in order, from a fresh directory.

The executable blocks are those after a ``<!-- cli-test ... -->`` comment in README.md
(``make demo`` / ``make test`` are not marked); ``<!-- cli-test file NAME -->`` marks a file
the commands after it use (a custom task module), written into the directory first. Each line
runs in-process through :func:`varibased.inference.cli.main` with the budgets made small:
``--steps N`` becomes ``N / 1000`` (so 300,000 then 600,000 with ``--resume`` still extends
the run), and tiny agent sizes, evaluation trials and reference trials are added. The resume
example must extend the run (its schedule kept, the extension recorded), and resuming the
finished run must do nothing.
"""

import json
import pathlib
import re
import shlex
import sys

import pytest

from varibased.inference import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
_MARK = "<!-- cli-test"
_TINY_SETS = {
    "varibased": dict(num_envs=8, num_particles=2, num_nested=2, depth=1, svi_updates=1, batch_trials=8,
                      replay_trials=16, hidden_size=8, state_size=4, head_hidden=8, input_hidden=8,
                      decoder_hidden=[8]),
    "rl2": dict(num_envs=4, num_minibatches=2, num_epochs=1, hidden_size=8, state_size=4, head_size=8),
}
_SMALLER = {"--trials": "8", "--particles": "2", "--nested": "2", "--depth": "1"}


def cli_blocks(text: str) -> list[tuple[str | None, list[str]]]:
    """``(file, lines)`` of every code block right after a cli-test mark, in order: a block
    marked ``<!-- cli-test file NAME -->`` is written to NAME, the others are command lines."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        mark = lines[i].strip()
        if mark.startswith(_MARK):
            words = mark.removeprefix(_MARK).removesuffix("-->").split()
            name = words[1] if words[:1] == ["file"] else None
            i += 1
            assert lines[i].startswith("```"), f"README line {i + 1}: a cli-test mark precedes no code block"
            block = []
            i += 1
            while not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            blocks.append((name, block if name else [line for line in block if line.strip()]))
        i += 1
    return blocks


def small(line: str) -> list[str]:
    """One README line as ``varibased`` arguments with small budgets."""
    words = shlex.split(line, comments=True)
    assert words[0] == ".venv/bin/varibased", f"not a varibased command: {line}"
    args = words[1:]
    for i, word in enumerate(args[:-1]):
        if word == "--steps":
            args[i + 1] = str(max(1, int(args[i + 1]) // 1000))
        elif word in _SMALLER:
            args[i + 1] = _SMALLER[word]
    if args[0] == "train":
        agent = args[args.index("--agent") + 1] if "--agent" in args else "varibased"
        args += ["--eval-trials", "8", "--reference-trials", "20", "--quiet"]
        args += [f"--set={k}={json.dumps(v)}" for k, v in _TINY_SETS[agent].items()]
    elif args[0] == "references":
        args += ["--trials", "20"]
    return args


def test_readme_marks_the_command_line_block():
    blocks = cli_blocks((ROOT / "README.md").read_text())
    commands = [line for name, block in blocks if name is None for line in block]
    assert any("--resume" in line for line in commands)
    assert all(line.startswith(".venv/bin/varibased ") for line in commands)
    assert not any(line.lstrip().startswith("make ") for line in commands)


@pytest.mark.slow
def test_readme_command_lines_run_in_order(tmp_path, monkeypatch, capsys, request):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # a task module imported from tmp_path
    lines = []
    for name, block in cli_blocks((ROOT / "README.md").read_text()):
        if name is None:
            lines += block
        else:  # written now, in README order (before the commands that import it)
            lines.append(("file", name, "\n".join(block) + "\n"))
    for line in lines:
        if isinstance(line, tuple):
            (tmp_path / line[1]).write_text(line[2])
            # a module of that name imported by another test must not shadow this one, nor this one it
            monkeypatch.delitem(sys.modules, pathlib.Path(line[1]).stem, raising=False)
            request.addfinalizer(lambda stem=pathlib.Path(line[1]).stem: sys.modules.pop(stem, None))
            continue
        code = cli.main(small(line))
        captured = capsys.readouterr()
        assert code == 0, f"{line}\n{captured.err}"
        assert "Traceback" not in captured.err
        if "--resume" in line:  # the README's resume example extends the run
            run_dir = pathlib.Path(small(line)[small(line).index("--out") + 1])
            history = json.loads((run_dir / "schedule.json").read_text())["history"]
            assert len(history) == 2 and set(history[1]["set"]) == {"num_env_steps"}, history
            steps = history[1]["set"]["num_env_steps"]
            evaluations = json.loads((run_dir / "evaluations.json").read_text())
            assert evaluations[-1]["env_steps"] >= steps and evaluations[-1]["eval_points"][-1] == steps
            assert len([e for e in evaluations if e["env_steps"] == evaluations[-1]["env_steps"]]) == 1
            # Resuming the finished run does nothing and says so.
            assert cli.main(small(line)) == 0
            assert re.search(r"nothing to do: .* is finished", capsys.readouterr().err)
            assert json.loads((run_dir / "evaluations.json").read_text()) == evaluations
