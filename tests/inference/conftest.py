"""Fixtures shared by the run-directory tests (test_run_safety, test_schedule)."""

import pytest

from tests.inference.test_runner import _reinforce_trainer
from tests.planning.test_reference_agents import _boxes_task


@pytest.fixture(scope="module")
def toy():
    """A two-box toy task and its REINFORCE trainer: one iteration is 96 env steps."""
    task = _boxes_task()
    return task, _reinforce_trainer(task)
