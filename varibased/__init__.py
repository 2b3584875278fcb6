"""varibased: Bayes-adaptive reinforcement learning in JAX and NumPyro.

The library's packages are :mod:`varibased.models` (tasks, S5, the learned BAMDP, the agent
loop), :mod:`varibased.planning` (the Belief-SMC planner, planning models, reference agents)
and :mod:`varibased.inference` (SVI, EM, RL^2, run directories, the command line). The main
entry points are re-exported here, name by name::

    import varibased
    task = varibased.make_task("gridworld")
    config = varibased.EMConfig()
"""

__version__ = "0.2.0"

# First: numpyro loaded for real (and repaired) whatever the user imported before (arviz).
from varibased import _numpyro as _numpyro  # noqa: I001 - must stay first

from varibased.inference.em import EMConfig as EMConfig
from varibased.inference.rl2 import RL2Config as RL2Config
from varibased.inference.svi import SVIConfig as SVIConfig
from varibased.models.belief import BeliefConfig as BeliefConfig
from varibased.models.registry import make as make_task
from varibased.models.registry import register as register_task
from varibased.models.task import Task as Task
from varibased.planning.config import PlannerConfig as PlannerConfig
from varibased.planning.references import normalized_score as normalized_score
from varibased.planning.references import references as references

__all__ = [
    "__version__",
    "BeliefConfig",
    "EMConfig",
    "PlannerConfig",
    "RL2Config",
    "SVIConfig",
    "Task",
    "make_task",
    "normalized_score",
    "references",
    "register_task",
]
