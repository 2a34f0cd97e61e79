"""The process-wide registry of combiners and regularizers, and the functions in front of it."""

from __future__ import annotations

from typing import Any

from .._combiner import GradientCombiner
from ._kinds import PluginEntry
from ._registry import Registry

default_registry = Registry()
"""The process-wide registry of combiners and regularizers, behind :func:`gradbalance.available`,
:func:`gradbalance.create`, :func:`gradbalance.options` and :func:`gradbalance.register`."""


def available(kind: str = "combiner") -> list[str]:
    """Names of the installed combiners (or ``kind="regularizer"``)."""
    return default_registry.available(kind)


def create(name: str, /, **options: Any) -> GradientCombiner:
    """Build the combiner registered as ``name``, e.g. ``create("pcgrad", seed=0)``."""
    combiner: GradientCombiner = default_registry.create(name, "combiner", **options)
    return combiner


def options(name: str, kind: str = "combiner") -> list[str]:
    """The keyword options of the combiner (or ``kind="regularizer"``) registered as ``name``,
    e.g. ``options("pcgrad") == ["seed", "reduction"]``; unknown names list what is available."""
    return default_registry.options(name, kind)


def register(plugin: object, *, source: str | None = None, name: str | None = None) -> None:
    """Register a plugin object in-process (scripts and notebooks; packages use entry points).

    Registering again under the same ``name`` (by default the module's name or the instance's
    qualified class name) replaces the earlier plugin: re-running a notebook cell is safe.
    """
    default_registry.register(plugin, source=source, name=name)


def plugin_entries(kind: str = "combiner") -> list[PluginEntry]:
    """Installed objects of ``kind`` with their sources, sorted by name."""
    return sorted(default_registry.entries(kind).values(), key=lambda e: e.name)
