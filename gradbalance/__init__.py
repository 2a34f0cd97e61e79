"""gradbalance: balance conflicting task gradients in multi-task PyTorch training.

Data flows one way: task losses → task rows (:class:`TaskGradients`) → Gramian → weights →
combined gradient → optimizer.
"""

from ._buffer import TaskGradients
from ._combiner import Combination, GradientCombiner, GramianCombiner
from ._registry import (
    PluginEntry,
    Registry,
    available,
    create,
    load_entry_points,
    options,
    plugin_entries,
    register,
)
from .combiners import IMTLG, MGDA, AlignedMTL, CAGrad, FairGrad, GradVac, Mean, NashMTL, PCGrad, Sum, UPGrad
from .errors import (
    GradbalanceError,
    NonFiniteGradientError,
    PluginConflictError,
    PluginLoadWarning,
    UnknownCombinerError,
)
from .hookspecs import hookimpl, hookspec
from ._properties import Property
from .regularizers import BregmanProximalPoint, SmoothnessRegularizer

__version__ = "0.1.0"

__all__ = [
    "AlignedMTL",
    "BregmanProximalPoint",
    "CAGrad",
    "Combination",
    "FairGrad",
    "GradVac",
    "GradbalanceError",
    "GradientCombiner",
    "GramianCombiner",
    "IMTLG",
    "MGDA",
    "Mean",
    "NashMTL",
    "NonFiniteGradientError",
    "PCGrad",
    "PluginConflictError",
    "PluginEntry",
    "PluginLoadWarning",
    "Property",
    "Registry",
    "SmoothnessRegularizer",
    "Sum",
    "TaskGradients",
    "UPGrad",
    "UnknownCombinerError",
    "available",
    "create",
    "hookimpl",
    "hookspec",
    "load_entry_points",
    "options",
    "plugin_entries",
    "register",
]
