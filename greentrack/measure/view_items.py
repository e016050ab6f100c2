"""The items of a :class:`~greentrack.measure.view.RunView`: a device and a phase, as hooks see them.

Their own module so that a session imports them only when a hook reads ``run.devices`` or
``run.phases``: each ``@dataclass`` generates its methods when created (about half a millisecond
each, ``python benchmarks/bench_pytest_breakdown.py --only 4``), a cost every pytest run with the
plugin enabled would otherwise pay at its start. ``greentrack.measure.view`` still exports both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceInfo:
    """A measured device: ``gpu0``/``cpu0`` key, kind, index, model name, UUID, how its total is measured."""

    key: str
    kind: str
    index: int
    name: str
    uuid: str | None
    method: str
    series_method: str


@dataclass(frozen=True)
class PhaseMark:
    """A phase so far: *ended_at* is None while it is open."""

    name: str
    started_at: float
    ended_at: float | None


__all__ = ["DeviceInfo", "PhaseMark"]
