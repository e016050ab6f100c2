"""The plugin manager: pluggy, used as pluggy documents it, plus per-plugin isolation.

Hooks are called as ``plugins.hook().greentrack_<name>(...)`` (``pm.hook``), so ``firstresult``,
``tryfirst``/``trylast``, new-style ``wrapper=True`` hooks and pluggy's call tracing
(``pm.add_hookcall_monitoring``) all behave as pluggy's documentation says.

Isolation sits on top: when a plugin registers, each of its hook implementations is wrapped so
that an exception in it is reported once (one line on stderr) and the call goes on without that
plugin's answer. What a hook implementation returns is checked too, where the hook's caller has
said what a valid answer is (:func:`check_results`): a wrong answer (a string where an
``Intensity`` belongs) is reported once like an exception, and the call goes on to the next
plugin. A plugin that fails to import is reported once and the others still load.

Built-in behaviour (the mock, NVML, RAPL and CPU-model sources, the grid table, the scenario catalogue)
is registered first, as plugins (the mock and the catalogue through small hooks objects that import
their modules when first used: :data:`BUILTIN_SHIMS`); then the ``greentrack`` entry-point group.
``GREENTRACK_DISABLE_PLUGINS=name1,name2`` blocks plugins by name, built-ins included. The
plugin manager knows nothing of the CLI: the CLI registers its own commands when it is built.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
from typing import Any, Callable, Iterator

import pluggy

from . import hookspecs
from .notify import forget as _forget_reports
from .notify import warn_once
from .settings import ENV_DISABLE_PLUGINS

hookimpl = pluggy.HookimplMarker("greentrack")

BUILTIN_PLUGINS = (
    "greentrack.measure.sources.mock",
    "greentrack.measure.sources.nvml",
    "greentrack.measure.sources.rapl",
    "greentrack.measure.sources.cpu_model",
    "greentrack.carbon.grid",
    "greentrack.carbon.scenarios",
)
# built-ins registered through a small hooks object whose hooks import their module on first call, so
# a session that never uses them (the mock GPU, the scenario catalogue) does not import them: name -> target
BUILTIN_SHIMS = {
    "greentrack.measure.sources.mock": "greentrack.measure.sources:MockHooks",
    "greentrack.carbon.scenarios": "greentrack.carbon:ScenarioHooks",
}
ENTRY_POINT_GROUP = "greentrack"

_pm: "PluginManager | None" = None
_lock = threading.Lock()
_origins: dict[str, str] = {}
#: hook name -> check(value) that returns the value to use or raises TypeError/ValueError
_checks: dict[str, Callable[[Any], Any]] = {}


def check_results(hook_name: str, check: Callable[[Any], Any]) -> None:
    """Declare what a valid answer of *hook_name* is: ``check(value)`` returns the value to use (None
    included) or raises ``TypeError``/``ValueError`` with a one-line reason. A plugin whose answer fails
    the check is reported once and its answer dropped, as if it had raised."""
    _checks[hook_name] = check


def _checked(plugin_name: str, hook_name: str, value: Any, fallback: Any = None) -> Any:
    """*value* if the hook's check accepts it, else *fallback* (the plugin reported once)."""
    check = _checks.get(hook_name)
    if check is None or value is None:
        return value
    try:
        return check(value)
    except (TypeError, ValueError) as exc:
        warn_once(plugin_name, hook_name, exc)
        return fallback


