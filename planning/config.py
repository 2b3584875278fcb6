"""The Belief-SMC planner's configuration: a frozen, validated, hashable dataclass.

Every field can change at test time without retraining (the planning budget is
``num_particles x num_nested x depth``). The configuration is hashable, so it can be a
static argument of ``jax.jit``: one compilation per configuration.

Example::

    config = PlannerConfig(num_particles=64, num_nested=4, depth=4, alpha=0.1)
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["PlannerConfig", "RESAMPLING_SCHEMES", "OUTCOMES", "ACTION_SELECTIONS"]

#: Resampling schemes, named as in ``blackjax.smc.resampling``.
RESAMPLING_SCHEMES = ("systematic", "multinomial", "stratified", "residual")
#: How an imagined outcome enters the weight: a draw of the nested-particle mixture, its
#: mean reward, or (categorical rewards) the expectation of ``r + gamma V(h')`` over every
#: outcome, each with its own updated belief.
OUTCOMES = ("sample", "expected", "enumerate")
#: How the real action is chosen from the improved policy.
ACTION_SELECTIONS = ("argmax", "sample")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"PlannerConfig: {name} must be an int >= 1, got {value!r}")


def _finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"PlannerConfig: {name} must be a finite number, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
    """Configuration of the Belief-SMC planner.

    Attributes:
        num_particles: ``K``, particles (action trajectories) per planning call, >= 1.
        num_nested: ``K_omega``, nested task particles each particle draws afresh from its
            current belief at every depth, >= 1.
        depth: ``D``, imagined steps per planning call, >= 1.
        alpha: temperature of the twisted potential ``(r + gamma V(h') - V(h)) / alpha``, > 0.
        gamma: discount in ``[0, 1]`` (1 for the finite-horizon tasks of this library).
        ess_threshold: resample when ``ESS < ess_threshold * num_particles``; in ``(0, 1]``.
        resampling: one of :data:`RESAMPLING_SCHEMES` (systematic by default).
        outcome: ``"sample"`` draws the imagined reward from the ``K_omega``-mixture
            predictive (the default); ``"expected"`` uses the mixture's mean reward;
            ``"enumerate"`` (models with categorical rewards) weighs with the expectation
            over every outcome ``o`` of ``r_o + gamma V(h'_o)``, ``h'_o`` the history updated
            on ``o`` -- risk-neutral towards nature -- and continues with a drawn outcome.
        belief_update_in_imagination: if false, an imagined transition moves the known
            state but keeps the particle's belief at the root's (an ablation).
        action_selection: ``"argmax"`` (evaluation: the mode of the improved policy, ties
            broken at random) or ``"sample"`` (training: a draw from it).
    """

    num_particles: int = 64
    num_nested: int = 4
    depth: int = 4
    alpha: float = 0.1
    gamma: float = 1.0
    ess_threshold: float = 0.5
    resampling: str = "systematic"
    outcome: str = "sample"
    belief_update_in_imagination: bool = True
    action_selection: str = "argmax"

    def __post_init__(self) -> None:
        _positive_int("num_particles (K)", self.num_particles)
        _positive_int("num_nested (K_omega)", self.num_nested)
        _positive_int("depth (D)", self.depth)
        alpha = _finite("alpha", self.alpha)
        if alpha <= 0:
            raise ValueError(f"PlannerConfig: alpha must be > 0, got {self.alpha!r}")
        gamma = _finite("gamma", self.gamma)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"PlannerConfig: gamma must be in [0, 1], got {self.gamma!r}")
        threshold = _finite("ess_threshold", self.ess_threshold)
        if not 0.0 < threshold <= 1.0:
            raise ValueError(
                f"PlannerConfig: ess_threshold must be in (0, 1], got {self.ess_threshold!r}"
            )
        for name, value, allowed in (
            ("resampling", self.resampling, RESAMPLING_SCHEMES),
            ("outcome", self.outcome, OUTCOMES),
            ("action_selection", self.action_selection, ACTION_SELECTIONS),
        ):
            if value not in allowed:
                raise ValueError(
                    f"PlannerConfig: unknown {name} {value!r}; choose one of {', '.join(allowed)}"
                )
        if not isinstance(self.belief_update_in_imagination, bool):
            raise ValueError(
                "PlannerConfig: belief_update_in_imagination must be a bool, "
                f"got {self.belief_update_in_imagination!r}"
            )
        # Store plain floats so equal configurations hash equally (0.1 vs 1/10 etc.).
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "ess_threshold", threshold)

    @property
    def budget(self) -> int:
        """Nested model evaluations per planning call: ``K * K_omega * D``."""
        return self.num_particles * self.num_nested * self.depth

    def replace(self, **changes) -> PlannerConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)
