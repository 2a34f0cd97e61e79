"""Extension points of ``minbert_tasks``: tasks, samplers and head presets from entry points.

=========================  ======================================  =========================
entry-point group          each entry point names                  registered under
=========================  ======================================  =========================
``minbert_tasks.tasks``    a :class:`~minbert_tasks.tasks.TaskSpec`  its ``name``
``minbert_tasks.samplers`` a sampler class with a ``name``          its ``name``
``minbert_tasks.heads``    a :class:`~minbert_tasks.heads.HeadConfig` the entry point's name
=========================  ======================================  =========================

The package registers its own built-ins through these same groups. A third-party distribution
adds, e.g., in its ``pyproject.toml``::

    [project.entry-points."minbert_tasks.tasks"]
    toxicity = "my_package.tasks:TOXICITY"

The lookups run on a :class:`gradbalance.plugins.Registry`, so plugins behave as gradbalance's
do: one that fails to import (or names the wrong kind of object) is skipped with a
:class:`~gradbalance.plugins.PluginLoadWarning` naming its distribution, and the rest still
load; a name that two different objects claim is unavailable (a warning at discovery, then
:class:`~gradbalance.plugins.PluginConflictError` naming both sources when it is asked for),
and every other name keeps working; an unknown name raises
:class:`~gradbalance.plugins.UnknownPluginError` listing the available ones. Discovery runs
once per process and kind; :func:`refresh` forgets the results (after installing a plugin
in-process).

If the package's own entry points are not installed (an editable install older than the
``pyproject.toml`` that declares them), the built-in tables are used in their place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradbalance.plugins import (
    PluginConflictError,
    PluginEntry,
    PluginKind,
    PluginLoadWarning,
    Registry,
    UnknownPluginError,
)

__all__ = [
    "GROUPS",
    "KINDS",
    "PluginConflictError",
    "PluginEntry",
    "PluginLoadWarning",
    "UnknownPluginError",
    "entries",
    "get_head",
    "get_sampler",
    "get_task",
    "heads",
    "refresh",
    "samplers",
    "tasks",
]


def _task_name(obj: Any, entry_point_name: str) -> str:
    from minbert_tasks.tasks import TaskSpec

    if not isinstance(obj, TaskSpec):
        raise TypeError(f"expected a TaskSpec instance, got {obj!r}")
    return obj.name


def _sampler_name(obj: Any, entry_point_name: str) -> str:
    name = getattr(obj, "name", None)
    if not isinstance(obj, type) or not isinstance(name, str) or not name:
        raise TypeError(f"expected a sampler class with a string 'name', got {obj!r}")
    if not callable(getattr(obj, "plan", None)):
        raise TypeError(f"sampler class {obj.__qualname__} has no plan() method")
    return name


def _head_name(obj: Any, entry_point_name: str) -> str:
    from minbert_tasks.heads import HeadConfig

    if not isinstance(obj, HeadConfig):
        raise TypeError(f"expected a HeadConfig instance, got {obj!r}")
    return entry_point_name


def _builtin_tasks() -> Mapping[str, Any]:
    from minbert_tasks.tasks import BUILTIN_TASKS

    return BUILTIN_TASKS


def _builtin_samplers() -> Mapping[str, Any]:
    from minbert_tasks.samplers import BUILTIN_SAMPLERS

    return BUILTIN_SAMPLERS


def _builtin_heads() -> Mapping[str, Any]:
    from minbert_tasks.heads import PRESETS

    return PRESETS


KINDS: tuple[PluginKind, ...] = (
    PluginKind("task", _task_name, group="minbert_tasks.tasks", builtins=_builtin_tasks),
    PluginKind("sampler", _sampler_name, group="minbert_tasks.samplers", builtins=_builtin_samplers),
    PluginKind("head", _head_name, group="minbert_tasks.heads", builtins=_builtin_heads),
)
"""The plugin kinds of a :class:`gradbalance.plugins.Registry`, each read from its own entry-point group."""

GROUPS: dict[str, str] = {kind.name: kind.group for kind in KINDS if kind.group is not None}
"""Plugin kind -> entry-point group."""

_registry: Registry | None = None


def _the_registry() -> Registry:
    global _registry
    if _registry is None:
        _registry = Registry(group=None, kinds=KINDS, owner="minbert_tasks")
    return _registry


def refresh() -> None:
    """Forget discovered plugins; the next lookup scans the entry points again."""
    global _registry
    _registry = None


def entries(kind: str) -> dict[str, PluginEntry]:
    """Registered objects of ``kind`` (``task``, ``sampler`` or ``head``) by name."""
    return _the_registry().entries(kind)


def tasks() -> dict[str, Any]:
    """Installed tasks: name -> :class:`~minbert_tasks.tasks.TaskSpec`."""
    return {name: e.obj for name, e in entries("task").items()}


def samplers() -> dict[str, type]:
    """Installed sampler classes by ``name``."""
    return {name: e.obj for name, e in entries("sampler").items()}


def heads() -> dict[str, Any]:
    """Installed head presets: name -> :class:`~minbert_tasks.heads.HeadConfig`."""
    return {name: e.obj for name, e in entries("head").items()}


def get_task(name: str) -> Any:
    """The task registered as ``name``; an unknown name lists the available ones."""
    return _the_registry().get(name, "task")


def get_sampler(name: str) -> type:
    """The sampler class registered as ``name``; an unknown name lists the available ones."""
    sampler: type = _the_registry().get(name, "sampler")
    return sampler


def get_head(name: str) -> Any:
    """The head preset registered as ``name``; an unknown name lists the available ones."""
    return _the_registry().get(name, "head")
