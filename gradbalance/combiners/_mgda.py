"""MGDA's min-norm direction, solved exactly in Gramian space."""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from .._checks import reduction_field
from .._properties import Property
from .._combiner import GramianCombiner
from .._gramian import nonzero_row_weights, solve_small

# Wolfe's algorithm ends in finitely many steps in exact arithmetic; this only guards against
# rounding making it cycle.
_MAX_MAJOR_STEPS = 1000
# Tolerance of the optimality test g_j · x ≥ ‖x‖², relative to ‖g_j‖ Σ_k λ_k ‖g_k‖ (x = Σ_k λ_k g_k).
_TOLERANCE = 1e-12


@attrs.define(eq=False)
class MGDA(GramianCombiner):
    """Multiple-gradient descent in min-norm form (Désidéri 2012; Sener & Koltun, "Multi-Task
    Learning as Multi-Objective Optimization", NeurIPS 2018, eq. 3).

    The update is the shortest vector in the convex hull of the task gradients,
    ``d = Σ_t w_t g_t`` with ``w = argmin_{w ≥ 0, Σ w = 1} wᵀ K w`` on the Gramian ``K``. It is
    either zero (the tasks are Pareto-stationary: no direction improves all of them) or a
    common descent direction with ``g_t · d ≥ ‖d‖² > 0`` for every task.

    The paper approximates ``w`` with Frank-Wolfe iterations (its Alg. 2); this solves it
    exactly with Wolfe's nearest-point algorithm (Wolfe, "Finding the nearest point in a
    polytope", Math. Programming 1976), which needs only inner products of the gradients,
    i.e. the Gramian, and ends in finitely many steps. No gradient normalization: the
    paper's loss-based normalizations need the losses, which a combiner does not see.

    A zero gradient row gets weight 0 and is left out of the problem (a task that sat out the
    step, or a segment it does not touch); otherwise it would make the min-norm point zero
    and stop every other task.

    Args:
        reduction: ``"mean"`` (paper, ``Σ w = 1``) or ``"sum"`` (``Σ w = T``, the scale of
            ``sum`` and of PCGrad's default).
    """

    name: ClassVar[str] = "mgda"
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.POSITIVELY_HOMOGENEOUS,
            Property.NON_CONFLICTING,
        }
    )

    reduction: Literal["sum", "mean"] = reduction_field("mean")

    def weights(self, gramian: Tensor) -> Tensor:
        weights = nonzero_row_weights(gramian, min_norm_weights)
        return weights * gramian.shape[1] if self.reduction == "sum" else weights


def min_norm_weights(K: Tensor) -> Tensor:
    """The convex weights ``w`` minimizing ``wᵀ K w`` for a Gramian ``K`` with positive diagonal,
    by Wolfe's nearest-point algorithm: a major step adds the point that most violates
    optimality; minor steps solve for the nearest point of the support's affine hull and, while
    that point leaves the simplex, walk towards it until a weight reaches zero and drop it.
    A few ``T×T`` solves in numpy (tiny arrays: torch's per-call overhead would dominate)."""
    Kn = K.numpy() / float(K.diagonal().max())
    diagonal = np.diagonal(Kn)
    roots = np.sqrt(diagonal)
    support = [int(diagonal.argmin())]
    lam = np.ones(1)
    for _ in range(_MAX_MAJOR_STEPS):
        inner = Kn[:, support] @ lam  # g_t · x for every task
        norm2 = float(lam @ inner[support])
        j = int(inner.argmin())
        # The rounding of g_j · x is ~ε ‖g_j‖ Σ_k λ_k ‖g_k‖: relative to that, not to the largest
        # ‖g‖², or a min-norm point far shorter than the rows (a tiny row among normal ones) stops
        # early, still conflicting with a long row.
        slack = _TOLERANCE * roots[j] * float(lam @ roots[support])
        if j in support or inner[j] >= norm2 - slack:
            break
        support.append(j)
        lam = np.append(lam, 0.0)
        while True:
            mu = _affine_nearest_point(Kn[np.ix_(support, support)])
            if (mu > 0).all():
                lam = mu
                break
            # Walk from lam towards mu until the first weight reaches zero, and drop it.
            leaving = np.flatnonzero(mu <= 0)
            gap = lam[leaving] - mu[leaving]
            ratios = np.where(gap > 0, lam[leaving] / np.maximum(gap, 1e-300), 0.0)
            lam = lam + ratios.min() * (mu - lam)
            lam[leaving[ratios.argmin()]] = 0
            keep = np.flatnonzero(lam > 0)
            support = [support[i] for i in keep]
            lam = lam[keep]
    weights = np.zeros(K.shape[0])
    weights[support] = lam / lam.sum()
    return torch.from_numpy(weights).to(K.dtype)


def _affine_nearest_point(K: np.ndarray) -> np.ndarray:
    """``μ`` minimizing ``μᵀ K μ`` subject to ``Σ μ = 1`` (no sign constraint), from the bordered
    KKT system ``[[K, 1], [1ᵀ, 0]] [μ; ν] = [0; 1]``; least squares if rounding makes it
    singular."""
    m = K.shape[0]
    system = np.ones((m + 1, m + 1))
    system[:m, :m] = K
    system[m, m] = 0
    rhs = np.zeros(m + 1)
    rhs[m] = 1
    solution = solve_small(system, rhs)[:m]
    return solution / solution.sum()
