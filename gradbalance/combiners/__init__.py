"""Built-in combiners, one module each."""

from ._gradvac import GradVac
from ._imtl_g import IMTLG
from ._mean import Mean
from ._pcgrad import PCGrad
from ._sum import Sum

__all__ = ["GradVac", "IMTLG", "Mean", "PCGrad", "Sum"]
