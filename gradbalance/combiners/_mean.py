"""Mean of the task gradients."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from ._row_reduction import RowReduction


@attrs.define(eq=False)
class Mean(RowReduction):
    """Mean of the task gradients, ``d = (1/T) Σ_t g_t`` (sum with the learning rate over T)."""

    name: ClassVar[str] = "mean"
    reduce = staticmethod(torch.mean)
