"""MGDA's min-norm direction, solved exactly in Gramian space."""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import torch
from torch import Tensor

from .._checks import reduction_field
from .._combiner import GramianCombinerWithReduction
from .._properties import Property
from ._solvers import (
    as_weights,
    batched_min_norm_weights,
    min_norm_weights,
    nonzero_row_weights,
    small_gramian,
    small_min_norm_weights,
    two_task_min_norm_weights,
)


@attrs.define(eq=False)
class MGDA(GramianCombinerWithReduction):
    """Multiple-gradient descent in min-norm form (Désidéri 2012; Sener & Koltun, "Multi-Task
    Learning as Multi-Objective Optimization", NeurIPS 2018, eq. 3).

    The update is the shortest vector in the convex hull of the task gradients,
    ``d = Σ_t w_t g_t`` with ``w = argmin_{w ≥ 0, Σ w = 1} wᵀ K w`` on the Gramian ``K``. It is
    either zero (the tasks are Pareto-stationary: no direction improves all of them) or a
    common descent direction with ``g_t · d ≥ ‖d‖² > 0`` for every task.

    The paper approximates ``w`` with Frank-Wolfe iterations (its Alg. 2); this solves it
    exactly with Wolfe's nearest-point algorithm (Wolfe, "Finding the nearest point in a
    polytope", Math. Programming 1976), which needs only inner products of the gradients,
    i.e. the Gramian, and ends in finitely many steps. With two tasks its steps are written
    out (:func:`two_task_min_norm_weights`, every segment at once). No gradient normalization:
    the paper's loss-based normalizations need the losses, which a combiner does not see.

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
    unreduced: ClassVar[Literal["sum", "mean"]] = "mean"  # Σ w = 1

    def unreduced_weights(self, gramian: Tensor) -> Tensor:
        if gramian.shape[1] == 2:
            return torch.from_numpy(two_task_min_norm_weights(gramian.numpy()))
        small = small_gramian(gramian)
        if small is not None and min(small[t][t] for t in range(len(small))) > 0:
            weights = small_min_norm_weights(small)  # in Python floats: numpy's calls cost more
            if weights is not None:
                return as_weights(weights)
        if gramian.shape[0] == 1:  # one problem: the sequential solver has fewer calls per step
            return nonzero_row_weights(gramian, min_norm_weights)
        K = gramian.numpy()
        return torch.from_numpy(batched_min_norm_weights(K, K.diagonal(0, 1, 2) > 0))
