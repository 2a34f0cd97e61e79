"""Built-in combiners, one module each."""

from ._aligned_mtl import AlignedMTL
from ._cagrad import CAGrad
from ._fairgrad import FairGrad
from ._gradvac import GradVac
from ._imtl_g import IMTLG
from ._mean import Mean
from ._mgda import MGDA
from ._nash_mtl import NashMTL
from ._pcgrad import PCGrad
from ._sum import Sum
from ._upgrad import UPGrad

__all__ = [
    "AlignedMTL",
    "CAGrad",
    "FairGrad",
    "GradVac",
    "IMTLG",
    "MGDA",
    "Mean",
    "NashMTL",
    "PCGrad",
    "Sum",
    "UPGrad",
]
