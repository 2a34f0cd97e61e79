"""The built-in plugin, registered through gradbalance's own entry point like any third party."""

from __future__ import annotations

from ._combiner import GradientCombiner
from .combiners import IMTLG, MGDA, AlignedMTL, CAGrad, FairGrad, GradVac, Mean, NashMTL, PCGrad, Sum, UPGrad
from .plugins.hookspecs import hookimpl
from .regularizers import BregmanProximalPoint, SmoothnessRegularizer


@hookimpl
def gradbalance_combiners() -> list[type[GradientCombiner]]:
    return [Sum, Mean, PCGrad, GradVac, IMTLG, MGDA, AlignedMTL, UPGrad, CAGrad, NashMTL, FairGrad]


@hookimpl
def gradbalance_regularizers() -> list[type]:
    return [SmoothnessRegularizer, BregmanProximalPoint]
