"""IMTL-G in Gramian space."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from .._checks import reduction_field
from .._combiner import GramianCombinerWithReduction
from .._properties import Property
from ._solvers import as_weights, positive_definite_solve, small_gramian

# Eigenvalues of the cosine matrix below this times the largest count as zero in C⁺.
_PINV_RTOL = 1e-10
# C⁺ 1 counts as zero below this fraction of the sums it is made of (float64 rounding is ~1e-16).
_CANCELLED = 1e-12
# The Python-float step solves C β = 1 only while every elimination pivot of C exceeds this
# (condition ≲ T·10⁴, so it agrees with the eigendecomposition's C⁺ 1 to ~1e-12); else numpy.
_SMALL_PIVOT = 1e-4


@attrs.define(eq=False)
class IMTLG(GramianCombinerWithReduction):
    """Impartial gradient balancing, IMTL-G (Liu et al., "Towards Impartial Multi-task
    Learning", ICLR 2021, Sec. 3.2, eq. 7-9).

    Finds the update ``g = Σ_t α_t g_t`` whose projections onto every task's unit gradient
    ``u_t = g_t / ‖g_t‖`` are equal, ``g·u_1 = g·u_t`` for all ``t``, with ``Σ_t α_t = 1``:
    every task improves at the same first-order rate whatever its gradient's scale, so a task
    whose loss happens to have large gradients (an MSE on a 0-5 scale, say) cannot set the
    direction alone.

    Gramian form: write ``α_t = β_t / ‖g_t‖`` so ``g = Σ_t β_t u_t``; equal projections are
    ``C β = λ 1`` with ``C`` the tasks' cosine matrix, so ``β ∝ C⁺ 1`` (the paper's closed form
    ``α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹`` when ``C`` is invertible), then scaled to ``Σ_t α_t = 1``.

    Edge cases, all deliberate: a zero gradient row gets weight 0 and is left out of ``C``;
    a singular ``C`` (parallel or antiparallel tasks) takes the least-squares solution
    ``C⁺ 1``, so exactly opposed tasks cancel to a zero update instead of dividing by zero.
    The paper's ``Σ α = 1`` divides by ``Σ_t β_t/‖g_t‖``, which negative weights (possible
    from three tasks on) can bring near zero or below, blowing the update up or flipping it
    to ascend every task; the weights are ``α̃ / max(Σ α̃, Σ|α̃| / T)`` with ``α̃ = β/‖g‖``,
    which is the paper's ``Σ α = 1`` whenever ``Σ α̃ ≥ Σ|α̃| / T`` (always when no weight is
    negative, so always for two tasks) and ``Σ|α| = T`` otherwise: continuous, bounded, and
    the common projection stays positive (``T`` there counts the tasks with a non-zero
    gradient). The result has the scale of a mean of the task
    gradients (``reduction="sum"`` multiplies it by ``T``).

    Args:
        reduction: ``"mean"`` (paper, ``Σ α = 1``) or ``"sum"`` (``Σ α = T``, the scale of
            ``sum`` and of PCGrad's default).
    """

    name: ClassVar[str] = "imtl-g"
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.POSITIVELY_HOMOGENEOUS,
            Property.TASK_SCALE_INVARIANT,
        }
    )

    reduction: Literal["sum", "mean"] = reduction_field("mean")
    unreduced: ClassVar[Literal["sum", "mean"]] = "mean"  # Σ α = 1

    def unreduced_weights(self, gramian: Tensor) -> Tensor:
        small = small_gramian(gramian)
        if small is not None:  # one segment of a few tasks: Python floats beat numpy's calls
            weights = small_equal_projection_weights(small)
            if weights is not None:
                return as_weights(weights)
        return torch.from_numpy(equal_projection_weights(gramian.numpy()))


def equal_projection_weights(K: np.ndarray) -> np.ndarray:
    """The weights ``α [S, T]`` for Gramians ``K [S, T, T]``, batched over segments in numpy. A
    zero row gets a zero row and column in ``C``, which ``C⁺`` keeps zero: the same as leaving
    it out."""
    norms = np.sqrt(np.maximum(K.diagonal(0, 1, 2), 0.0))
    inverse_norms = np.divide(1.0, norms, out=np.zeros(norms.shape), where=norms > 0)
    cosines = (K * inverse_norms[:, :, None] * inverse_norms[:, None, :]).clip(-1.0, 1.0)
    # C⁺ 1 from the eigendecomposition, eigenvalues below 1e-10 of the largest counting as zero
    # (torch.linalg.pinv's hermitian rule).
    values, vectors = np.linalg.eigh(cosines)
    keep = np.abs(values) > _PINV_RTOL * np.abs(values).max(1, keepdims=True)
    inverse_values = np.divide(1.0, values, out=np.zeros(values.shape), where=keep)
    pinv = (vectors * inverse_values[:, None, :]) @ vectors.transpose(0, 2, 1)
    beta = pinv.sum(2)
    # 1 orthogonal to C's range (opposed tasks that balance out, e.g. four rows in one
    # dimension): C⁺ 1 = 0 and β is rounding noise, which the normalization below would blow
    # up into a full-size update in an arbitrary direction.
    cancelled = np.abs(beta).max(1) <= _CANCELLED * np.abs(pinv).sum(2).max(1)
    alpha = np.where(cancelled[:, None], 0.0, beta * inverse_norms)
    active = np.maximum((norms > 0).sum(1), 1)
    scale = np.maximum(alpha.sum(1), np.abs(alpha).sum(1) / active)
    # zero only when every task cancels out (C⁺ 1 = 0)
    return np.divide(alpha, scale[:, None], out=np.zeros(alpha.shape), where=scale[:, None] > 0)


def small_equal_projection_weights(K: list[list[float]]) -> list[float] | None:
    """:func:`equal_projection_weights` for one Gramian ``K`` as nested lists in Python floats,
    ``C β = 1`` solved by elimination; ``None`` (the numpy path decides) for a zero row or a
    cosine matrix with a pivot below :data:`_SMALL_PIVOT`, where ``C⁺`` needs its threshold."""
    T = len(K)
    if not min(K[t][t] for t in range(T)) > 0:
        return None
    inverse = [1 / math.sqrt(K[t][t]) for t in range(T)]
    C = [[min(max(K[i][j] * inverse[i] * inverse[j], -1.0), 1.0) for j in range(T)] for i in range(T)]
    beta = positive_definite_solve(C, [1.0] * T, _SMALL_PIVOT)
    if beta is None:
        return None
    alpha = [b * n for b, n in zip(beta, inverse)]
    scale = max(sum(alpha), sum(abs(a) for a in alpha) / T)  # > 0: C⁻¹ 1 is not zero
    return [a / scale for a in alpha]
