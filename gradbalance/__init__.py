"""gradbalance: balance conflicting task gradients in multi-task PyTorch training.

Data flows one way: task losses → task rows (:class:`TaskGradients`) → Gramian → weights →
combined gradient → optimizer.

The top level holds what a training loop and a plugin author use; the plugin machinery
(:class:`~gradbalance.plugins.Registry`, entry-point loading, plugin errors and warnings) is
in :mod:`gradbalance.plugins`.
"""

from ._buffer import TaskGradients
from ._combiner import Combination, GradientCombiner, GramianCombiner
from ._properties import Property
from .combiners import IMTLG, MGDA, AlignedMTL, CAGrad, FairGrad, GradVac, Mean, NashMTL, PCGrad, Sum, UPGrad
from .errors import GradbalanceError, NonFiniteGradientError, UnknownCombinerError
from .plugins._default import available, create, options, register
from .plugins.hookspecs import hookimpl
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
    "Property",
    "SmoothnessRegularizer",
    "Sum",
    "TaskGradients",
    "UPGrad",
    "UnknownCombinerError",
    "available",
    "create",
    "hookimpl",
    "options",
    "register",
]

# Names that were top-level before the plugin machinery moved to gradbalance.plugins.
_MOVED = {
    "PluginConflictError": "gradbalance.plugins.PluginConflictError",
    "PluginEntry": "gradbalance.plugins.PluginEntry",
    "PluginLoadWarning": "gradbalance.plugins.PluginLoadWarning",
    "Registry": "gradbalance.plugins.Registry",
    "hookspec": "gradbalance.plugins.hookspec",
    "hookspecs": "gradbalance.plugins.hookspecs",
    "load_entry_points": "gradbalance.plugins.load_entry_points",
    "plugin_entries": "gradbalance.plugins.plugin_entries",
}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        raise AttributeError(f"gradbalance.{name} is now {_MOVED[name]}")
    raise AttributeError(f"module 'gradbalance' has no attribute {name!r}")
