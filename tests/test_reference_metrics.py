"""Same seed, same numbers: the first iterations of EM and RL^2 (tiny configs) reproduce the
metrics recorded before the layout refactor (tests/data/reference_metrics.json, written by
tests/data/record_reference_metrics.py on main 0dd7b1e) to 1e-4 relative, on CPU.

The recorded configs are flat (that version's field names); they load through the same
translation that old run directories use, and fields added later take their legacy values."""

import json
import pathlib

import jax
import numpy as np
import pytest

from varibased.inference import agents
from varibased.models import registry

RECORD = json.loads((pathlib.Path(__file__).parent / "data" / "reference_metrics.json").read_text())


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="recorded on CPU")
@pytest.mark.parametrize("record", RECORD["records"], ids=lambda r: f"{r['agent']}-{r['task']}")
def test_reference_metrics_reproduced(record):
    task = registry.make(record["task"], **record["task_config"])
    config = agents.config_from_json(record["agent"], record["agent_config"])
    trainer = agents.make_trainer(record["agent"], task, config)
    step = jax.jit(trainer.iteration)
    state = trainer.init(jax.random.key(record["seed"]))
    for expected in record["metrics"]:
        state, metrics = step(state)
        assert set(metrics) >= set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(float(metrics[name]), value, rtol=1e-4, atol=1e-6, err_msg=name)
