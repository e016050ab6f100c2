"""greentrack: the energy, carbon and cost of machine-learning work.

    import greentrack

    with greentrack.session("llama-ft", region="FR", tags={"precision": "bf16"}) as s:
        for batch in loader:
            train_step(batch)
            s.step(samples=len(batch))
    print(s.result.energy_kwh, s.result.co2e_kg)

Importing greentrack is cheap: the public names load their modules on first use.
"""

from __future__ import annotations

__all__ = ["session", "track", "live", "Session", "RunView", "runs", "load", "hookimpl", "GreentrackError",
           "__version__"]

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._version import __version__
    from .errors import GreentrackError
    from .measure.live import live
    from .measure.tracker import Session, session, track
    from .measure.view import RunView
    from .plugins import hookimpl

_LAZY = {
    "__version__": ("greentrack._version", "__version__"),
    "session": ("greentrack.measure.tracker", "session"),
    "track": ("greentrack.measure.tracker", "track"),
    "live": ("greentrack.measure.live", "live"),
    "Session": ("greentrack.measure.tracker", "Session"),
    "RunView": ("greentrack.measure.view", "RunView"),
    "hookimpl": ("greentrack.plugins", "hookimpl"),
    "GreentrackError": ("greentrack.errors", "GreentrackError"),
    "runs": ("greentrack.api", "runs"),
    "load": ("greentrack.api", "load"),
}


def __getattr__(name: str) -> "object":
    try:
        modname, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'greentrack' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(modname), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