class PluginManager(pluggy.PluginManager):
    """pluggy's manager whose registered hook implementations never raise into greentrack."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        plugin_name = super().register(plugin, name=name)
        if plugin_name is not None:
            for caller in self.get_hookcallers(plugin) or []:
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin and not getattr(impl.function, "_greentrack_guarded", False):
                        _guard(impl, plugin_name, caller.name)
        return plugin_name


def _guard(impl: Any, plugin_name: str, hook_name: str) -> None:
    fn = impl.function
    if impl.hookwrapper:  # old-style wrappers see pluggy's Result object; left as pluggy runs them
        return
    if impl.wrapper:
        def guarded_wrapper(*args: Any) -> Iterator[Any]:
            gen = fn(*args)
            try:
                next(gen)
            except Exception as exc:
                warn_once(plugin_name, hook_name, exc)
                return (yield)
            try:
                res = yield
            except BaseException as exc:
                try:
                    gen.throw(exc)
                except StopIteration as stop:
                    return stop.value
                raise RuntimeError(f"{plugin_name}: wrapper for {hook_name} yielded twice") from exc
            try:
                gen.send(res)
            except StopIteration as stop:
                return _checked(plugin_name, hook_name, stop.value, res)
            except Exception as exc:
                warn_once(plugin_name, hook_name, exc)
                return res
            raise RuntimeError(f"{plugin_name}: wrapper for {hook_name} yielded twice")

        impl.function = functools.wraps(fn)(guarded_wrapper)
        impl.function._greentrack_guarded = True
    else:
        def guarded(*args: Any) -> Any:
            try:
                value = fn(*args)
            except Exception as exc:
                warn_once(plugin_name, hook_name, exc)
                return None
            return _checked(plugin_name, hook_name, value)

        impl.function = functools.wraps(fn)(guarded)
        impl.function._greentrack_guarded = True


def _blocked() -> set[str]:
    raw = os.environ.get(ENV_DISABLE_PLUGINS, "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is not None:
        return _pm
    with _lock:
        if _pm is None:
            pm = PluginManager("greentrack")
            pm.add_hookspecs(hookspecs)
            blocked = _blocked()
            for name in blocked:
                pm.set_blocked(name)
            for modname in BUILTIN_PLUGINS:
                if modname in blocked:
                    continue
                try:
                    target, _, attr = BUILTIN_SHIMS.get(modname, modname).partition(":")
                    mod = importlib.import_module(target)
                    if attr:
                        mod = getattr(mod, attr)
                except Exception as exc:  # pragma: no cover - a broken install
                    warn_once(modname, "import", exc)
                    continue
                pm.register(mod, name=modname)
                _origins[modname] = "built-in"
            for name, target, dist in _entry_points(ENTRY_POINT_GROUP):
                if pm.is_blocked(name) or pm.get_plugin(name) is not None:
                    continue
                try:
                    modname, _, attr = target.partition(":")
                    obj: Any = importlib.import_module(modname.strip())
                    for part in filter(None, attr.strip().split(".")):
                        obj = getattr(obj, part)
                    pm.register(obj, name=name)
                    _origins[name] = f"entry point {dist}"
                except Exception as exc:  # one broken plugin never stops the others
                    warn_once(name, "import", exc)
            _pm = pm
    return _pm


def hook() -> Any:
    """``pm.hook``: call a hook as ``plugins.hook().greentrack_samples(run=..., batch=...)``."""
    return get_plugin_manager().hook


def entry_points(group: str) -> list[tuple[str, str]]:
    """``(name, "module:attr")`` of the installed distributions' entry points in *group*."""
    return [(name, target) for name, target, _dist in _entry_points(group)]


def _entry_points(group: str) -> list[tuple[str, str, str]]:
    """``(name, "module:attr", "distribution version")`` of the entry points in *group*.

    Reads each distribution's ``entry_points.txt`` on ``sys.path`` directly (the first
    distribution of a name wins, as with importlib.metadata), which costs a few milliseconds
    where importing importlib.metadata costs about 15.
    """
    found: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    header = f"[{group}]"
    wanted = header.encode()
    for base in sys.path:
        root = base or "."
        try:
            names = os.listdir(root)
        except OSError:
            continue
        names.sort()
        for n in names:
            if not n.endswith((".dist-info", ".egg-info")):
                continue
            stem = n.rsplit(".", 1)[0]
            dist = stem.split("-")[0].lower().replace("_", "-")
            if dist in seen:
                continue
            seen.add(dist)
            # read as bytes, decoded only where the group is named: most files are other tools'
            raw = _read_file(f"{root}{os.sep}{n}{os.sep}entry_points.txt")
            if raw is None:
                continue
            if wanted not in raw:
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            version = stem.split("-")[1] if "-" in stem else ""
            in_group = False
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("["):
                    in_group = line == header
                elif in_group and "=" in line and not line.startswith(("#", ";")):
                    name, _, target = line.partition("=")
                    found.append((name.strip(), target.split("[")[0].strip(),
                                  f"{dist} {version}".strip()))
    return found


def _read_file(path: str) -> bytes | None:
    """The bytes of the file at *path*; None when it is missing or unreadable.

    Most distributions have no ``entry_points.txt``: ``os.access`` says so without an exception
    being made, and the others are read with ``os.read``, without Python's file objects (the scan
    runs at the start of every session)."""
    if not os.access(path, os.R_OK):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


def reset() -> None:
    """Forget the plugin manager (tests; after changing GREENTRACK_DISABLE_PLUGINS)."""
    global _pm
    with _lock:
        _pm = None
        _forget_reports()
        _origins.clear()


def register(plugin: object, name: str | None = None, origin: str = "registered in code") -> str | None:
    """Register a plugin object or module in this process (its hooks isolated like any plugin's)."""
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    if registered is not None:
        _origins.setdefault(registered, origin)
    return registered


def unregister(plugin: object | None = None, name: str | None = None) -> Any:
    """Remove a plugin registered with :func:`register`."""
    return get_plugin_manager().unregister(plugin=plugin, name=name)


def describe() -> list[dict[str, Any]]:
    """Every registered plugin: name, version, the hooks it implements and where it came from."""
    pm = get_plugin_manager()
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # a blocked name
            continue
        hooks = sorted({c.name for c in (pm.get_hookcallers(plugin) or [])})
        origin = _origins.get(name, "registered in code")
        version = origin.split(" ")[-1] if origin.startswith("entry point ") and " " in origin[12:] else None
        if origin == "built-in":
            from ._version import __version__

            version = __version__
        out.append({"name": name, "version": version, "hooks": hooks, "origin": origin})
    return out
