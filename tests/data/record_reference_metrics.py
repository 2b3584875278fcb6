"""Record the metrics of the first iterations of EM and RL^2 (tiny configs, CPU), so that a
refactor can show "same seed, same numbers" (tests/test_reference_metrics.py).

Written on main 0dd7b1e, before the layout refactor of issue 13. Every config field that
existed then is pinned in the file (flat names, as that version's configs had them); fields
added later are loaded at their legacy values. Run again only to re-record on purpose:

    .venv/bin/python tests/data/record_reference_metrics.py
"""

import dataclasses
import json
import pathlib
import subprocess

import jax

from varibased.inference import agents
from varibased.models import registry

NUM_ITERATIONS = 3
SEED = 7
CASES = [
    ("varibased", "bernoulli_bandit", {"num_arms": 2, "horizon": 5},
     {"num_envs": 4, "svi_updates": 2, "batch_trials": 4, "replay_trials": 8, "num_particles": 4,
      "num_nested": 2, "depth": 2, "hidden_size": 16, "state_size": 8, "head_hidden": 16,
      "input_hidden": 16, "decoder_hidden": [16]}),
    ("varibased", "gridworld", {},
     {"num_envs": 4, "svi_updates": 2, "batch_trials": 4, "replay_trials": 8, "num_particles": 4,
      "num_nested": 2, "depth": 2, "hidden_size": 16, "state_size": 8, "head_hidden": 16,
      "input_hidden": 16, "decoder_hidden": [16]}),
    ("varibased", "function_optimization", {"num_points": 8, "num_queries": 4},
     {"num_envs": 4, "svi_updates": 2, "batch_trials": 4, "replay_trials": 8, "num_particles": 4,
      "num_nested": 2, "depth": 2, "hidden_size": 16, "state_size": 8, "head_hidden": 16,
      "input_hidden": 16, "decoder_hidden": [16], "latent_dim": 4, "factor_rank": 2}),
    ("rl2", "bernoulli_bandit", {"num_arms": 2, "horizon": 5},
     {"num_envs": 8, "num_minibatches": 2, "num_epochs": 2, "hidden_size": 16, "state_size": 8,
      "head_size": 16}),
    ("rl2", "gridworld", {},
     {"num_envs": 8, "num_minibatches": 2, "num_epochs": 2, "hidden_size": 16, "state_size": 8,
      "head_size": 16}),
]


def record() -> list[dict]:
    records = []
    for agent, task_name, task_config, overrides in CASES:
        task = registry.make(task_name, **task_config)
        config = agents.make_config(agent, task_name, overrides)
        trainer = agents.make_trainer(agent, task, config)
        step = jax.jit(trainer.iteration)
        state = trainer.init(jax.random.key(SEED))
        metrics = []
        for _ in range(NUM_ITERATIONS):
            state, m = step(state)
            metrics.append({k: float(v) for k, v in m.items()})
        records.append({"agent": agent, "task": task_name, "task_config": task_config, "seed": SEED,
                        "agent_config": json.loads(json.dumps(dataclasses.asdict(config))),
                        "metrics": metrics})
    return records


if __name__ == "__main__":
    root = pathlib.Path(__file__).resolve().parents[2]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    out = pathlib.Path(__file__).with_name("reference_metrics.json")
    out.write_text(json.dumps({"commit": commit, "jax": jax.__version__, "records": record()}, indent=1))
    print(f"wrote {out}")
