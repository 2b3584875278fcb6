"""Saved work keeps loading: checkpoints written by an earlier version of the library.

The files in ``tests/data`` hold a tiny VariBASeD and RL^2 state on the Bernoulli bandit after
one iteration, written by this file's ``__main__`` with the code of commit eb49ee1 (before the
window mode was added; the first version of that mode broke exactly this). If a change to the
training state makes them unreadable, that change breaks users' runs: keep the state's
structure, or write a migration and new files on purpose.
"""

import pathlib

import jax
import numpy as np

from varibased.inference import agents, checkpoint
from varibased.models import registry

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
CONFIGS = {
    "varibased": dict(num_envs=4, num_particles=2, num_nested=1, depth=1, svi_updates=1, batch_trials=4,
                      replay_trials=8, hidden_size=8, state_size=4, head_hidden=8, input_hidden=8,
                      decoder_hidden=(8,), latent_dim=2),
    "rl2": dict(num_envs=4, num_minibatches=2, num_epochs=1, hidden_size=8, state_size=4, head_size=8),
}


def _trainer(agent: str):
    task = registry.make("bernoulli_bandit")
    config = agents.make_config(agent, task.name, CONFIGS[agent])
    return agents.make_trainer(agent, task, config)


def test_checkpoints_of_an_earlier_version_load_and_train():
    for agent in CONFIGS:
        trainer = _trainer(agent)
        template = jax.jit(trainer.init)(jax.random.key(0))
        state, metadata = checkpoint.load(DATA / f"{agent}_bandit_tiny.npz", template)
        assert metadata["agent"] == agent
        state, metrics = jax.jit(trainer.iteration)(state)
        assert all(np.isfinite(float(v)) for v in metrics.values())


if __name__ == "__main__":  # regenerate the files (on purpose only: see the docstring)
    DATA.mkdir(exist_ok=True)
    for agent in CONFIGS:
        trainer = _trainer(agent)
        state, _ = jax.jit(trainer.iteration)(jax.jit(trainer.init)(jax.random.key(0)))
        checkpoint.save(DATA / f"{agent}_bandit_tiny.npz", state, {"agent": agent})
