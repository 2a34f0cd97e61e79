"""The registry: plugin objects by kind and name, from pluggy hooks and entry-point groups."""

from __future__ import annotations

import importlib.metadata
import inspect
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pluggy

from ..errors import PluginConflictError, PluginLoadWarning, UnknownPluginError
from ._hooks import did_you_mean, hook_problems, new_manager
from ._kinds import COMBINER, REGULARIZER, PluginEntry, PluginKind
from ._loading import ENTRY_POINT_GROUP, load_entry_points


class Registry:
    """Discovers plugins lazily (on first use) and looks up and builds their objects by name.

    ``kinds`` says what it holds and where each kind comes from (:class:`PluginKind`): the
    hooks of the plugin modules in the entry-point ``group`` and of :meth:`register`, and/or an
    entry-point group of the kind's own. ``owner`` (the package) starts every warning.

    Each entry point is loaded on its own: one that fails to import, is rejected by its kind's
    check, or registers hooks without contributing (no ``@hookimpl``, a misspelled hook name) is
    reported with a :class:`PluginLoadWarning` naming its distribution, and the rest still load.
    A name claimed by two objects is unavailable (a warning at discovery,
    :class:`PluginConflictError` naming every claimant from :meth:`get` and :meth:`create`);
    every other name keeps working.
    """

    def __init__(
        self,
        group: str | None = ENTRY_POINT_GROUP,
        kinds: Sequence[PluginKind] = (COMBINER, REGULARIZER),
        *,
        owner: str = "gradbalance",
    ) -> None:
        self._group = group
        self._kinds = {kind.name: kind for kind in kinds}
        self._owner = owner
        self._manager: pluggy.PluginManager | None = None
        self._sources: dict[str, str] = {}  # plugin name -> distribution (or given source)
        self._entries: dict[str, dict[str, PluginEntry]] = {}
        self._conflicts: dict[str, dict[str, list[PluginEntry]]] = {}

    @property
    def manager(self) -> pluggy.PluginManager:
        """The pluggy plugin manager, with the hook plugins of ``group`` loaded."""
        if self._manager is None:
            self._manager = new_manager()
            if self._group is not None:
                for ep, dist, plugin in load_entry_points(self._group, owner=self._owner):
                    name = f"{dist}:{ep.name}"
                    if not self._manager.has_plugin(
                        name
                    ):  # one distribution twice on sys.path: keep the first
                        self._add(plugin, source=dist, name=name)
        return self._manager

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
            self._entries.clear()
        self._add(plugin, source=source, name=name)

    def _add(self, plugin: object, *, source: str | None, name: str) -> None:
        manager = self.manager
        try:
            plugin_name = manager.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:  # bad hooks; an object registered twice
            self._warn(f"skipped plugin from {source or name!r}: {exc}", stacklevel=4)
            return
        if plugin_name is not None:
            self._sources[plugin_name] = source or plugin_name
            hooks = sorted(kind.hook for kind in self._kinds.values() if kind.hook is not None)
            problem = hook_problems(manager, plugin, source or plugin_name, hooks)
            if problem is not None:
                self._warn(problem, stacklevel=4)
        self._entries.clear()

    def _warn(self, message: str, stacklevel: int) -> None:
        warnings.warn(f"{self._owner}: {message}", PluginLoadWarning, stacklevel=stacklevel)

    def kind(self, kind: str) -> PluginKind:
        """The :class:`PluginKind` named ``kind``; ``ValueError`` for a kind this registry lacks."""
        if kind not in self._kinds:
            raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(self._kinds)}")
        return self._kinds[kind]

    def entries(self, kind: str = "combiner") -> dict[str, PluginEntry]:
        """Registered objects of ``kind`` (e.g. ``"combiner"`` or ``"regularizer"``) by name."""
        if kind not in self._entries:
            self._entries[kind], self._conflicts[kind] = self._collect(self.kind(kind))
        return dict(self._entries[kind])

    def conflicts(self, kind: str = "combiner") -> dict[str, list[PluginEntry]]:
        """Names of ``kind`` claimed by two or more objects, each with all its claimants. Such a
        name is left out of :meth:`entries` and :meth:`available`; :meth:`get` raises
        :class:`PluginConflictError` for it, and every other name keeps working."""
        self.entries(kind)
        return {name: list(claimants) for name, claimants in self._conflicts[kind].items()}

    def _collect(self, kind: PluginKind) -> tuple[dict[str, PluginEntry], dict[str, list[PluginEntry]]]:
        claims: dict[str, list[PluginEntry]] = {}
        for entry in self._from_hooks(kind) + self._from_group(kind):
            claimants = claims.setdefault(entry.name, [])
            if all(other.obj is not entry.obj for other in claimants):  # one object twice is one claim
                claimants.append(entry)
        found = {name: claimants[0] for name, claimants in claims.items() if len(claimants) == 1}
        clashes = {
            name: sorted(claimants, key=lambda e: e.source)
            for name, claimants in claims.items()
            if len(claimants) > 1
        }
        for name, claimants in clashes.items():
            self._warn(
                f"{_conflict_message(kind.name, name, claimants)}; the other names still work", stacklevel=5
            )
        return found, clashes

    def _from_hooks(self, kind: PluginKind) -> list[PluginEntry]:
        if kind.hook is None:
            return []
        entries = []
        # Call implementations one at a time so each object is traced to its plugin, and a plugin
        # whose hook fails (a lazy import, a class that is not a combiner) costs only itself.
        for impl in getattr(self.manager.hook, kind.hook).get_hookimpls():
            source = self._sources.get(impl.plugin_name, impl.plugin_name)
            try:
                returned = impl.function() or ()
                if not isinstance(returned, (list, tuple)):
                    raise TypeError(f"{kind.hook}() must return a list of classes, got {returned!r}")
                entries += [PluginEntry(kind.check(obj, ""), kind.name, obj, source) for obj in returned]
            except Exception as exc:
                self._warn(
                    f"skipped the {kind.name}s of plugin {source!r} ({impl.plugin_name}): {type(exc).__name__}: {exc}",
                    stacklevel=6,
                )
        return entries

    def _from_group(self, kind: PluginKind) -> list[PluginEntry]:
        if kind.group is None:
            return []
        entries = []
        if kind.builtins is not None and not any(
            ep.value.split(":")[0].strip().split(".")[0] == self._owner
            for ep in importlib.metadata.entry_points(group=kind.group)
        ):
            entries += [
                PluginEntry(n, kind.name, o, f"{self._owner} (built-in)") for n, o in kind.builtins().items()
            ]
        loaded = load_entry_points(
            kind.group,
            lambda ep, obj: (kind.check(obj, ep.name), obj),
            owner=self._owner,
            what=f"{kind.name} plugin",
        )
        return entries + [
            PluginEntry(name, kind.name, obj, f"{dist} ({ep.value})") for ep, dist, (name, obj) in loaded
        ]

    def available(self, kind: str = "combiner") -> list[str]:
        """Sorted names of the installed objects of ``kind``."""
        return sorted(self.entries(kind))

    def get(self, name: str, kind: str = "combiner") -> Any:
        """The object registered as ``name``; an unknown name lists what is available."""
        entries = self.entries(kind)
        if name in self._conflicts[kind]:
            raise PluginConflictError(_conflict_message(kind, name, self._conflicts[kind][name]))
        if name not in entries:
            raise UnknownPluginError(
                f"no {kind} named {name!r}{did_you_mean(name, entries)}; "
                f"available: {', '.join(sorted(entries)) or 'none'}"
            )
        return entries[name].obj

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
            hint = "".join(did_you_mean(o, accepted) for o in options if o not in accepted)
            raise TypeError(
                f"bad options for {kind} {name!r}: {exc}{hint}; "
                f"it accepts: {', '.join(accepted) or 'no options'}"
            ) from None
        return cls(**options)


def _conflict_message(kind: str, name: str, claimants: list[PluginEntry]) -> str:
    listed = " and ".join(f"{_describe(e.obj)} from {e.source!r}" for e in claimants)
    rename = "the classes" if all(isinstance(e.obj, type) for e in claimants) else "them"
    return (
        f"{len(claimants)} {kind}s are named {name!r}: {listed}; {name!r} is unavailable until "
        f"you uninstall all but one of these distributions or rename {rename}"
    )


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__qualname__}"
