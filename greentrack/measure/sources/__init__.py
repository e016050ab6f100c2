"""Power sources. Each vendor has its own module; all implement :class:`base.Source`.

Sources come from plugins (the built-in ones too), so everything that crosses that boundary is
checked here: a registration that is not ``(str, callable)``, a factory that raises anything but
:class:`SourceUnavailable`, an object that is not a usable source. A bad plugin source is reported
once and skipped; with ``backend="auto"`` the run goes on with the other sources.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ...notify import warn_once
from ...plugins import hookimpl
from .base import Device, NullSource, Reading, Source, SourceUnavailable

__all__ = ["Device", "Source", "SourceUnavailable", "NullSource", "Reading", "build_sources", "available_sources",
           "check_source"]


class MockHooks:
    """The built-in plugin ``greentrack.measure.sources.mock``: registers the mock source (never chosen
    by "auto") without importing its module, which a session imports only when it asks for the mock."""

    @staticmethod
    @hookimpl
    def greentrack_register_sources(register: Callable[..., None]) -> None:
        register("mock", _mock_from_settings, priority=-100, auto=False)  # never chosen by "auto"


def _mock_from_settings(settings: Any) -> Any:
    from .mock import from_settings

    return from_settings(settings)


def available_sources() -> dict[str, tuple]:
    """``{name: (factory, priority, auto, fallback)}`` registered by the plugins (bad registrations reported,
    skipped)."""
    from ... import plugins

    found: dict[str, tuple] = {}

    def register(name: str, factory: Callable[..., Any], priority: int = 0, auto: bool = True,
                 fallback: bool = False) -> None:
        if not isinstance(name, str) or not name.strip() or "," in name:
            warn_once(repr(name)[:40], "greentrack_register_sources",
                      TypeError(f"a source name must be a non-empty string without commas, got {name!r}"[:120]))
            return
        if not callable(factory):
            warn_once(name, "greentrack_register_sources", TypeError(f"factory {factory!r} is not callable"[:120]))
            return
        if isinstance(priority, bool) or not isinstance(priority, (int, float)) or not math.isfinite(priority):
            warn_once(name, "greentrack_register_sources", TypeError(f"priority {priority!r} is not a number"))
            return
        found[name.strip()] = (factory, priority, bool(auto), bool(fallback))

    plugins.hook().greentrack_register_sources(register=register)
    return found


def check_source(src: Any, name: str) -> Any:
    """*src* if it implements :class:`base.Source` well enough to be sampled, else TypeError/ValueError.

    Checked: ``poll``, ``energy_j`` and ``close`` callables, a ``kind`` string, a positive finite
    ``poll_interval_s``, and ``devices`` a sequence of :class:`Device` with unique keys.
    """
    for attr in ("poll", "energy_j", "close"):
        if not callable(getattr(src, attr, None)):
            raise TypeError(f"source {name!r} ({type(src).__name__}) has no {attr}() method")
    kind = getattr(src, "kind", None)
    if not isinstance(kind, str):
        raise TypeError(f"source {name!r} has no kind (a string such as 'gpu'), got {kind!r}")
    interval = getattr(src, "poll_interval_s", None)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not (0 < interval < math.inf):
        raise ValueError(f"source {name!r} has poll_interval_s {interval!r}; expected seconds > 0")
    devices = getattr(src, "devices", None)
    try:
        devices = list(devices)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"source {name!r}: devices is {type(devices).__name__}, not a sequence of Device") from None
    keys = set()
    for d in devices:
        if not isinstance(d, Device) or not isinstance(d.key, str) or not d.key:
            raise TypeError(f"source {name!r}: device {d!r:.60} is not a greentrack Device with a key")
        if d.key in keys:
            raise ValueError(f"source {name!r}: two devices have the key {d.key!r}")
        keys.add(d.key)
    if not isinstance(getattr(src, "name", None), str):
        try:
            src.name = name
        except Exception:
            raise TypeError(f"source {name!r} has no name") from None
    return src


def _open(name: str, factory: Callable[..., Any], settings: Any) -> Any:
    """Call a factory and check what it built; SourceUnavailable passes through, anything else is TypeError."""
    try:
        src = factory(settings)
    except SourceUnavailable:
        raise
    except Exception as exc:  # a plugin's bug: not the hardware being absent
        raise _FactoryFailed(exc) from exc
    try:
        return check_source(src, name)
    except (TypeError, ValueError) as exc:
        _close_quietly(src)
        raise _FactoryFailed(exc) from exc


class _FactoryFailed(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _close_quietly(src: Any) -> None:
    try:
        src.close()
    except Exception:
        pass


def build_sources(settings: Any) -> tuple[list[Source], list[str]]:
    """Open the source(s) *settings.backend* names; returns (sources, notes).

    ``auto`` tries every auto source by priority and keeps the first that finds devices, plus
    any host-level sources (RAPL); a source whose factory fails (any exception) or builds
    something unusable is reported once and skipped. Fallback sources (the CPU model) are tried
    only when none of these measures anything, and then the first note says so. ``none``
    measures nothing. An unknown name, or a named source that cannot be opened, is a :class:`ConfigError`.
    """
    from ...errors import ConfigError, suggest

    backend = settings.backend
    notes: list[str] = []
    if backend in ("none", "off"):
        return [], ["backend 'none': no power is measured"]
    registry = available_sources()
    names = [n.strip() for n in backend.split(",") if n.strip()]
    if names != ["auto"]:
        sources: list[Any] = []
        for name in names:
            if name not in registry:
                for s in sources:
                    _close_quietly(s)
                raise ConfigError(
                    f"unknown backend {name!r}; known: auto, none, {', '.join(sorted(registry))}"
                    + suggest(name, registry)
                )
            try:
                sources.append(_open(name, registry[name][0], settings))
            except (SourceUnavailable, _FactoryFailed) as exc:
                for s in sources:
                    _close_quietly(s)
                what = "is not available here" if isinstance(exc, SourceUnavailable) else "failed to open"
                first = str(exc).splitlines()[0] if str(exc) else type(getattr(exc, "exc", exc)).__name__
                raise ConfigError(f"backend {name!r} {what}: {first}") from None
        return sources, notes
    gpu_found = False
    sources = []
    ranked = sorted(registry.items(), key=lambda kv: -kv[1][1])
    for name, (factory, _prio, auto, fallback) in ranked:
        if not auto or fallback:
            continue
        try:
            src = _open(name, factory, settings)
        except SourceUnavailable as exc:
            notes.append(f"{name}: {exc}")
            continue
        except _FactoryFailed as exc:
            warn_once(name, "source factory", exc.exc)
            first = str(exc).splitlines()[0] if str(exc) else type(exc.exc).__name__
            notes.append(f"{name}: source failed to open ({type(exc.exc).__name__}: {first}); skipped")
            continue
        if src.kind == "gpu":
            if gpu_found:
                _close_quietly(src)
                continue
            gpu_found = True
        sources.append(src)
    if not gpu_found:
        notes.insert(0, "no GPU power source found (set GREENTRACK_BACKEND=mock to simulate one)")
    if sources:
        return sources, notes
    for name, (factory, _prio, auto, fallback) in ranked:  # nothing measures here: a labelled model
        if not (auto and fallback):
            continue
        try:
            src = factory(settings)
        except SourceUnavailable as exc:
            notes.append(f"{name}: {exc}")
            continue
        why = "; ".join(n for n in notes if not n.startswith("no GPU power source")) or "no GPU, no RAPL"
        short = getattr(getattr(src, "inputs", None), "short", None)
        notes.insert(0, f"nothing here measures power ({why}): energy is modelled by {name}"
                        + (f" from CPU time x {short()}" if short else "") + "; modelled figures are marked ~")
        return [src], notes
    return sources, notes
