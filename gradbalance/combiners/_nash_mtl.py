"""Nash-MTL's bargaining solution, solved exactly in Gramian space."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor

from .._combiner import GramianCombiner
from .._gramian import nonzero_row_weights
from ._mgda import min_norm_weights

# Pareto-stationary, so no bargaining solution: the hull of the unit task gradients passes
# within √this of the origin (float64 rounding of the cosine matrix leaves ~1e-16 there when
# it passes through it).
_STATIONARY = 1e-12
# Newton's method on a self-concordant function: damped steps until the Newton decrement
# falls below 1/4, then quadratic convergence; the cap only guards against rounding.
_MAX_NEWTON_STEPS = 200
# Stop once the Newton decrement squared (≈ twice the gap to the optimum of an O(T) objective)
# is at float64 rounding.
_CONVERGED = 1e-26


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
    iterations, weights refreshed every few steps) is replaced by Newton's method on ``f``,
    which is self-concordant: damped steps ``Δ/(1+λ)`` while the Newton decrement ``λ ≥ 1/4``
    (they stay in ``α > 0`` and decrease ``f`` by a fixed amount), then full steps, to float64
    rounding. Solved in cosine coordinates (``β_t = α_t ‖g_t‖``, ``C β = 1/β``), which the
    scale invariance allows, so rows of very different norms keep their accuracy.

    Edge cases: a solution exists exactly when the tasks are not Pareto-stationary (no convex
    combination of the unit gradients is zero; the unit vectors' min-norm point, found by
    :class:`MGDA`'s solver, tells); where they are, ``f`` is unbounded below, no direction helps
    every task, and the update is zero. A zero gradient row gets weight 0 and is left out (it
    would make the problem infeasible). No options: the paper's ``update_weights_every`` and
    CCP iteration count trade accuracy for solver time, which here is microseconds; its
    gradient clipping (``max_norm``) belongs to the training loop.
    """

    name: ClassVar[str] = "nash-mtl"

    def weights(self, gramian: Tensor) -> Tensor:
        return nonzero_row_weights(gramian, bargaining_weights)


def bargaining_weights(K: Tensor) -> Tensor:
    """The ``α > 0`` with ``K α = 1/α`` for a Gramian ``K`` with positive diagonal, or zeros
    where the rows are Pareto-stationary."""
    norms = np.sqrt(np.diagonal(K.numpy()))
    C = K.numpy() / np.outer(norms, norms)
    T = len(norms)
    hull = min_norm_weights(torch.from_numpy(C)).numpy()
    if float(hull @ C @ hull) <= _STATIONARY:
        return torch.zeros_like(K.diagonal())
    # Start on the ray of equal β at its best length: f(t·1) is least at t² = T / 1ᵀC1.
    beta = np.full(T, math.sqrt(T / float(C.sum())))
    previous = math.inf
    for _ in range(_MAX_NEWTON_STEPS):
        gradient = C @ beta - 1 / beta
        hessian = C + np.diag(1 / beta**2)
        step = -np.linalg.solve(hessian, gradient)
        decrement2 = float(-gradient @ step)
        # Converged, or at the rounding floor: in the full-step phase the decrement squares at
        # every step, so one that does not fall is rounding (nearly stationary tasks, where α
        # is large, reach that floor above _CONVERGED). Also stops on NaN.
        if not (decrement2 > _CONVERGED and (decrement2 >= 1 / 16 or decrement2 < previous)):
            break
        previous = decrement2
        damping = 1.0 if decrement2 < 1 / 16 else 1 / (1 + math.sqrt(decrement2))
        candidate = beta + damping * step
        if not (candidate > 0).all():  # never in exact arithmetic; keep the last iterate
            break
        beta = candidate
    return torch.from_numpy(beta / norms).to(K.dtype)
