"""Plain sum of the task gradients: what ``sum(losses).backward()`` computes."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from ._row_reduction import RowReduction


@attrs.define(eq=False)
class Sum(RowReduction):
    """Sum of the task gradients, ``d = Σ_t g_t`` — the unbalanced baseline.

    One pass over ``G``; NaN/Inf rows are reported by task index.
    """

    name: ClassVar[str] = "sum"
    reduce = staticmethod(torch.sum)
