"""The pluggy side of a registry: the plugin manager and the check that a plugin contributes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from types import ModuleType

import pluggy

from . import hookspecs


def new_manager() -> pluggy.PluginManager:
    """A plugin manager for gradbalance's hook specifications."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def hook_problems(manager: pluggy.PluginManager, plugin: object, source: str, hooks: list[str]) -> str | None:
    """What a registered ``plugin`` failed to contribute, as a warning message (``None`` if all is well).

    pluggy accepts a function marked ``@hookimpl`` under a name that is no hook (a typo) and
    ignores a hook-named function without the marker, so either would pass in silence.
    """
    callers = manager.get_hookcallers(plugin) or []
    used = [c.name for c in callers if c.has_spec()]
    problems = [
        f"@gradbalance.hookimpl marks {c.name}(), which is no gradbalance hook" + did_you_mean(c.name, hooks)
        for c in callers
        if not c.has_spec() and not all(i.optionalhook for i in c.get_hookimpls() if i.plugin is plugin)
    ]
    for attr in dir(plugin):
        if attr in used or manager.parse_hookimpl_opts(plugin, attr) is not None:
            continue
        if callable(getattr(plugin, attr, None)) and difflib.get_close_matches(attr, hooks, 1, 0.8):
            problems.append(f"{attr}() is not marked @gradbalance.hookimpl")
    if not used and not problems:
        problems.append("it has no function marked @gradbalance.hookimpl")
    if not problems:
        return None
    what = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__qualname__
    return (
        f"plugin {source!r} ({what}) "
        f"{'contributes only ' + ', '.join(used) if used else 'contributes nothing'}: "
        f"{'; '.join(problems)}. A plugin implements {' and/or '.join(h + '()' for h in hooks)}, "
        "each marked @gradbalance.hookimpl"
    )


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
