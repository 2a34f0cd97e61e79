"""The plugin machinery behind :func:`gradbalance.create`, for plugin authors and packages with
plugin kinds of their own.

A gradbalance plugin is a module in the entry-point group ``gradbalance`` whose functions,
marked ``@gradbalance.hookimpl``, implement the hooks of :mod:`gradbalance.plugins.hookspecs`.
A :class:`Registry` holds objects by kind and name: the process-wide
:data:`default_registry` holds combiners and regularizers; minbert_tasks builds one for its
tasks, samplers and head presets, whose entry-point groups name one object per entry point
(:class:`PluginKind`). Every registry treats plugins alike: a plugin that fails to load costs
only itself (a :class:`PluginLoadWarning` naming its distribution), a name claimed twice
raises :class:`PluginConflictError` naming both sources when asked for, and an unknown name
raises :class:`UnknownPluginError` listing the available ones.
"""

from ..errors import PluginConflictError, PluginLoadWarning, UnknownPluginError
from ._default import default_registry, plugin_entries
from ._kinds import PluginEntry, PluginKind
from ._loading import ENTRY_POINT_GROUP, load_entry_points
from ._registry import Registry
from .hookspecs import hookspec

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginConflictError",
    "PluginEntry",
    "PluginKind",
    "PluginLoadWarning",
    "Registry",
    "UnknownPluginError",
    "default_registry",
    "hookspec",
    "load_entry_points",
    "plugin_entries",
]
