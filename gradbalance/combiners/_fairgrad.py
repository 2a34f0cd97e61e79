"""FairGrad's α-fair allocation, solved exactly in Gramian space (Nash-MTL is α = 1)."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
from torch import Tensor

from .._combiner import GramianCombiner
from .._properties import Property
from ._solvers import (
    batched_fair_weights,
    batched_nonzero_row_weights,
    two_task_bargaining_weights,
    with_two_task_form,
)


def _check_alpha(instance: object, _attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{type(instance).__name__} alpha must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{type(instance).__name__} alpha must be a finite number > 0, got {value!r}")


@attrs.define(eq=False)
class FairGrad(GramianCombiner):
    """FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024: the
    α-fair problem and the KKT system it is solved through).

    The update shares progress among the tasks like a resource under α-fairness (Mo & Walrand
    2000): the ``d`` in a ball maximizing ``Σ_t u_α(g_t · d)`` with ``u_α(x) = x^(1−α)/(1−α)``
    (``log x`` at ``α = 1``). Its KKT conditions give ``d = Σ_t w_t g_t`` with ``w > 0`` solving
    ``K w = w^(−1/α)`` elementwise (``K`` the Gramian), so every task progresses,
    ``g_t · d = w_t^(−1/α) > 0``, and a task with less progress gets more weight.

    - ``α = 1`` is proportional fairness, Nash-MTL's bargaining solution (:class:`NashMTL`, which
      is this with ``alpha=1``): scaling one task's gradient leaves ``d`` unchanged.
    - ``α → 0`` approaches the sum (utilitarian: total progress); ``α → ∞`` approaches max-min
      fairness (the worst task's progress, as MGDA and CAGrad's inner problem).
    - For ``α ≠ 1`` the allocation depends on the gradients' scale: multiplying every row by
      ``c`` multiplies ``d`` by ``c^((1−α)/(1+α))``, and a task whose loss is on a larger scale
      counts as progressing more.

    Solver. ``K w = w^(−1/α)`` is the stationarity condition of the strictly convex
    ``f(β) = ½ βᵀ C β − Σ_t c_t ∫ β_t^(−1/α)`` in cosine coordinates (``β_t = w_t ‖g_t‖``,
    ``C`` the cosine matrix, ``c_t = ‖g_t‖^(1/α − 1)``), so the paper's generic least-squares
    solve (scipy, from ``w = 1/T``) is replaced by exact solves to float64 rounding:

    - cold: Newton's method on the equations in ``log β``, every segment at once, from
      equal weights at their best length, a segment kept once each equation holds to the
      rounding of its own terms and its hull is clearly off the origin (3-5 ``T × T`` solves);
      a segment it leaves short gets Newton's method on ``f`` with a backtracking line search,
      then Newton in ``log β`` to the same test, alone;
    - for ``α ≠ 1``, the cold solve while the ``c_t`` span at most ``e^30``, kept if every
      equation then holds to its rounding; otherwise continuation: the
      ``α = 1`` solution, then ``α`` moved by a factor of at most 1.25 per stage, each stage's
      Newton-in-``log β`` started from the last (``c`` spans hundreds of orders of magnitude
      when norms are 1e25 apart and ``α`` is far from 1, where a cold start can stall);
    - tasks with the same direction share their equations' left side, so each such group is
      solved as one task (``c = (Σ c_t^α)^(1/α)``) and split after (``β_t ∝ c_t^α``).

    One segment of up to 4 tasks takes the steps in Python floats, where numpy's per-call
    overhead would cost more than the arithmetic. ~25 µs for one segment at ``T = 3``, ~55 µs
    at ``T = 8`` (``α = 1``; ~30 and ~65 µs at ``α = 2``; one thread; 20 segments ~2.5x one); a
    segment handed to the line-search solver ~0.2 ms more, the continuation several times that.
    Two tasks at ``α = 1``: closed form, ``β₁ = β₂ = (1 + ρ)^(−1/2)`` for the cosine ``ρ``
    (:func:`two_task_bargaining_weights`, every segment at once); at other ``α`` the two
    equations are not symmetric and the solver runs.

    Accuracy: the tests hold every equation to its rounding for ``α`` from 0.25 to 8, with norms
    up to 1e25 apart at ``α = 30``. At extreme exponents with widely spread norms (``α ≤ 0.02``
    with norms 1e10 apart, ``α ≥ 20`` with norms 1e20 apart) the progress ``w_t^(−1/α)`` spans
    more than float64 resolves and the weights can be far off (measured: a weight 7x its
    equation's at ``α = 0.01``, an equation off by a factor e^10 at ``α = 20``).

    Edge cases: a solution exists exactly when the tasks are not Pareto-stationary (no convex
    combination of the unit gradients is zero; the unit vectors' min-norm point, found by
    :class:`MGDA`'s solver, tells); where they are, no direction helps every task and the update
    is zero. A zero gradient row gets weight 0 and is left out (it would make the problem
    infeasible). The official code multiplies ``d`` by ``T`` and clips its norm; both are
    learning-rate matters left to the training loop.

    Args:
        alpha: the fairness exponent ``α > 0``; 1 (proportional fairness) by default, as in
            the paper's code (whose quantum-chemistry script runs 2).
    """

    name: ClassVar[str] = "fairgrad"
    # The bargaining solution conflicts with no task (g_t · d = 1/α_t > 0), but the solver can
    # stall on nearly opposed tasks in few dimensions (test_nash_mtl.py, NEARLY_OPPOSED), so
    # NON_CONFLICTING is not declared.
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
        }
    )

    alpha: float = attrs.field(default=1.0, validator=_check_alpha)

    def weights(self, gramian: Tensor) -> Tensor:
        alpha = float(self.alpha)
        if alpha == 1.0:
            return with_two_task_form(
                gramian,
                two_task_bargaining_weights,
                lambda K: batched_fair_weights(K, 1.0),
                batched_nonzero_row_weights,
            )
        return batched_nonzero_row_weights(gramian, lambda K: batched_fair_weights(K, alpha))
