"""The library works whatever is imported first: arviz's lazy proxy of numpyro (varibased/_numpyro.py).

Each case runs in a fresh interpreter (import order is process state): arviz first, then
the user's imports, then a small model / guide / trace path through the library.
"""

import os
import subprocess
import sys

_PATH = """
import jax
import numpyro
import numpyro.distributions as dist
from varibased.models import registry
from varibased.models.task import trial_model

task = registry.make("bernoulli_bandit")
actions = jax.numpy.zeros(4, "int32")
trace = numpyro.handlers.trace(numpyro.handlers.seed(trial_model, 0)).get_trace(task, actions)
assert trace["reward"]["value"].shape == (4,)

def model():
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    numpyro.factor("bonus", p)          # numpyro.distributions.distribution.Unit inside

def guide():
    numpyro.sample("p", dist.Beta(numpyro.param("a", 2.0), 2.0))

guide_trace = numpyro.handlers.trace(numpyro.handlers.seed(guide, 1)).get_trace()
replayed = numpyro.handlers.replay(numpyro.handlers.seed(model, 2), guide_trace)
model_trace = numpyro.handlers.trace(replayed).get_trace()
assert model_trace["bonus"]["type"] == "sample"
print("ok")
"""


def test_arviz_imported_first():
    """arviz, then the user's own ``import numpyro.distributions`` (which alone leaves numpyro
    broken: no ``numpyro.distributions.distribution``), then the library."""
    prelude = "import arviz\nimport numpyro.distributions\nimport varibased\n"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", prelude + _PATH], env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
