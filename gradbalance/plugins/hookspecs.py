"""Hook specifications: what a gradbalance plugin can provide.

A plugin is any module or object with functions marked ``@gradbalance.hookimpl``, exposed
through an entry point in the group ``gradbalance``::

    # pyproject.toml of your package
    [project.entry-points.gradbalance]
    my_balancers = "my_package.plugin"

    # my_package/plugin.py
    import gradbalance

    @gradbalance.hookimpl
    def gradbalance_combiners():
        return [MyCombiner]
"""

from __future__ import annotations

import pluggy

#: The pluggy project name, which the markers below carry.
PROJECT = "gradbalance"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def gradbalance_combiners() -> list[type]:  # type: ignore[empty-body]
    """Return :class:`gradbalance.GradientCombiner` subclasses, each with a unique ``name``."""


@hookspec
def gradbalance_regularizers() -> list[type]:  # type: ignore[empty-body]
    """Return loss-level regularizer classes (such as SMART), each with a unique ``name``."""
