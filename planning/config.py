"""The Belief-SMC planner's configuration: a frozen, validated, hashable dataclass.

Every field can change at test time without retraining (the planning budget is
``num_particles x num_nested x depth``). The configuration is hashable, so it can be a
static argument of ``jax.jit``: one compilation per configuration.

Example::

    config = PlannerConfig(num_particles=64, num_nested=4, depth=4, alpha=0.1)
"""

from __future__ import annotations

import dataclasses

from varibased.models import validation as check

__all__ = ["PlannerConfig", "RESAMPLING_SCHEMES", "OUTCOMES", "ACTION_SELECTIONS", "ROOT_ACTIONS", "TARGETS",
           "TEMPERATURES", "NESTED_DRAWS"]

#: Resampling schemes, named as in ``blackjax.smc.resampling``.
RESAMPLING_SCHEMES = ("systematic", "multinomial", "stratified", "residual")
#: How an imagined outcome enters the weight: a draw of the nested-particle mixture, its
#: mean reward, or (categorical rewards) the expectation of ``r + gamma V(h')`` over every
#: outcome, each with its own updated belief.
OUTCOMES = ("sample", "expected", "enumerate")
#: How the real action is chosen from the improved policy.
ACTION_SELECTIONS = ("argmax", "sample")
#: How the particles' first actions are chosen (see PlannerConfig.root_actions).
ROOT_ACTIONS = ("sample", "stratified")
#: What the improved policy is built from (see PlannerConfig.target).
TARGETS = ("marginal", "q")
#: How the target's temperature is set (see PlannerConfig.temperature).
TEMPERATURES = ("fixed", "adaptive")
#: how many nested tasks a particle draws per depth (see PlannerConfig.nested_draws)
NESTED_DRAWS = ("all", "used")


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
        root_actions: ``"sample"`` (first actions drawn from the policy prior) or
            ``"stratified"`` (every action covered: particle ``i`` takes ``perm[i mod A]`` for
            a random permutation, so ``K < A`` gives ``K`` distinct actions; the weight is
            corrected by ``pi(a) / q(a)``, ``q`` the stratified proposal).
        target: ``"marginal"`` (the weighted marginal of the particles' first actions) or
            ``"q"`` (``pi_hat(a) ∝ pi(a) exp(Q_hat(a) / eta)`` from every particle's return,
            :mod:`varibased.planning.targets`).
        temperature: ``eta`` of the ``"q"`` target: ``"fixed"`` (``alpha``) or
            ``"adaptive"`` (per call, the smallest with ``KL(pi_hat || pi) <= kl_target``).
        kl_target: ``epsilon`` of the adaptive temperature, > 0 (nats).
        nested_draws: ``"all"`` (every particle draws ``K_omega`` nested tasks at every depth)
            or ``"used"`` (it draws only the one task its next sampled outcome reads: with
            ``outcome="sample"`` and a model whose value does not read the nested tasks, e.g.
            the learned one, the same distribution of plans for ``K_omega`` times fewer
            draws, on a different random stream).
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
    root_actions: str = "sample"
    target: str = "marginal"
    temperature: str = "fixed"
    kl_target: float = 0.5
    nested_draws: str = "all"

    def __post_init__(self) -> None:
        owner = "PlannerConfig"
        check.set_fields(
            self,
            num_particles=check.positive_int(owner, "num_particles", self.num_particles),
            num_nested=check.positive_int(owner, "num_nested", self.num_nested),
            depth=check.positive_int(owner, "depth", self.depth),
            # Plain floats, so equal configurations hash equally (0.1 vs 1/10 etc.).
            alpha=check.number(owner, "alpha", self.alpha, low=0.0, low_open=True),
            gamma=check.number(owner, "gamma", self.gamma, low=0.0, high=1.0),
            ess_threshold=check.number(owner, "ess_threshold", self.ess_threshold, low=0.0, high=1.0,
                                       low_open=True),
            resampling=check.choice(owner, "resampling", self.resampling, RESAMPLING_SCHEMES),
            outcome=check.choice(owner, "outcome", self.outcome, OUTCOMES),
            belief_update_in_imagination=check.boolean(owner, "belief_update_in_imagination",
                                                       self.belief_update_in_imagination),
            action_selection=check.choice(owner, "action_selection", self.action_selection,
                                          ACTION_SELECTIONS),
            root_actions=check.choice(owner, "root_actions", self.root_actions, ROOT_ACTIONS),
            target=check.choice(owner, "target", self.target, TARGETS),
            temperature=check.choice(owner, "temperature", self.temperature, TEMPERATURES),
            kl_target=check.number(owner, "kl_target", self.kl_target, low=0.0, low_open=True),
            nested_draws=check.choice(owner, "nested_draws", self.nested_draws, NESTED_DRAWS),
        )
        if self.nested_draws == "used" and self.outcome != "sample":
            raise ValueError(f"PlannerConfig.nested_draws='used' needs outcome='sample' (the "
                             f"{self.outcome!r} outcome reads every nested task)")

    @property
    def budget(self) -> int:
        """Nested model evaluations per planning call: ``K * K_omega * D``."""
        return self.num_particles * self.num_nested * self.depth

    def memory_bytes(self, num_envs: int, node_bytes: int) -> int:
        """Estimated memory of one planning call over ``num_envs`` environments: ``num_envs x
        K x K_omega x node_bytes`` (``node_bytes``: a node and one nested particle's decoding;
        the depth is a ``lax.scan``, so it does not multiply the memory)."""
        return int(num_envs) * self.num_particles * self.num_nested * int(node_bytes)

    def check_memory(self, num_envs: int, node_bytes: int, limit: int | None = None) -> int:
        """:meth:`memory_bytes`, or a ValueError with the estimate when it exceeds ``limit``
        (default :func:`varibased.models.validation.memory_limit`)."""
        what = (f"planning with K={self.num_particles} x K_omega={self.num_nested} over {num_envs} "
                "environments")
        return check.check_memory("PlannerConfig", what, self.memory_bytes(num_envs, node_bytes), limit)

    def replace(self, **changes) -> PlannerConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)
