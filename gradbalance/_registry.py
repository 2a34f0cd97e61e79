"""The plugin registry: one pluggy manager fed from the ``gradbalance`` entry-point group."""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from ._combiner import GradientCombiner
from .errors import PluginConflictError, PluginLoadWarning, UnknownCombinerError

ENTRY_POINT_GROUP = "gradbalance"

_KINDS: dict[str, str] = {
    "combiner": "gradbalance_combiners",
    "regularizer": "gradbalance_regularizers",
}


@attrs.frozen
class PluginEntry:
    """One registered class: its registry ``name``, ``kind``, the class, and where it came from."""

    name: str
    kind: str
    cls: type
    source: str

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.cls) or ""
        return doc.strip().split("\n\n")[0].replace("\n", " ")


def load_entry_points(
    group: str,
    check: Callable[[importlib.metadata.EntryPoint, Any], Any] | None = None,
    *,
    owner: str = "gradbalance",
    what: str = "plugin",
) -> list[tuple[importlib.metadata.EntryPoint, str, Any]]:
    """Load each entry point of ``group`` on its own; for packages with plugin groups of their own.

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


class Registry:
    """Discovers plugins lazily (on first use) and builds combiners by name.

    Each entry point is loaded on its own: one that fails to import, or registers without
    contributing (no ``@hookimpl``, a misspelled hook name), is reported with a
    :class:`PluginLoadWarning` naming its distribution, and the rest still load. A name claimed
    by two classes is unavailable (a warning at discovery, :class:`PluginConflictError` naming
    every claimant from :meth:`get` and :meth:`create`); every other name keeps working.
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self._group = group
        self._manager: pluggy.PluginManager | None = None
        self._sources: dict[str, str] = {}  # plugin name -> distribution (or given source)
        self._entries: dict[str, dict[str, PluginEntry]] | None = None
        self._conflicts: dict[str, dict[str, list[PluginEntry]]] = {}

    @property
    def manager(self) -> pluggy.PluginManager:
        if self._manager is None:
            manager = pluggy.PluginManager(hookspecs.PROJECT)
            manager.add_hookspecs(hookspecs)
            self._manager = manager
            self._load_entry_points()
        return self._manager

    def _load_entry_points(self) -> None:
        for ep, dist, plugin in load_entry_points(self._group):
            name = f"{dist}:{ep.name}"
            if not self.manager.has_plugin(name):  # one distribution twice on sys.path: keep the first
                self._add(plugin, source=dist, name=name)

    def register(self, plugin: object, *, source: str | None = None, name: str | None = None) -> None:
        """Register an in-process plugin object (a module or an instance with hookimpls).

        ``name`` defaults to the module's name or the instance's qualified class name, and
        ``source`` (shown by ``gradbalance list``) to ``name``. Registering again under the same
        name replaces the earlier plugin, so re-running a notebook cell does not conflict.
        """
        manager = self.manager
        if name is None and isinstance(plugin, ModuleType):
            name = plugin.__name__
        elif name is None:
            owner = plugin if isinstance(plugin, type) else type(plugin)
            name = f"{owner.__module__}.{owner.__qualname__}"
        if manager.has_plugin(name):
            manager.unregister(name=name)
            self._sources.pop(name, None)
            self._entries = None
        self._add(plugin, source=source, name=name)

    def _add(self, plugin: object, *, source: str | None, name: str) -> None:
        manager = self.manager
        try:
            plugin_name = manager.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:  # bad hooks; an object registered twice
            warnings.warn(
                f"gradbalance: skipped plugin from {source or name!r}: {exc}",
                PluginLoadWarning,
                stacklevel=3,
            )
            return
        if plugin_name is not None:
            self._sources[plugin_name] = source or plugin_name
            self._check_hooks(plugin, source or plugin_name)
        self._entries = None

    def _check_hooks(self, plugin: object, source: str) -> None:
        """Warn about a plugin that registers but does not contribute what it meant to: pluggy
        accepts a function marked ``@hookimpl`` under a name that is no hook (a typo) and
        ignores a hook-named function without the marker, so either would pass in silence."""
        manager = self.manager
        hooks = sorted(_KINDS.values())
        callers = manager.get_hookcallers(plugin) or []
        used = [c.name for c in callers if c.has_spec()]
        problems = [
            f"@gradbalance.hookimpl marks {c.name}(), which is no gradbalance hook"
            + _did_you_mean(c.name, hooks)
            for c in callers
            if not c.has_spec()
            and not all(i.optionalhook for i in c.get_hookimpls() if i.plugin is plugin)
        ]
        for attr in dir(plugin):
            if attr in used or manager.parse_hookimpl_opts(plugin, attr) is not None:
                continue
            if callable(getattr(plugin, attr, None)) and difflib.get_close_matches(attr, hooks, 1, 0.8):
                problems.append(f"{attr}() is not marked @gradbalance.hookimpl")
        if not used and not problems:
            problems.append("it has no function marked @gradbalance.hookimpl")
        if problems:
            what = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__qualname__
            warnings.warn(
                f"gradbalance: plugin {source!r} ({what}) "
                f"{'contributes only ' + ', '.join(used) if used else 'contributes nothing'}: "
                f"{'; '.join(problems)}. A plugin implements {' and/or '.join(h + '()' for h in hooks)}, "
                "each marked @gradbalance.hookimpl",
                PluginLoadWarning,
                stacklevel=4,
            )

    def entries(self, kind: str = "combiner") -> dict[str, PluginEntry]:
        """Registered classes of ``kind`` (``"combiner"`` or ``"regularizer"``) by name."""
        if kind not in _KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(_KINDS)}")
        if self._entries is None:
            collected = {k: self._collect(k) for k in _KINDS}
            self._entries = {k: found for k, (found, _) in collected.items()}
            self._conflicts = {k: clashes for k, (_, clashes) in collected.items()}
        return dict(self._entries[kind])

    def conflicts(self, kind: str = "combiner") -> dict[str, list[PluginEntry]]:
        """Names of ``kind`` claimed by two or more classes, each with all its claimants. Such a
        name is left out of :meth:`entries` and :meth:`available`; :meth:`get` raises
        :class:`PluginConflictError` for it, and every other name keeps working."""
        self.entries(kind)
        return {name: list(claimants) for name, claimants in self._conflicts[kind].items()}

    def _collect(self, kind: str) -> tuple[dict[str, PluginEntry], dict[str, list[PluginEntry]]]:
        hook = getattr(self.manager.hook, _KINDS[kind])
        claims: dict[str, list[PluginEntry]] = {}
        # Call implementations one at a time so each class is traced to its plugin, and a plugin
        # whose hook fails (a lazy import, a class that is not a combiner) costs only itself.
        for impl in hook.get_hookimpls():
            source = self._sources.get(impl.plugin_name, impl.plugin_name)
            try:
                returned = impl.function() or ()
                if not isinstance(returned, (list, tuple)):
                    raise TypeError(f"{_KINDS[kind]}() must return a list of classes, got {returned!r}")
                entries = [self._entry(cls, kind, source) for cls in returned]
            except Exception as exc:
                warnings.warn(
                    f"gradbalance: skipped the {kind}s of plugin {source!r} ({impl.plugin_name}): "
                    f"{type(exc).__name__}: {exc}",
                    PluginLoadWarning,
                    stacklevel=4,
                )
                continue
            for entry in entries:
                claimants = claims.setdefault(entry.name, [])
                if all(other.cls is not entry.cls for other in claimants):
                    claimants.append(entry)
        found = {name: claimants[0] for name, claimants in claims.items() if len(claimants) == 1}
        clashes = {
            name: sorted(claimants, key=lambda e: e.source) for name, claimants in claims.items() if len(claimants) > 1
        }
        for name, claimants in clashes.items():
            warnings.warn(
                f"gradbalance: {_conflict_message(kind, name, claimants)}; the other names still work",
                PluginLoadWarning,
                stacklevel=4,
            )
        return found, clashes

    @staticmethod
    def _entry(cls: Any, kind: str, source: str) -> PluginEntry:
        name = getattr(cls, "name", None)
        if not isinstance(cls, type) or not isinstance(name, str) or not name:
            raise TypeError(
                f"plugin {source!r} returned {cls!r} as a {kind}; expected a class with a "
                "non-empty string class attribute 'name'"
            )
        if kind == "combiner" and not issubclass(cls, GradientCombiner):
            raise TypeError(
                f"plugin {source!r} returned combiner {cls.__qualname__} that does not subclass "
                "gradbalance.GradientCombiner"
            )
        return PluginEntry(name, kind, cls, source)

    def available(self, kind: str = "combiner") -> list[str]:
        """Sorted names of the installed classes of ``kind``."""
        return sorted(self.entries(kind))

    def get(self, name: str, kind: str = "combiner") -> type:
        """The class registered as ``name``; unknown names list what is available."""
        entries = self.entries(kind)
        if name in self._conflicts[kind]:
            raise PluginConflictError(_conflict_message(kind, name, self._conflicts[kind][name]))
        if name not in entries:
            raise UnknownCombinerError(
                f"no {kind} named {name!r}{_did_you_mean(name, entries)}; "
                f"available: {', '.join(sorted(entries)) or 'none'}"
            )
        return entries[name].cls

    def options(self, name: str, kind: str = "combiner") -> list[str]:
        """The keyword options the class registered as ``name`` accepts, in signature order."""
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        parameters = inspect.signature(self.get(name, kind)).parameters.values()
        return [p.name for p in parameters if p.kind in keyword and not p.name.startswith("_")]

    def create(self, name: str, kind: str = "combiner", /, **options: Any) -> Any:
        """Build the class registered as ``name`` with ``options``."""
        cls = self.get(name, kind)
        try:
            inspect.signature(cls).bind(**options)
        except TypeError as exc:
            accepted = self.options(name, kind)
            hint = "".join(_did_you_mean(o, accepted) for o in options if o not in accepted)
            raise TypeError(
                f"bad options for {kind} {name!r}: {exc}{hint}; "
                f"it accepts: {', '.join(accepted) or 'no options'}"
            ) from None
        return cls(**options)


def _conflict_message(kind: str, name: str, claimants: list[PluginEntry]) -> str:
    listed = " and ".join(f"{e.cls.__module__}.{e.cls.__qualname__} from {e.source!r}" for e in claimants)
    return (
        f"{len(claimants)} {kind}s are named {name!r}: {listed}; {name!r} is unavailable until "
        f"you uninstall all but one of these distributions or rename the classes"
    )


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: The process-wide registry behind :func:`available` and :func:`create`.
default_registry = Registry()


def available(kind: str = "combiner") -> list[str]:
    """Names of the installed combiners (or ``kind="regularizer"``)."""
    return default_registry.available(kind)


def create(name: str, /, **options: Any) -> GradientCombiner:
    """Build the combiner registered as ``name``, e.g. ``create("pcgrad", seed=0)``."""
    return default_registry.create(name, "combiner", **options)


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
    """Installed classes of ``kind`` with their sources, sorted by name."""
    return sorted(default_registry.entries(kind).values(), key=lambda e: e.name)

