"""What ``sum`` and ``mean`` share: one reduction over the task rows, columnwise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from .._checks import first_nonfinite_row
from .._combiner import Combination, GradientCombiner
from .._properties import Property
from ..errors import NonFiniteGradientError


class RowReduction(GradientCombiner, abstract=True):
    """A combiner that reduces the task rows with one torch reduction (:attr:`reduce`): one pass
    over ``G``, the same at every column, so it runs on column shards unchanged; a NaN/Inf
    in the result is traced to its task row."""

    columnwise: ClassVar[bool] = True
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.POSITIVELY_HOMOGENEOUS,
            Property.SUM_WITHOUT_CONFLICT,
        }
    )
    #: ``torch.sum`` or ``torch.mean``: ``reduce(G, 0, out=out)``.
    reduce: ClassVar[Callable[..., Tensor]]

    def combine_with_info(
        self, G: Tensor, segments: Sequence[int] | None = None, *, out: Tensor | None = None
    ) -> Combination:
        self._prepare(G, segments, out)
        direction = type(self).reduce(G, 0, out=out)
        _check_sum_finite(G, direction)
        return Combination(direction)


def _check_sum_finite(G: Tensor, direction: Tensor) -> None:
    # NaN/Inf survive a sum, so one scalar reduction over the result (a quarter of the work of
    # scanning G at T=3) tells whether any row needs a closer look.
    if not bool(torch.isfinite(direction.sum(dtype=torch.float32))):
        task = first_nonfinite_row(G)
        if task is not None:
            raise NonFiniteGradientError(task)
