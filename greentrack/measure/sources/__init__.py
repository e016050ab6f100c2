"""Power sources. Each vendor has its own module; all implement :class:`base.Source`."""

from .base import Device, NullSource, Reading, Source, SourceUnavailable

__all__ = ["Device", "Source", "SourceUnavailable", "NullSource", "Reading", "build_sources", "available_sources"]


def available_sources() -> dict[str, tuple]:
    """``{name: (factory, priority, auto, fallback)}`` registered by the plugins."""
    from ... import plugins

    found: dict[str, tuple] = {}

    def register(name: str, factory, priority: int = 0, auto: bool = True, fallback: bool = False) -> None:
        found[name] = (factory, priority, auto, fallback)

    plugins.hook().greentrack_register_sources(register=register)
    return found


def build_sources(settings) -> tuple[list[Source], list[str]]:
    """Open the source(s) *settings.backend* names; returns (sources, notes).

    ``auto`` tries every auto source by priority and keeps the first that finds devices, plus
    any host-level sources (RAPL). Fallback sources (the CPU model) are tried only when none of
    these measures anything, and then the first note says so. ``none`` measures nothing. An
    unknown name is an error.
    """
    from ...errors import ConfigError, suggest

    backend = settings.backend
    notes: list[str] = []
    if backend in ("none", "off"):
        return [], ["backend 'none': no power is measured"]
    registry = available_sources()
    names = [n.strip() for n in backend.split(",") if n.strip()]
    if names != ["auto"]:
        sources = []
        for name in names:
            if name not in registry:
                raise ConfigError(
                    f"unknown backend {name!r}; known: auto, none, {', '.join(sorted(registry))}"
                    + suggest(name, registry)
                )
            try:
                sources.append(registry[name][0](settings))
            except SourceUnavailable as exc:
                raise ConfigError(f"backend {name!r} is not available here: {exc}") from None
        return sources, notes
    gpu_found = False
    sources = []
    ranked = sorted(registry.items(), key=lambda kv: -kv[1][1])
    for name, (factory, _prio, auto, fallback) in ranked:
        if not auto or fallback:
            continue
        try:
            src = factory(settings)
        except SourceUnavailable as exc:
            notes.append(f"{name}: {exc}")
            continue
        if src.kind == "gpu":
            if gpu_found:
                src.close()
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
