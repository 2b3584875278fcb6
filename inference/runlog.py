"""The logs of a run directory: metrics.csv (append-only while the lock is held) and
evaluations.json (valid JSON: a missing figure is null), read strictly on resume."""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import sys
import time
from typing import Any

import numpy as np

from varibased.inference.runfiles import EVALUATIONS_FILE, METRICS_FILE, RunError

__all__ = ["RunLog", "read_metrics", "read_evaluations", "json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN: a missing figure is null)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


class RunLog:
    """metrics.csv and evaluations.json of a run.

    On resume (``resume_iteration`` given) both logs must parse (else :class:`RunError`
    naming file and line; nothing is changed), and the rows and evaluations after the
    checkpoint's iteration (a crash between checkpoints) are moved to
    ``metrics.after-crash-<time>.csv`` / ``evaluations.after-crash-<time>.json`` and reported
    on stderr, never dropped. The rows kept are kept byte for byte.
    """

    def __init__(self, run_dir: pathlib.Path, resume_iteration: int | None, resume_steps: int | None):
        self.metrics_path = run_dir / METRICS_FILE
        self.evaluations_path = run_dir / EVALUATIONS_FILE
        self.rows: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        self.moved: list[pathlib.Path] = []
        if resume_iteration is None:
            self._write_metrics()
            self._write_evaluations()
            return
        header, lines, rows = read_metrics(self.metrics_path)
        evaluations = read_evaluations(self.evaluations_path)
        keep = [i for i, row in enumerate(rows) if int(row["iteration"]) <= resume_iteration]
        late_rows = [lines[i] for i in range(len(rows)) if i not in set(keep)]
        self.rows = [rows[i] for i in keep]
        self.evaluations = [e for e in evaluations if e["env_steps"] <= resume_steps]
        late_evaluations = [e for e in evaluations if e["env_steps"] > resume_steps]
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        if late_rows:
            moved = run_dir / f"metrics.after-crash-{stamp}.csv"
            _atomic_write(moved, header + "".join(late_rows))
            self.moved.append(moved)
            _atomic_write(self.metrics_path, header + "".join(lines[i] for i in keep))
        if late_evaluations:
            moved = run_dir / f"evaluations.after-crash-{stamp}.json"
            _atomic_write(moved, json.dumps(late_evaluations))
            self.moved.append(moved)
            self._write_evaluations()
        if self.moved:
            print(f"resuming from the checkpoint of iteration {resume_iteration}: "
                  f"{len(late_rows)} metrics row(s) and {len(late_evaluations)} evaluation(s) logged "
                  f"after it were moved to {', '.join(str(m) for m in self.moved)}", file=sys.stderr)

    def _write_metrics(self) -> None:
        if not self.rows:
            _atomic_write(self.metrics_path, "")
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]))
        writer.writeheader()
        writer.writerows(self.rows)
        _atomic_write(self.metrics_path, buffer.getvalue())

    def _write_evaluations(self) -> None:
        _atomic_write(self.evaluations_path, json.dumps(json_safe(self.evaluations), allow_nan=False))

    def add_row(self, row: dict[str, Any]) -> None:
        """Append one iteration's row to metrics.csv."""
        self.rows.append(row)
        if len(self.rows) == 1:
            self._write_metrics()
        else:
            buffer = io.StringIO()
            csv.DictWriter(buffer, fieldnames=list(self.rows[0])).writerow(row)
            with self.metrics_path.open("a", newline="") as handle:
                handle.write(buffer.getvalue())

    def add_evaluation(self, evaluation: dict[str, Any]) -> None:
        """Record one evaluation (non-finite figures become null) and rewrite evaluations.json."""
        self.evaluations.append(json_safe(evaluation))
        self._write_evaluations()


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, newline="")
    tmp.replace(path)


def read_metrics(path: pathlib.Path) -> tuple[str, list[str], list[dict[str, str]]]:
    """``(header line, row lines, rows)`` of a metrics.csv, checked line by line.

    Raises:
        RunError: a line that does not parse (cut mid-row, cut in the header, a non-integer or
            out-of-order iteration), naming the file and the line.
    """
    if not path.exists():
        return "", [], []
    with path.open(newline="") as handle:
        text = handle.read()
    if not text:
        return "", [], []
    lines = text.splitlines(keepends=True)
    advice = "; repair or remove it by hand (nothing was changed)"
    if not lines[-1].endswith("\n"):
        raise RunError(f"{path} line {len(lines)} is cut short (no end of line: a truncated log){advice}")
    header = next(csv.reader([lines[0]]))
    if not header or header[0] != "iteration":
        raise RunError(f"{path} line 1 is not a metrics header (iteration, ...): "
                       f"{lines[0].strip()!r}{advice}")
    rows, previous = [], 0
    for number, line in enumerate(lines[1:], start=2):
        values = next(csv.reader([line]), [])
        if len(values) != len(header) or any(v == "" for v in values):
            raise RunError(f"{path} line {number} has {len(values)} field(s) ({line.strip()!r}), the header "
                           f"{len(header)}: a damaged or truncated log{advice}")
        try:
            iteration = int(values[0])
        except ValueError:
            iteration = None
        if iteration != previous + 1:
            raise RunError(f"{path} line {number}: iteration {values[0]!r} does not follow "
                           f"{previous}{advice}")
        previous = iteration
        rows.append(dict(zip(header, values, strict=True)))
    return lines[0], lines[1:], rows


def read_evaluations(path: pathlib.Path) -> list[dict[str, Any]]:
    """The evaluations of an evaluations.json, checked.

    Raises:
        RunError: not JSON (naming the line), or not a list of evaluations with ``env_steps``.
    """
    if not path.exists():
        return []
    try:
        evaluations = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunError(f"{path} line {error.lineno} does not parse ({error.msg}): a damaged or truncated "
                       "log; repair or remove it by hand (nothing was changed)") from error
    except UnicodeDecodeError as error:
        raise RunError(f"{path} is not text ({error}); nothing was changed") from error
    if not isinstance(evaluations, list) or not all(
            isinstance(e, dict) and isinstance(e.get("env_steps"), int) for e in evaluations):
        raise RunError(f"{path} is not a list of evaluations with env_steps; nothing was changed")
    return evaluations
