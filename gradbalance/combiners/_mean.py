"""Mean of the task gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs
import torch
from torch import Tensor

from .._combiner import Combination, GradientCombiner, _check_sum_finite
from .._properties import Property


@attrs.define(eq=False)
class Mean(GradientCombiner):
    """Mean of the task gradients, ``d = (1/T) Σ_t g_t`` (sum with the learning rate over T)."""

    name: ClassVar[str] = "mean"
    columnwise: ClassVar[bool] = True
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.POSITIVELY_HOMOGENEOUS,
            Property.SUM_WITHOUT_CONFLICT,
        }
    )

    def combine_with_info(
        self, G: Tensor, segments: Sequence[int] | None = None, *, out: Tensor | None = None
    ) -> Combination:
        self._prepare(G, segments, out)
        direction = torch.mean(G, 0, out=out) if out is not None else G.mean(0)
        _check_sum_finite(G, direction)
        return Combination(direction)
