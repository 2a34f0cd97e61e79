"""Plain sum of the task gradients: what ``sum(losses).backward()`` computes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs
import torch
from torch import Tensor

from .._combiner import Combination, GradientCombiner, _check_sum_finite
from .._properties import Property


@attrs.define(eq=False)
class Sum(GradientCombiner):
    """Sum of the task gradients, ``d = Σ_t g_t`` — the unbalanced baseline.

    One pass over ``G``; NaN/Inf rows are reported by task index.
    """

    name: ClassVar[str] = "sum"
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
        direction = torch.sum(G, 0, out=out) if out is not None else G.sum(0)
        _check_sum_finite(G, direction)
        return Combination(direction)
