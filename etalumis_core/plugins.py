"""The plugin manager: built-ins first, then every distribution with an ``etalumis`` entry point.

Built by :func:`make_plugin_manager` (never a module global), so tests build fresh ones.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hooks
from .errors import PluginError

log = logging.getLogger(__name__)

BUILTIN = "etalumis_core"

# Which distribution to install for a name users reach for before installing it.
KNOWN_PLUGINS = {
    ("simulators", "toy_tau_decay"): "etalumis-toy-tau-decay (pip install ./plugins/toy_tau_decay)",
    ("simulators", "composite_cure"): "etalumis-composite-cure (pip install ./plugins/composite_cure)",
    ("simulators", "sherpa"): "etalumis-sherpa-adapter (pip install ./plugins/sherpa_adapter)",
    ("proposals", "cnn3d_lstm"): "etalumis-cnn3d-lstm (pip install ./plugins/cnn3d_lstm)",
    ("trainers", "distributed"): "etalumis-cnn3d-lstm (pip install ./plugins/cnn3d_lstm)",
    ("executors", "dask"): "etalumis-core[dask] (pip install 'etalumis-core[dask]')",
}


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""


@dataclass
class Registry:
    """Names registered for one kind of thing (simulators, engines, ...)."""

    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)   # plugins that failed to import

    def add(self, name: str, factory: Callable[..., Any], plugin: str, description: str = "") -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {self.kind[:-1]} with an invalid "
                              f"name {name!r}")
        if name in self.entries:
            raise PluginError(f"{self.kind[:-1]} {name!r} is registered twice: by plugin "
                              f"{self.entries[name].plugin!r} and by plugin {plugin!r}; "
                              f"uninstall one of them")
        self.entries[name] = Entry(name, factory, plugin, description)

    def get(self, name: str) -> Entry:
        entry = self.entries.get(name)
        if entry is None:
            options = ", ".join(f"{n} (from {e.plugin})" for n, e in sorted(self.entries.items()))
            hint = KNOWN_PLUGINS.get((self.kind, name))
            message = f"unknown {self.kind[:-1]} {name!r}; installed: {options or 'none'}"
            if hint:
                message += f". {name!r} is provided by {hint}"
            for plugin, error in self.failed.items():
                message += f". Plugin {plugin!r} failed to import ({error})"
            raise PluginError(message)
        return entry

    def create(self, name: str, **options: Any) -> Any:
        factory = self.get(name).factory
        # A factory that takes ``embeddings`` (the IC engine, to rebuild a saved network's
        # observation embedding) is given the installed proposal architectures.
        if "embeddings" not in options and _accepts(factory, "embeddings"):
            options["embeddings"] = embedding_factory
        return factory(**options)

    def names(self) -> list[str]:
        return sorted(self.entries)


class Plugins:
    """The registries filled by every plugin, and the Hydra config paths they add."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        failed = getattr(manager, "failed", {})
        self.registries = {kind: Registry(kind, failed=failed) for kind in hooks.KINDS}
        self.config_paths: list[tuple[str, str]] = []
        # Hook implementations are called one by one (in registration order: built-ins first)
        # so that every name is attributed to the plugin that registered it.
        for kind in hooks.KINDS:
            registry = self.registries[kind]
            caller = getattr(manager.hook, f"etalumis_register_{kind}")
            for impl in caller.get_hookimpls():
                impl.function(register=lambda name, factory, description="", _r=registry,
                              _p=impl.plugin_name: _r.add(name, factory, _p, description))
        for impl in manager.hook.etalumis_config_paths.get_hookimpls():
            impl.function(register=lambda path, _p=impl.plugin_name:
                          self.config_paths.append((_p, path)))

    def __getattr__(self, kind: str) -> Registry:
        registries = self.__dict__.get("registries", {})
        if kind in registries:
            return registries[kind]
        raise AttributeError(kind)

    def describe(self) -> dict:
        """What is installed and what each plugin registered (``etalumis plugins``)."""
        out: dict[str, dict] = {}
        for plugin in self.manager.get_plugins():
            name = self.manager.get_name(plugin)
            dist = self._distribution(name)
            out[name] = {"distribution": dist[0], "version": dist[1],
                         **{kind: [] for kind in hooks.KINDS}, "config_paths": []}
        for kind, registry in self.registries.items():
            for entry in registry.entries.values():
                out[entry.plugin][kind].append(entry.name)
        for plugin, path in self.config_paths:
            out[plugin]["config_paths"].append(path)
        for name, error in getattr(self.manager, "failed", {}).items():
            dist = self._distribution(name)
            out[name] = {"distribution": dist[0], "version": dist[1], "error": error}
        return out

    def _distribution(self, plugin_name: str) -> tuple[str, str]:
        if plugin_name == BUILTIN:
            return "etalumis-core", _version("etalumis-core")
        for dist, version, names in _entry_point_distributions():
            if plugin_name in names:
                return dist, version
        return "?", "?"


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "unknown"


def _entry_point_distributions() -> list[tuple[str, str, set[str]]]:
    found: dict[str, tuple[str, set[str]]] = {}
    for ep in md.entry_points(group=hooks.PROJECT):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        found.setdefault(dist, (version, set()))[1].add(ep.name)
    return [(d, v, n) for d, (v, n) in found.items()]


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering the plugins that failed to import (name -> error)."""

    def __init__(self) -> None:
        super().__init__(hooks.PROJECT)
        self.failed: dict[str, str] = {}


def make_plugin_manager(load_entry_points: bool = True, extra: list[tuple[str, Any]] = ()) -> PluginManager:
    """A fresh plugin manager: the core's built-ins, then ``extra`` (for tests), then every
    entry point in the ``etalumis`` group. Implementations matching no spec are errors."""
    from . import builtins

    manager = PluginManager()
    manager.add_hookspecs(hooks)
    manager.register(builtins, name=BUILTIN)
    for name, plugin in extra:
        manager.register(plugin, name=name)
    if load_entry_points:
        for ep in md.entry_points(group=hooks.PROJECT):
            if manager.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as error:
                # One broken plugin must not take every command down with it: it is reported
                # by `etalumis plugins` and in the error for any name it would have provided.
                message = f"{type(error).__name__}: {error}"
                log.warning("plugin %r (%s) failed to import and is skipped: %s", ep.name,
                            ep.value, message)
                manager.failed[ep.name] = message
                continue
            manager.register(plugin, name=ep.name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        raise PluginError(f"a plugin implements a hook that etalumis does not define: {error}. "
                          f"Known hooks: {', '.join(sorted(_hook_names()))}") from None
    return manager


def _hook_names() -> list[str]:
    return [n for n in dir(hooks) if n.startswith("etalumis_")]


def load_plugins(load_entry_points: bool = True, extra: list[tuple[str, Any]] = ()) -> Plugins:
    """Build a plugin manager and collect what every plugin registered."""
    return Plugins(make_plugin_manager(load_entry_points, extra))


def embedding_factory(name: str) -> Callable[..., Any]:
    """The observation-embedding factory of the proposal architecture registered as ``name``
    (built-ins without scanning entry points): how a network named in a file finds its
    architecture, as ``ProposalNetwork(..., embeddings=embedding_factory)``."""
    builtins = load_plugins(load_entry_points=False).proposals
    if name in builtins.entries:
        return builtins.get(name).factory
    return load_plugins().proposals.get(name).factory


def _accepts(factory: Callable[..., Any], parameter: str) -> bool:
    try:
        return parameter in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
