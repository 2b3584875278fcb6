"""A planning model assembled part by part from an exact and a learned model.

The gap decomposition (``benchmarks/gap.py``, DESIGN.md "Gap decomposition") swaps one part
of the planner's model at a time from exact to learned and runs the SAME planner
(:mod:`planning.smc`) on each mixture. Its node carries BOTH models' nodes for one history --
the exact belief (:class:`~planning.model.ExactNode`) and the learned S5 state
(:class:`~planning.learned_model.LearnedNode`) -- and advances both on every real and
imagined transition, so each part can read the node it needs:

==============  =========================================================================
part            what it selects
==============  =========================================================================
``proposal``    ``policy_logits``: the exact model's policy prior (uniform) or the learned
                policy ``pi_psi(a | h)`` on the S5 features of the (imagined) history.
``value``       ``value``: the exact model's (QMDP) or the learned ``V_psi(h)``.
``belief``      ``sample_tasks``, ``simulate`` and ``outcomes``: the nested particles and
                the imagined outcomes come from the exact posterior and true dynamics, or
                from the learned belief and decoder.
==============  =========================================================================

Every function draws its randomness exactly as the chosen model does (same keys), so with all
parts from one model the mixed planner's choices equal that model's on the same keys (tested).
Imagined outcomes are reward values, what both models' ``advance`` condition on; under a
learned simulator the exact belief can meet an outcome it rules out (it then becomes all
zeros), which matters only to an exact value paired with a learned belief (not a column of
the gap chain). The chain::

    CHAIN["all_exact"]         uniform proposal, QMDP value, exact belief and dynamics
    CHAIN["learned_proposal"]  + the learned policy as the proposal
    CHAIN["learned_value"]     + the learned value
    CHAIN["learned_belief"]    + the learned belief and simulator: the agent itself
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax

from varibased.models.agent import Transition
from varibased.planning.model import PlanningModel

Array = jax.Array

__all__ = ["MixedParts", "MixedNode", "MixedOmegas", "mixed_model", "CHAIN", "SOURCES"]

#: Where a part comes from.
SOURCES = ("exact", "learned")


@dataclasses.dataclass(frozen=True)
class MixedParts:
    """Which model each part of the planner's model comes from (``"exact"`` or ``"learned"``).

    Attributes:
        proposal: the policy prior the planner proposes actions from.
        value: the twisting value ``V(h)``.
        belief: the nested task particles and the simulator of imagined outcomes.
    """

    proposal: str = "exact"
    value: str = "exact"
    belief: str = "exact"

    def __post_init__(self) -> None:
        for name in ("proposal", "value", "belief"):
            if getattr(self, name) not in SOURCES:
                raise ValueError(f"MixedParts.{name} must be one of {SOURCES}, got {getattr(self, name)!r}")

    @property
    def sources(self) -> frozenset[str]:
        """The models some part reads."""
        return frozenset((self.proposal, self.value, self.belief))


#: The ordered chain of the gap decomposition, each column one more learned part.
CHAIN = {
    "all_exact": MixedParts("exact", "exact", "exact"),
    "learned_proposal": MixedParts("learned", "exact", "exact"),
    "learned_value": MixedParts("learned", "learned", "exact"),
    "learned_belief": MixedParts("learned", "learned", "learned"),
}


class MixedNode(NamedTuple):
    """The node of one history in both models.

    Attributes:
        exact: the exact model's node (exact posterior, known state, step ``t``).
        learned: the learned model's node (S5 carry and features, known state, ``t``).
    """

    exact: Any
    learned: Any


class MixedOmegas(NamedTuple):
    """Nested particles: ``belief`` from the belief part's model (they drive the simulator),
    and ``value`` from the value part's model when that is the other one (else ``()``)."""

    belief: Any
    value: Any = ()


def mixed_model(exact: PlanningModel, learned: PlanningModel, parts: MixedParts) -> PlanningModel:
    """The planning model whose parts come from ``exact`` or ``learned`` as ``parts`` says.

    Args:
        exact: the exact model of the task (:func:`planning.model.exact_model`).
        learned: the learned model (:func:`planning.learned_model.learned_model`), built
            inside the jitted function that uses it.
        parts: a :class:`MixedParts`.

    Returns:
        A :class:`~planning.model.PlanningModel` over :class:`MixedNode`; its omegas are a
        :class:`MixedOmegas`. A model no part reads is not advanced (its node stays at the
        root's), which saves its cost and changes nothing the planner sees.

    Raises:
        ValueError: models of different action spaces; TypeError: ``parts`` of another type.
    """
    if not isinstance(parts, MixedParts):
        raise TypeError(f"mixed_model: parts must be a MixedParts, got {parts!r}")
    if exact.num_actions != learned.num_actions:
        raise ValueError(f"mixed_model: the exact model has {exact.num_actions} actions, the "
                         f"learned one {learned.num_actions}")
    models = {"exact": exact, "learned": learned}
    use_exact, use_learned = "exact" in parts.sources, "learned" in parts.sources
    sim = models[parts.belief]
    separate_value = parts.value != parts.belief

    def pick(node: MixedNode, source: str) -> Any:
        return node.exact if source == "exact" else node.learned

    def init(rng_key: Array) -> MixedNode:
        return MixedNode(exact.init(rng_key), learned.init(rng_key))

    def update(node: MixedNode, transition: Transition) -> MixedNode:
        return MixedNode(exact.update(node.exact, transition) if use_exact else node.exact,
                         learned.update(node.learned, transition) if use_learned else node.learned)

    def sample_tasks(rng_key: Array, node: MixedNode, num: int) -> MixedOmegas:
        omegas = sim.sample_tasks(rng_key, pick(node, parts.belief), num)
        if not separate_value:
            return MixedOmegas(omegas)
        value_key = jax.random.fold_in(rng_key, 1)
        return MixedOmegas(omegas, models[parts.value].sample_tasks(value_key, pick(node, parts.value), num))

    def simulate(rng_key: Array, node: MixedNode, action: Array, omegas: MixedOmegas, expected: bool):
        return sim.simulate(rng_key, pick(node, parts.belief), action, omegas.belief, expected)

    def outcomes(node: MixedNode, action: Array, omegas: MixedOmegas):
        return sim.outcomes(pick(node, parts.belief), action, omegas.belief)

    def advance(node: MixedNode, action: Array, outcome: Any, update_belief: bool) -> MixedNode:
        return MixedNode(
            exact.advance(node.exact, action, outcome, update_belief) if use_exact else node.exact,
            learned.advance(node.learned, action, outcome, update_belief) if use_learned else node.learned,
        )

    def policy_logits(node: MixedNode) -> Array:
        return models[parts.proposal].policy_logits(pick(node, parts.proposal))

    def value(node: MixedNode, omegas: MixedOmegas) -> Array:
        nested = omegas.value if separate_value else omegas.belief
        return models[parts.value].value(pick(node, parts.value), nested)

    return PlanningModel(
        num_actions=exact.num_actions, init=init, update=update, sample_tasks=sample_tasks,
        simulate=simulate, advance=advance, policy_logits=policy_logits, value=value,
        outcomes=outcomes if sim.outcomes is not None else None,
    )
