"""Aligned-MTL in Gramian space."""

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
from ._solvers import SMALL_TASKS, as_weights

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
        S, T, _ = K.shape
        eigenvalues, vectors = np.linalg.eigh(K)  # ascending
        if S == 1 and T <= SMALL_TASKS:  # one small segment: the rest in Python floats
            return as_weights(small_aligned_weights(eigenvalues[0].tolist(), vectors[0].tolist()))
        largest = eigenvalues[:, -1:]
        kept = (eigenvalues > largest * T * _RANK_EPSILON) & (largest > 0)
        smallest = np.where(kept, eigenvalues, np.inf).min(1, keepdims=True)  # λ_min kept
        scale = np.sqrt(np.where(kept, smallest, 0.0)) / np.sqrt(np.where(kept, eigenvalues, 1.0))
        # B = σ_min U Λ^{-1/2} Uᵀ over the kept eigenpairs; the weights are B 1.
        return torch.from_numpy(np.einsum("stk,sk->st", vectors, scale * vectors.sum(1)))


def small_aligned_weights(eigenvalues: list[float], vectors: list[list[float]]) -> list[float]:
    """The weights ``B 1`` of one segment from its Gramian's eigenpairs (ascending values,
    eigenvectors as columns of nested lists): :meth:`AlignedMTL.unreduced_weights`' algebra in
    Python floats, whose few dozen operations cost less than numpy's calls on ``[1, T]``."""
    T = len(eigenvalues)
    largest = eigenvalues[-1]
    kept = [largest > 0 and value > largest * T * _RANK_EPSILON for value in eigenvalues]
    if not any(kept):
        return [0.0] * T
    root_smallest = math.sqrt(min(value for value, keep in zip(eigenvalues, kept) if keep))  # σ_min
    sums = [sum([row[k] for row in vectors]) for k in range(T)]  # 1ᵀ u_k
    coefficients = [
        root_smallest / math.sqrt(value) * total if keep else 0.0
        for value, keep, total in zip(eigenvalues, kept, sums)
    ]
    return [sum([u * c for u, c in zip(row, coefficients)]) for row in vectors]
