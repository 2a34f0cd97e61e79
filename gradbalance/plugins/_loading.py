"""Loading entry points one by one, so that a broken third party costs only itself."""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import PluginLoadWarning

ENTRY_POINT_GROUP = "gradbalance"
"""The entry-point group of gradbalance plugins (modules with ``@gradbalance.hookimpl`` hooks)."""


def load_entry_points(
    group: str,
    check: Callable[[importlib.metadata.EntryPoint, Any], Any] | None = None,
    *,
    owner: str = "gradbalance",
    what: str = "plugin",
) -> list[tuple[importlib.metadata.EntryPoint, str, Any]]:
    """Load each entry point of ``group`` on its own.

    Returns ``(entry point, distribution name, value)`` for every entry point that imports,
    where ``value`` is the loaded object, or ``check(entry_point, obj)`` when a ``check`` is
    given (it returns what to keep, or raises to reject the object). A third party that fails
    to import or is rejected costs only itself: a :class:`PluginLoadWarning` reads
    ``"{owner}: skipped {what} NAME (VALUE) of distribution DIST: ERROR"`` and the rest load.
    """
    loaded = []
    for ep in importlib.metadata.entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
        try:
            obj = ep.load()
            value = obj if check is None else check(ep, obj)
        except Exception as exc:  # any import-time failure of a third party
            warnings.warn(
                f"{owner}: skipped {what} {ep.name!r} ({ep.value}) of distribution {dist!r}: "
                f"{type(exc).__name__}: {exc}",
                PluginLoadWarning,
                stacklevel=3,
            )
            continue
        loaded.append((ep, dist, value))
    return loaded
