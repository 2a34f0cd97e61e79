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

    Each entry point is loaded on its own: one that fails to import is reported with a
    :class:`PluginLoadWarning` naming its distribution, and the rest still load. Two classes
    claiming one name raise :class:`PluginConflictError` naming both sources.
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self._group = group
        self._manager: pluggy.PluginManager | None = None
        self._sources: dict[str, str] = {}  # plugin name -> distribution (or given source)
        self._entries: dict[str, dict[str, PluginEntry]] | None = None

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
        self._entries = None

    def entries(self, kind: str = "combiner") -> dict[str, PluginEntry]:
        """Registered classes of ``kind`` (``"combiner"`` or ``"regularizer"``) by name."""
        if kind not in _KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(_KINDS)}")
        if self._entries is None:
            self._entries = {k: self._collect(k) for k in _KINDS}
        return dict(self._entries[kind])

    def _collect(self, kind: str) -> dict[str, PluginEntry]:
        hook = getattr(self.manager.hook, _KINDS[kind])
        found: dict[str, PluginEntry] = {}
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
                cls = entry.cls
                if entry.name in found and found[entry.name].cls is not cls:
                    other = found[entry.name]
                    raise PluginConflictError(
                        f"two {kind}s are named {entry.name!r}: "
                        f"{other.cls.__module__}.{other.cls.__qualname__} from {other.source!r} "
                        f"and {cls.__module__}.{cls.__qualname__} from {source!r}; "
                        "uninstall one of the two distributions or rename one class"
                    )
                found[entry.name] = entry
        return found

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

