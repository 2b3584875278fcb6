"""Agent configurations: composed, addressed by dotted paths, per-task defaults, JSON.

An agent's configuration is a frozen dataclass whose fields may themselves be
configurations, e.g. ``EMConfig(belief=BeliefConfig(...), planner=PlannerConfig(...),
svi=SVIConfig(...), num_envs=32, ...)``. Every field has a dotted path
(``belief.kl_weight``, ``planner.num_particles``, ``num_envs``); the command line's
``--set KEY=VALUE`` and :func:`make_config` take these paths. The flat names of the first
version (``kl_weight``, ``s5_mode``, ``num_particles``, ...) keep working through one
explicit alias table, :data:`ALIASES`, so README commands, old ``config.json`` files and
users' scripts do not break.

Run directories store a configuration as nested JSON (:func:`to_json`); :func:`from_json`
reads it back, and also reads the flat form of version 1. A field added after a run was
written takes its *legacy value* (:data:`LEGACY`, the value that reproduces the behaviour
from before the field existed), never the new default.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

__all__ = ["ALIASES", "TASK_DEFAULTS", "LEGACY", "field_paths", "canonical_path", "replace",
           "make_config", "to_json", "from_json", "describe"]

_BELIEF_FIELDS = ("latent_dim", "hidden_size", "state_size", "num_layers", "decoder_hidden",
                  "head_hidden", "input_hidden", "decoder_inputs", "decode", "kl_weight", "decoder",
                  "guide", "factor_rank")
_PLANNER_FIELDS = ("num_particles", "num_nested", "depth", "alpha", "gamma", "ess_threshold",
                   "resampling", "outcome", "belief_update_in_imagination")

#: agent id -> {flat name of version 1 -> dotted path}
ALIASES: dict[str, dict[str, str]] = {
    "varibased": {
        **{name: f"belief.{name}" for name in _BELIEF_FIELDS},
        "s5_mode": "belief.mode",
        **{name: f"planner.{name}" for name in _PLANNER_FIELDS},
        "learning_rate": "svi.learning_rate",
        "max_grad_norm": "svi.max_grad_norm",
    },
    "rl2": {
        "hidden_size": "encoder.hidden_size",
        "state_size": "encoder.state_size",
        "num_layers": "encoder.num_layers",
        "s5_mode": "encoder.mode",
    },
}

#: (task id, agent id) -> defaults by dotted path (everything else: the config class's own)
TASK_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # GridNavi's reward depends only on the cell moved into.
    # Enumerated outcomes (issue 15): trained with them, 3 seeds at 3e5 steps scored 0.774 ±
    # 0.065 against 0.671 ± 0.021 with sampled outcomes, better or equal on every seed, and the
    # score no longer falls as K grows (README, "The planning step").
    ("gridworld", "varibased"): {"belief.decoder_inputs": ("moved_obs",), "belief.kl_weight": 0.1,
                                 "planner.outcome": "enumerate"},
    # The reward of a query depends only on the action; a decoder linear in m (a GP with a
    # learned rank-16 kernel) and the full-covariance "factors" guide, whose family holds the
    # exact posterior (README, "Function optimization").
    ("function_optimization", "varibased"): {
        "belief.decoder_inputs": ("action",), "planner.alpha": 0.5, "belief.decoder": "linear",
        "belief.guide": "factors", "belief.latent_dim": 16, "belief.decode": "past"},
    ("bernoulli_bandit", "varibased"): {"belief.decoder_inputs": ("action",), "planner.alpha": 0.5},
    ("bernoulli_bandit", "rl2"): {"gamma": 1.0, "learning_rate": 3e-3, "entropy_coef": 0.01},
    # benchmarks/rl2_sweep.py (README, "RL^2 tuning")
    ("gridworld", "rl2"): {"gamma": 0.95, "learning_rate": 3e-3, "entropy_coef": 0.03},
    ("function_optimization", "rl2"): {"gamma": 0.99, "learning_rate": 1e-3, "entropy_coef": 0.01},
}

#: config class name -> {field added after the first saved runs -> its legacy value, the value
#: that reproduces the behaviour from before the field existed}. A saved config lacking the
#: field loads with this value, never with a (possibly newer) default.
LEGACY: dict[str, dict[str, Any]] = {
    # Added during version 1 (runs saved before them trained with these behaviours).
    "BeliefConfig": {"guide": "diagonal", "decoder": "bilinear", "factor_rank": 1,
                     # version 2 (issue 14)
                     "value_transform": "none", "heads_encoder_gradient": 1.0,
                     # issue 16
                     "elbo_steps": 0, "decode_steps": 0},
    "EMConfig": {"window": 0, "value_targets": "acting", "distill_trust": 0.0},
    "PlannerConfig": {"nested_draws": "all"},  # issue 16
}


def _is_config(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _sub_configs(config_cls: type) -> dict[str, type]:
    """Fields of ``config_cls`` whose default is itself a configuration -> its class."""
    out = {}
    for f in dataclasses.fields(config_cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if _is_config(default):
            out[f.name] = type(default)
    return out


def field_paths(config_cls: type) -> list[str]:
    """Every dotted field path of ``config_cls`` (nested configurations expanded)."""
    subs = _sub_configs(config_cls)
    paths = []
    for f in dataclasses.fields(config_cls):
        if f.name in subs:
            paths += [f"{f.name}.{p}" for p in field_paths(subs[f.name])]
        elif f.init:
            paths.append(f.name)
    return paths


def canonical_path(agent: str, config_cls: type, key: str) -> str:
    """The dotted path of ``key`` (a dotted path or a flat alias of version 1).

    Raises:
        ValueError: no such field (the message lists the fields).
    """
    path = ALIASES.get(agent, {}).get(key, key)
    paths = field_paths(config_cls)
    if path not in paths:
        raise ValueError(f"{config_cls.__name__} has no field(s) [{key!r}]; fields: {', '.join(paths)}")
    return path


def replace(config: Any, changes: dict[str, Any]) -> Any:
    """A validated copy of ``config`` with fields changed by dotted path."""
    direct, nested = {}, {}
    for path, value in changes.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub_changes in nested.items():
        direct[head] = replace(getattr(config, head), sub_changes)
    return dataclasses.replace(config, **direct)


def make_config(agent: str, config_cls: type, task_name: str, overrides: dict[str, Any] | None = None):
    """``config_cls``'s defaults for ``task_name`` (:data:`TASK_DEFAULTS`) with ``overrides``
    (dotted paths or flat aliases) applied on top."""
    changes = dict(TASK_DEFAULTS.get((task_name, agent), {}))
    for key, value in (overrides or {}).items():
        changes[canonical_path(agent, config_cls, key)] = value
    return replace(config_cls(), changes)


def to_json(config: Any) -> dict[str, Any]:
    """The nested JSON form of a configuration (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _is_flat(agent: str, config_cls: type, data: dict[str, Any]) -> bool:
    subs = _sub_configs(config_cls)
    return bool(subs) and not any(isinstance(data.get(name), dict) for name in subs) \
        and any(key in ALIASES.get(agent, {}) for key in data)


def from_json(agent: str, config_cls: type, data: dict[str, Any]):
    """A configuration from its saved JSON form: nested, or flat (version 1).

    Missing fields take their legacy value (:data:`LEGACY`) where one is recorded, else the
    default.

    Raises:
        ValueError: ``data`` is not a dict, has unknown keys, or holds an invalid value.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a saved {config_cls.__name__} must be a JSON object, got {type(data).__name__}")
    if _is_flat(agent, config_cls, data):  # version 1: flat names -> nested
        nested: dict[str, Any] = {}
        for key, value in data.items():
            *heads, name = canonical_path(agent, config_cls, key).split(".")
            target = nested
            for head in heads:
                target = target.setdefault(head, {})
            target[name] = value
        data = nested
    return _from_nested(config_cls(), data)


def _from_nested(base: Any, data: dict[str, Any]):
    """``base`` (a configuration) with the fields saved in ``data``; fields missing from
    ``data`` take their legacy value where :data:`LEGACY` has one."""
    config_cls = type(base)
    names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"saved {config_cls.__name__} has unknown field(s) {unknown}; fields: "
                         f"{', '.join(sorted(names))}")
    kwargs = {k: v for k, v in LEGACY.get(config_cls.__name__, {}).items() if k not in data}
    for name in names:
        default = getattr(base, name)
        if _is_config(default):
            value = data.get(name, {})
            if not isinstance(value, dict):
                raise ValueError(f"saved {config_cls.__name__}.{name} must be a JSON object, got {value!r}")
            kwargs[name] = _from_nested(default, value)
        elif name in data:
            value = data[name]
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(base, **kwargs)


def describe(config: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(dotted path, value, one-line description)`` for every field, for ``--help``.

    Descriptions come from the ``Attributes:`` section of each class's docstring."""
    docs = _attribute_docs(type(config))
    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _is_config(value):
            rows += describe(value, f"{prefix}{f.name}.")
        elif f.init:
            rows.append((f"{prefix}{f.name}", value, docs.get(f.name, "")))
    return rows


def _attribute_docs(config_cls: type) -> dict[str, str]:
    doc = config_cls.__doc__ or ""
    if "Attributes:" not in doc:
        return {}
    out, current = {}, None
    for line in doc.split("Attributes:", 1)[1].splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        head, sep, text = stripped.partition(":")
        names = [n.strip() for n in head.split(",")]
        if sep and names and all(n.isidentifier() for n in names) and len(line) - len(line.lstrip()) <= 8:
            for n in names:
                out[n] = text.strip()
            current = names
        elif current:
            for n in current:
                out[n] = (out[n] + " " + stripped).strip()
    return {k: v.split(". ")[0].rstrip(".") for k, v in out.items()}
