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

Each entry point is loaded on its own: one that fails to import (or names the wrong kind of
object) is skipped with a :class:`~gradbalance.plugins.PluginLoadWarning` naming its distribution, and
the rest still load. Two different objects claiming one name raise
:class:`~gradbalance.plugins.PluginConflictError` naming both sources. Discovery runs once per process
and kind; :func:`refresh` forgets the results (after installing a plugin in-process).

If the package's own entry points are not installed (an editable install older than the
``pyproject.toml`` that declares them), the built-in tables are used in their place.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import attrs

from gradbalance.plugins import PluginConflictError, PluginLoadWarning, load_entry_points

__all__ = [
    "GROUPS",
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

#: Plugin kind -> entry-point group.
GROUPS: dict[str, str] = {
    "task": "minbert_tasks.tasks",
    "sampler": "minbert_tasks.samplers",
    "head": "minbert_tasks.heads",
}
_OWN_PACKAGE = "minbert_tasks"
_BUILTIN_SOURCE = "minbert_tasks (built-in)"


class UnknownPluginError(KeyError):
    """No installed task / sampler / head preset has the requested name."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@attrs.frozen
class PluginEntry:
    """One registered object, its registry ``name`` and ``kind``, and where it came from."""

    name: str
    kind: str
    obj: Any
    source: str


_cache: dict[str, dict[str, PluginEntry]] = {}


def refresh() -> None:
    """Forget discovered plugins; the next lookup scans the entry points again."""
    _cache.clear()


def entries(kind: str) -> dict[str, PluginEntry]:
    """Registered objects of ``kind`` (``task``, ``sampler`` or ``head``) by name."""
    if kind not in GROUPS:
        raise ValueError(f"unknown plugin kind {kind!r}; expected one of {', '.join(GROUPS)}")
    if kind not in _cache:
        _cache[kind] = _discover(kind)
    return dict(_cache[kind])


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
    return _get("task", name)


def get_sampler(name: str) -> type:
    """The sampler class registered as ``name``; an unknown name lists the available ones."""
    return _get("sampler", name)  # type: ignore[no-any-return]


def get_head(name: str) -> Any:
    """The head preset registered as ``name``; an unknown name lists the available ones."""
    return _get("head", name)


def _get(kind: str, name: str) -> Any:
    found = entries(kind)
    if name not in found:
        raise UnknownPluginError(
            f"no {kind} named {name!r}; available: {', '.join(sorted(found)) or 'none'}"
        )
    return found[name].obj


# --------------------------------------------------------------------------- discovery


def _discover(kind: str) -> dict[str, PluginEntry]:
    eps = list(importlib.metadata.entry_points(group=GROUPS[kind]))
    found: dict[str, PluginEntry] = {}
    if not any(_module_of(ep).split(".")[0] == _OWN_PACKAGE for ep in eps):
        for name, obj in _builtins(kind).items():
            _add(found, PluginEntry(name, kind, obj, _BUILTIN_SOURCE))
    loaded = load_entry_points(
        GROUPS[kind],
        lambda ep, obj: (_check(kind, obj, ep.name), obj),
        owner="minbert_tasks",
        what=f"{kind} plugin",
    )
    for ep, dist, (name, obj) in loaded:
        _add(found, PluginEntry(name, kind, obj, f"{dist} ({ep.value})"))
    return found


def _module_of(ep: importlib.metadata.EntryPoint) -> str:
    return ep.value.split(":")[0].strip()


def _add(found: dict[str, PluginEntry], entry: PluginEntry) -> None:
    other = found.get(entry.name)
    if other is not None:
        if other.obj is entry.obj:  # one distribution seen twice on sys.path
            return
        raise PluginConflictError(
            f"two {entry.kind}s are named {entry.name!r}: one from {other.source}, one from "
            f"{entry.source}; uninstall one of the two distributions or rename one"
        )
    found[entry.name] = entry


def _check(kind: str, obj: Any, ep_name: str) -> str:
    """The registry name of ``obj``; ``TypeError`` if it is not a ``kind``."""
    if kind == "task":
        from minbert_tasks.tasks import TaskSpec

        if not isinstance(obj, TaskSpec):
            raise TypeError(f"expected a TaskSpec instance, got {obj!r}")
        return obj.name
    if kind == "sampler":
        name = getattr(obj, "name", None)
        if not isinstance(obj, type) or not isinstance(name, str) or not name:
            raise TypeError(f"expected a sampler class with a string 'name', got {obj!r}")
        if not callable(getattr(obj, "plan", None)):
            raise TypeError(f"sampler class {obj.__qualname__} has no plan() method")
        return name
    from minbert_tasks.heads import HeadConfig

    if not isinstance(obj, HeadConfig):
        raise TypeError(f"expected a HeadConfig instance, got {obj!r}")
    return ep_name


def _builtins(kind: str) -> dict[str, Any]:
    if kind == "task":
        from minbert_tasks.tasks import BUILTIN_TASKS

        return dict(BUILTIN_TASKS)
    if kind == "sampler":
        from minbert_tasks.samplers import BUILTIN_SAMPLERS

        return dict(BUILTIN_SAMPLERS)
    from minbert_tasks.heads import PRESETS

    return dict(PRESETS)
