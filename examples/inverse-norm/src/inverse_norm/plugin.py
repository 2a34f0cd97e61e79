"""The combiner and the hook that registers it."""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import torch
from torch import Tensor

import gradbalance


@attrs.frozen
class InverseNorm(gradbalance.GramianCombiner):
    """Weights each task by the inverse norm of its gradient, so every task's contribution to
    the update has the same length (a zero gradient gets weight 0).

    Args:
        reduction: ``"sum"`` (weights ``1/‖g_t‖``) or ``"mean"`` (divided by the task count).
    """

    name: ClassVar[str] = "inverse-norm"
    # Every task contributes its unit vector: reordering the tasks or rescaling one changes
    # nothing (checked by gradbalance.testing, see tests/).
    properties: ClassVar[frozenset[gradbalance.Property]] = frozenset(
        {gradbalance.Property.PERMUTATION_EQUIVARIANT, gradbalance.Property.TASK_SCALE_INVARIANT}
    )

    reduction: Literal["sum", "mean"] = attrs.field(
        default="sum", validator=attrs.validators.in_(("sum", "mean"))
    )

    def weights(self, gramian: Tensor) -> Tensor:
        """``[S, T, T]`` float64 Gramians -> ``[S, T]`` task weights."""
        norms = gramian.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
        w = torch.where(norms > 0, 1 / norms.clamp_min(1e-300), 0.0)
        return w / w.shape[-1] if self.reduction == "mean" else w


@gradbalance.hookimpl
def gradbalance_combiners() -> list[type]:
    return [InverseNorm]
