"""The names of a run directory's files and the errors of run handling (shared by
:mod:`~varibased.inference.rundir`, :mod:`~varibased.inference.runlog` and
:mod:`~varibased.inference.runlock`; see shared/RUNDIR.md)."""

from __future__ import annotations

__all__ = ["RunError", "NonFiniteError", "CONFIG_FILE", "METRICS_FILE", "EVALUATIONS_FILE",
           "CHECKPOINT_FILE", "CURVE_FILE", "FAULT_FILE", "LOCK_FILE", "REFERENCES_FILE", "FORMAT",
           "IDENTITY_FIELDS"]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
EVALUATIONS_FILE = "evaluations.json"
CHECKPOINT_FILE = "checkpoint.npz"
CURVE_FILE = "learning_curve.png"
FAULT_FILE = "fault.json"
LOCK_FILE = ".lock"
REFERENCES_FILE = "references.json"
#: config.json's format version (1: no identity; 2: ``format`` and ``identity`` fields).
FORMAT = 2
#: The fields of config.json that make a run's identity (the rest is its schedule).
IDENTITY_FIELDS = ("format", "task", "task_config", "agent", "agent_config", "seed")


class RunError(RuntimeError):
    """A run cannot start or continue (bad directory, mismatched resume)."""


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or parameter; the last good checkpoint is kept."""
