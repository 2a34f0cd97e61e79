"""Aligned-MTL in Gramian space."""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from .._checks import reduction_field
from .._combiner import GramianCombinerWithReduction
from .._properties import Property

# Eigenvalues of K below this times T times the largest are treated as zero: the reference
# code's threshold (float32 machine epsilon), so directions whose singular value is below
# sqrt(T * 1.2e-7) of the largest (6e-4 at T = 3) count as rank deficiency, not as a tiny σ_min.
_RANK_EPSILON = float(np.finfo(np.float32).eps)


@attrs.define(eq=False)
class AlignedMTL(GramianCombinerWithReduction):
    """Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023, Sec. 4, Alg. 1).

    Replaces the task gradients by an aligned set with condition number one: with the thin
    SVD ``G = U Σ Vᵀ`` the aligned gradients are ``Ĝ = σ_min U Vᵀ``, every principal direction
    rescaled to the smallest singular value, so no task's gradient dominates by magnitude and
    no pair cancels. The update is ``Σ_t ω_t ĝ_t``.

    Gramian form (as in the paper's algorithm): ``K = G Gᵀ = U Λ Uᵀ``, ``Ĝ = B G`` with
    ``B = σ_min U Λ^{-1/2} Uᵀ``, so the task weights are ``B ω`` and ``σ_min = √λ_min``.
    Eigenvalues below ``T · ε_float32 · λ_max`` count as zero (the reference code's rank
    threshold) and are left out of ``B`` and of ``σ_min``; a zero gradient row gets weight 0.

    Args:
        reduction: ``"sum"`` (``ω = 1``, the paper's code) or ``"mean"`` (``ω = 1/T``).
    """

    name: ClassVar[str] = "aligned-mtl"
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.POSITIVELY_HOMOGENEOUS,
        }
    )

    reduction: Literal["sum", "mean"] = reduction_field("sum")
    unreduced: ClassVar[Literal["sum", "mean"]] = "sum"  # ω = 1

    def unreduced_weights(self, gramian: Tensor) -> Tensor:
        # Batched over segments in numpy (tiny arrays: torch's per-op dispatch would dominate).
        K = gramian.numpy()
        T = K.shape[1]
        eigenvalues, vectors = np.linalg.eigh(K)  # ascending
        largest = eigenvalues[:, -1:]
        kept = (eigenvalues > largest * T * _RANK_EPSILON) & (largest > 0)
        smallest = np.where(kept, eigenvalues, np.inf).min(1, keepdims=True)  # λ_min kept
        scale = np.sqrt(np.where(kept, smallest, 0.0)) / np.sqrt(np.where(kept, eigenvalues, 1.0))
        # B = σ_min U Λ^{-1/2} Uᵀ over the kept eigenpairs; the weights are B 1.
        return torch.from_numpy(np.einsum("stk,sk->st", vectors, scale * vectors.sum(1)))
