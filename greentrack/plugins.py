"""The plugin manager: built-in plugins first, then the ``greentrack`` entry-point group.

``GREENTRACK_DISABLE_PLUGINS=name1,name2`` blocks plugins by name (built-ins included, e.g.
``greentrack.sources.nvml``). Hooks are called through :func:`call`, which isolates each
implementation: one that raises is reported once and skipped.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import pluggy

from . import hookspecs

hookimpl = pluggy.HookimplMarker("greentrack")

BUILTIN_PLUGINS = (
    "greentrack.sources.mock",
    "greentrack.sources.nvml",
    "greentrack.sources.rapl",
    "greentrack.carbon.grid",
    "greentrack.carbon.scenarios",
    "greentrack.commands",
)
ENTRY_POINT_GROUP = "greentrack"
ENV_DISABLE = "GREENTRACK_DISABLE_PLUGINS"

_pm: pluggy.PluginManager | None = None
_lock = threading.Lock()
_reported: set[tuple[str, str]] = set()


def _blocked() -> set[str]:
    raw = os.environ.get(ENV_DISABLE, "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is not None:
        return _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager("greentrack")
            pm.add_hookspecs(hookspecs)
            blocked = _blocked()
            for name in blocked:
                pm.set_blocked(name)
            import importlib

            for modname in BUILTIN_PLUGINS:
                if modname in blocked:
                    continue
                try:
                    mod = importlib.import_module(modname)
                except Exception as exc:  # pragma: no cover - a broken install
                    warn_once(modname, "import", exc)
                    continue
                pm.register(mod, name=modname)
            for name, target in entry_points(ENTRY_POINT_GROUP):
                if pm.is_blocked(name) or pm.get_plugin(name) is not None:
                    continue
                try:
                    modname, _, attr = target.partition(":")
                    obj = importlib.import_module(modname.strip())
                    for part in filter(None, attr.strip().split(".")):
                        obj = getattr(obj, part)
                    pm.register(obj, name=name)
                except Exception as exc:  # one broken plugin never stops the others
                    warn_once(name, "import", exc)
            _pm = pm
    return _pm


def entry_points(group: str) -> list[tuple[str, str]]:
    """``(name, "module:attr")`` of the installed distributions' entry points in *group*.

    Reads each distribution's ``entry_points.txt`` on ``sys.path`` directly (the first
    distribution of a name wins, as with importlib.metadata), which costs a few milliseconds
    where importing importlib.metadata costs about 15.
    """
    import os

    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    header = f"[{group}]"
    for base in sys.path:
        try:
            entries = list(os.scandir(base or "."))
        except OSError:
            continue
        for e in sorted(entries, key=lambda e: e.name):
            n = e.name
            if not (n.endswith(".dist-info") or n.endswith(".egg-info")):
                continue
            dist = n.rsplit(".", 1)[0].split("-")[0].lower().replace("_", "-")
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(e.path, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            if header not in text:
                continue
            in_group = False
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("["):
                    in_group = line == header
                elif in_group and "=" in line and not line.startswith(("#", ";")):
                    name, _, target = line.partition("=")
                    found.append((name.strip(), target.split("[")[0].strip()))
    return found


def reset() -> None:
    """Forget the plugin manager (tests; after changing GREENTRACK_DISABLE_PLUGINS)."""
    global _pm
    with _lock:
        _pm = None
        _reported.clear()


def register(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object or module in this process."""
    return get_plugin_manager().register(plugin, name=name)


def unregister(plugin: object | None = None, name: str | None = None) -> Any:
    """Remove a plugin registered with :func:`register`."""
    return get_plugin_manager().unregister(plugin=plugin, name=name)


def list_plugins() -> list[str]:
    """Names of the registered plugins, built-ins first."""
    pm = get_plugin_manager()
    return [pm.get_name(p) or repr(p) for p in pm.get_plugins()]


def warn_once(plugin: str, hook: str, exc: BaseException) -> None:
    """Report a failing plugin or sensor once per (plugin, hook) on stderr."""
    key = (plugin, hook)
    if key in _reported:
        return
    _reported.add(key)
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"greentrack: {plugin} failed in {hook}: {type(exc).__name__}: {msg} (ignored; the run goes on)",
          file=sys.stderr)


def call(hook_name: str, firstresult: bool = False, **kwargs: Any) -> Any:
    """Call a hook, each implementation isolated.

    Implementations run in pluggy's order (``tryfirst`` first, ``trylast`` last, later
    registrations before earlier ones). Returns the list of non-None results, or with
    *firstresult* the first non-None one.
    """
    pm = get_plugin_manager()
    caller = getattr(pm.hook, hook_name)
    results: list[Any] = []
    for impl in reversed(caller.get_hookimpls()):
        if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
            continue
        try:
            res = impl.function(*[kwargs[a] for a in impl.argnames])
        except Exception as exc:
            warn_once(impl.plugin_name, hook_name, exc)
            continue
        if res is not None:
            if firstresult:
                return res
            results.append(res)
    return None if firstresult else results
