"""UPGrad's projections onto the dual cone, solved exactly in Gramian space."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from .._checks import reduction_field
from .._properties import Property
from .._combiner import GramianCombiner
from .._gramian import nonzero_row_weights, solve_small

# The active-set method ends in finitely many steps in exact arithmetic; this only guards
# against rounding making it cycle.
_MAX_STEPS = 1000
# A constraint g_j · y ≥ 0 counts as met down to -_TOLERANCE · ‖g_j‖ · Σ_k |u_k| ‖g_k‖ for
# y = Σ_k u_k g_k: the rounding error of computing it from the Gramian, at any row scale.
_TOLERANCE = 1e-12


@attrs.define(eq=False)
class UPGrad(GramianCombiner):
    """Unconflicting projection of gradients (Quinton & Rey, "Jacobian Descent for
    Multi-Objective Optimization", arXiv:2406.16232, 2024: ``A_UPGrad``).

    Each task gradient is projected onto the dual cone of all of them, the set of directions
    that conflict with no task, ``C = {y : g_j · y ≥ 0 for every j}``, and the projections are
    averaged: ``d = (1/T) Σ_i π_C(g_i)``. The update never conflicts with a task
    (``g_j · d ≥ 0``); a gradient that already agrees with every other one is kept as it is, so
    without conflict UPGrad is the mean. With two tasks it is PCGrad's mean.

    Gramian form: ``π_C(g_i) = Gᵀ(e_i + v)`` with ``v = argmin_{v ≥ 0} ½ vᵀKv + vᵀK e_i``, the
    projection's dual, a non-negative quadratic program on the Gramian ``K``. It is solved
    exactly by a primal active-set method (Lawson & Hanson's, "Solving Least Squares
    Problems", 1974, ch. 23, on the equivalent ``min_{v ≥ 0} ‖Gᵀ(e_i + v)‖``): a task whose
    constraint the current projection violates most joins the active set, each step solves the
    equality-constrained problem on it, and a task whose multiplier would turn negative leaves.
    That is ``T`` small ``T×T`` programs in numpy per segment, where the reference code calls a
    generic QP solver with a regularized Gramian.

    A zero gradient row has nothing to project, gets weight 0 and sets no constraint.

    Args:
        reduction: ``"mean"`` (the paper, ``1/T`` per projection) or ``"sum"`` (``T`` times it,
            the scale of ``sum``).
    """

    name: ClassVar[str] = "upgrad"
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.POSITIVELY_HOMOGENEOUS,
            Property.NON_CONFLICTING,
            Property.SUM_WITHOUT_CONFLICT,
        }
    )

    reduction: Literal["sum", "mean"] = reduction_field("mean")

    def weights(self, gramian: Tensor) -> Tensor:
        weights = nonzero_row_weights(gramian, lambda K: projection_weights(K).sum(0))
        return weights if self.reduction == "sum" else weights / gramian.shape[1]


def projection_weights(K: Tensor) -> Tensor:
    """``[T, T]``: row ``i`` holds the weights ``e_i + v`` of ``g_i``'s projection onto the
    dual cone of the rows, for a Gramian ``K`` with positive diagonal."""
    Kn = K.numpy() / float(K.diagonal().max())
    rows = [np.eye(len(Kn))[i] + _dual_multipliers(Kn, i) for i in range(len(Kn))]
    return torch.from_numpy(np.stack(rows)).to(K.dtype)


def _dual_multipliers(K: np.ndarray, i: int) -> np.ndarray:
    """``v ≥ 0`` minimizing ``½ vᵀKv + vᵀK e_i``: ``g_i``'s projection, with each constraint
    met down to its rounding at the current projection."""
    norms = np.sqrt(np.diagonal(K))
    return cone_multipliers(K, np.eye(len(K))[i], lambda v: _TOLERANCE * norms * (norms[i] + norms @ v))


def cone_multipliers(K: np.ndarray, x: np.ndarray, slack: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``v ≥ 0`` minimizing ``½ vᵀKv + vᵀK x`` on a Gramian ``K``: ``Gᵀ(x + v)`` is then the
    projection of ``Gᵀx`` onto the dual cone ``{y : G y ≥ 0}``. Lawson & Hanson's active-set
    method. The gradient ``K(x + v)`` is the vector of constraint values ``g_j · y`` at the
    current projection, so the optimality test reads: every constraint met (down to
    ``-slack(v)``), and tight wherever ``v_j > 0``."""
    T = len(K)
    v = np.zeros(T)
    passive: list[int] = []
    for _ in range(_MAX_STEPS):
        constraint = K @ (x + v)
        allowance = slack(v)
        violated = [j for j in range(T) if j not in passive and constraint[j] < -allowance[j]]
        if not violated:
            break
        entering = min(violated, key=lambda j: constraint[j])
        passive.append(entering)
        z = _equality_solution(K, x, passive)
        if z[entering] <= 0:  # only rounding can do this: no further progress to make
            passive.pop()
            break
        while not (z[passive] > 0).all():
            # Walk from v towards z until the first multiplier reaches zero, and drop it.
            leaving = [j for j in passive if z[j] <= 0]
            steps = [v[j] / max(v[j] - z[j], 1e-300) for j in leaving]
            v = v + min(steps) * (z - v)
            v[leaving[int(np.argmin(steps))]] = 0
            passive = [j for j in passive if v[j] > 0]
            z = _equality_solution(K, x, passive)
        v = z
    return v


def _equality_solution(K: np.ndarray, x: np.ndarray, passive: list[int]) -> np.ndarray:
    """The minimizer with ``v_j = 0`` off ``passive`` and no sign constraint on it: the
    projection of ``Gᵀx`` onto the subspace orthogonal to the passive rows."""
    z = np.zeros(len(K))
    if passive:
        z[passive] = solve_small(K[np.ix_(passive, passive)], -K[passive] @ x)
    return z


