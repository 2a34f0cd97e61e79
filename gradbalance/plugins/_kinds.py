"""What a registry holds: kinds of plugin objects, and one record per registered object."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._combiner import GradientCombiner


@attrs.frozen
class PluginEntry:
    """One registered object: its registry ``name``, its ``kind``, the object itself (a class
    for combiners, regularizers and samplers; an instance for tasks and head presets) and the
    ``source`` it came from (a distribution, or what ``register`` was given)."""

    name: str
    kind: str
    obj: Any
    source: str

    @property
    def summary(self) -> str:
        """The first paragraph of the object's docstring, on one line."""
        doc = inspect.getdoc(self.obj) or ""
        return doc.strip().split("\n\n")[0].replace("\n", " ")


@attrs.frozen
class PluginKind:
    """A kind of object a :class:`~gradbalance.plugins.Registry` holds, and where it comes from.

    Objects come from the pluggy ``hook`` (one of :mod:`gradbalance.plugins.hookspecs`, each
    implementation returning a list) and/or the entry-point ``group`` (each entry point naming
    one object). ``check(obj, entry_point_name)`` validates an object and returns its registry
    name (``entry_point_name`` is ``""`` for objects from a hook); it raises ``TypeError``
    saying what was expected. ``builtins`` returns ``{name: object}`` to use when no entry point
    of ``group`` belongs to the registry's own package (an install that predates them).
    """

    name: str
    check: Callable[[Any, str], str]
    hook: str | None = None
    group: str | None = None
    builtins: Callable[[], Mapping[str, Any]] | None = None


def named_class(obj: Any, kind: str) -> str:
    """The ``name`` class attribute of ``obj``; ``TypeError`` unless it is a class that has one."""
    name = getattr(obj, "name", None)
    if not isinstance(obj, type) or not isinstance(name, str) or not name:
        raise TypeError(
            f"got {obj!r} as a {kind}; expected a class with a non-empty string class attribute 'name'"
        )
    return name


def _combiner_name(obj: Any, entry_point_name: str) -> str:
    name = named_class(obj, "combiner")
    if not issubclass(obj, GradientCombiner):
        raise TypeError(f"combiner {obj.__qualname__} does not subclass gradbalance.GradientCombiner")
    return name


def _regularizer_name(obj: Any, entry_point_name: str) -> str:
    return named_class(obj, "regularizer")


#: gradbalance's kinds, both provided through hooks by the modules of the ``gradbalance`` group.
COMBINER = PluginKind("combiner", _combiner_name, hook="gradbalance_combiners")
REGULARIZER = PluginKind("regularizer", _regularizer_name, hook="gradbalance_regularizers")
