"""Nash-MTL's bargaining solution, solved exactly in Gramian space."""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
from torch import Tensor

from .._combiner import GramianCombiner
from .._properties import Property
from ._solvers import (
    batched_fair_weights,
    batched_nonzero_row_weights,
    two_task_bargaining_weights,
    with_two_task_form,
)


@attrs.define(eq=False)
class NashMTL(GramianCombiner):
    """Nash-MTL (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task
    Learning as a Bargaining Game", ICML 2022, Theorem 5.1 and eq. 2).

    The update is the Nash bargaining solution among the tasks: the ``d`` in a ball that
    maximizes ``Σ_t log(g_t · d)``, the product of every task's progress. Theorem 5.1: it is
    ``d = Σ_t α_t g_t`` with ``α > 0`` solving ``K α = 1 / α`` elementwise (``K`` the Gramian),
    so every task progresses, ``g_t · d = 1 / α_t > 0``, and ``‖d‖² = αᵀ K α = T``: the step's
    length is fixed, its direction bargained. Scaling one task's gradient by ``c`` scales its
    ``α_t`` by ``1/c`` and leaves ``d`` unchanged (the bargaining axiom of scale invariance).

    Solver. ``K α = 1/α`` is the stationarity condition of the strictly convex
    ``f(α) = ½ αᵀ K α − Σ_t log α_t`` (the log barrier makes it so even for singular ``K``),
    so the paper's sequence of convex approximations (CCP through cvxpy, a fixed number of
    iterations, weights refreshed every few steps) is replaced by Newton's method to float64
    rounding, in cosine coordinates (``β_t = α_t ‖g_t‖``, ``C β = 1/β``), which the scale
    invariance allows, so rows of very different norms keep their accuracy: steps in
    ``log β`` on every segment at once from equal weights (3-4 ``T × T`` solves), and Newton
    on ``f`` with a backtracking line search for a segment they leave short of its rounding.
    The solver is :class:`FairGrad`'s at ``alpha=1``
    (proportional fairness): the same update, kept under its own name and paper. With two
    tasks ``C β = 1/β`` is symmetric and solved in closed form, ``β₁ = β₂ = (1 + ρ)^(−1/2)`` for
    the cosine ``ρ`` (``two_task_bargaining_weights``, every segment at once; the general
    solver near exactly opposed tasks).

    Edge cases: a solution exists exactly when the tasks are not Pareto-stationary (no convex
    combination of the unit gradients is zero; the unit vectors' min-norm point, found by
    :class:`MGDA`'s solver, tells); where they are, ``f`` is unbounded below, no direction helps
    every task, and the update is zero. A zero gradient row gets weight 0 and is left out (it
    would make the problem infeasible). No options: the paper's ``update_weights_every`` and
    CCP iteration count trade accuracy for solver time, which here is microseconds; its
    gradient clipping (``max_norm``) belongs to the training loop.
    """

    name: ClassVar[str] = "nash-mtl"
    # The bargaining solution conflicts with no task (g_t · d = 1/α_t > 0), but the solver can
    # stall on nearly opposed tasks in few dimensions (test_nash_mtl.py, NEARLY_OPPOSED), so
    # NON_CONFLICTING is not declared.
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.TASK_SCALE_INVARIANT,
        }
    )

    def weights(self, gramian: Tensor) -> Tensor:
        return with_two_task_form(
            gramian, two_task_bargaining_weights, bargaining_weights, batched_nonzero_row_weights
        )


def bargaining_weights(K: np.ndarray) -> np.ndarray:
    """``[S, T]``: the ``α > 0`` with ``K α = 1/α`` for each Gramian of ``K [S, T, T]`` with
    positive diagonal, or zeros where its rows are Pareto-stationary: FairGrad's allocation at
    fairness exponent 1, every segment at once."""
    return batched_fair_weights(K, 1.0)
