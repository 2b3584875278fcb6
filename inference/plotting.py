"""Plots shared by the command line, the benchmarks and the notebooks (headless-safe)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["plot_references", "format_reference_table"]

_SKIP = ("reference", "num_trials", "seed", "seconds")


def _pyplot():
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    return plt


def _agents(refs: dict[str, Any]) -> list[str]:
    return [name for name in refs if name not in _SKIP]


def format_reference_table(all_refs: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one block per task, a header line, one line per agent (mean ± s.e.
    of the return per trial, then the mean return of each episode when there are several)."""
    lines = []
    for task_name, refs in all_refs.items():
        ref = refs["reference"]
        lines.append(f"{task_name}  (R_ref = {ref['agent']}: {ref['mean']:.4f})")
        episodes = max((len(refs[a].get("per_episode") or []) for a in _agents(refs)), default=0)
        header = "  ".join(f"{f'ep {i + 1}':>7s}" for i in range(episodes)) if episodes > 1 else ""
        lines.append(f"  {'agent':<24s} {'return':>9s}   {'s.e.':<6s}   {header}".rstrip())
        for agent in _agents(refs):
            entry = refs[agent]
            per_episode = entry.get("per_episode") or []
            cells = "  ".join(f"{x:7.3f}" for x in per_episode) if len(per_episode) > 1 else ""
            lines.append(f"  {agent:<24s} {entry['mean']:9.4f} ± {entry['se']:.4f}   {cells}".rstrip())
    return "\n".join(lines)


def plot_references(all_refs: dict[str, dict[str, Any]], path: str) -> None:
    """Bar chart of every agent's mean return per task, with s.e. bars and R_ref dashed."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(all_refs), figsize=(4.5 * len(all_refs), 3.6), squeeze=False)
    for ax, (task_name, refs) in zip(axes[0], all_refs.items(), strict=True):
        names = _agents(refs)
        means = [refs[n]["mean"] for n in names]
        errors = [refs[n]["se"] for n in names]
        ax.bar(range(len(names)), means, yerr=errors, color="tab:blue", alpha=0.8, capsize=3)
        ax.axhline(refs["reference"]["mean"], color="k", ls="--", lw=1, label="R_ref")
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(task_name)
        ax.set_ylabel("return per trial")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
