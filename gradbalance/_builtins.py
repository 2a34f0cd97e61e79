"""The built-in plugin, registered through gradbalance's own entry point like any third party."""

from __future__ import annotations

from .combiners import GradVac, Mean, PCGrad, Sum
from .hookspecs import hookimpl


@hookimpl
def gradbalance_combiners() -> list[type]:
    return [Sum, Mean, PCGrad, GradVac]
