"""IMTL-G in Gramian space."""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import torch
from torch import Tensor

from .._checks import reduction_field
from .._properties import Property
from .._combiner import GramianCombiner
from .._gramian import nonzero_row_weights


# C⁺ 1 counts as zero below this fraction of the sums it is made of (float64 rounding is ~1e-16).
_CANCELLED = 1e-12


@attrs.define(eq=False)
class IMTLG(GramianCombiner):
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

    def weights(self, gramian: Tensor) -> Tensor:
        weights = nonzero_row_weights(gramian, _equal_projection_weights)
        return weights * gramian.shape[1] if self.reduction == "sum" else weights


def _equal_projection_weights(K: Tensor) -> Tensor:
    """The weights ``α`` for a Gramian ``K`` with positive diagonal (the rows' cosine form)."""
    n = K.diagonal().sqrt()
    cosines = (K / (n[:, None] * n[None, :])).clamp(-1, 1)
    inverse = torch.linalg.pinv(cosines, hermitian=True, rtol=1e-10)
    beta = inverse @ torch.ones_like(n)
    # 1 orthogonal to C's range (opposed tasks that balance out, e.g. four rows in one
    # dimension): C⁺ 1 = 0 and β is rounding noise, which the normalization below would
    # blow up into a full-size update in an arbitrary direction.
    if float(beta.abs().max()) <= _CANCELLED * float(inverse.abs().sum(1).max()):
        return torch.zeros_like(n)
    alpha = beta / n
    scale = torch.maximum(alpha.sum(), alpha.abs().sum() / len(n))
    # zero only when every task cancels out (C⁺ 1 = 0)
    return alpha / scale if scale > 0 else torch.zeros_like(alpha)
