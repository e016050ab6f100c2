"""The source protocol every power source implements (NVML, RAPL, mock, plugins).

A source owns one or more devices. The sampler thread calls, for each device:

- :meth:`Source.poll` at the source's ``poll_interval_s``: new ``(t_s, power_w)`` samples
  (wall-clock seconds) since the previous poll, from a driver buffer or one instant read;
- :meth:`Source.energy_j` at start, end and each flush: a cumulative energy counter in
  joules, or None when the device has none.

Totals come from the counter where there is one; the time series gives per-step and
per-phase energy. Each device records which ``method`` produced its numbers.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Callable, Protocol, Sequence, TypeVar

from ...lean_dataclass import LeanDataclass, lean_dataclass

T = TypeVar("T")

READ_SPREAD_S = 0.002  # a reading is dated to within this much of when it was taken, or read again
READ_TRIES = 4


def timed_read(read: Callable[[], T], clock: Callable[[], float]) -> tuple[float, T]:
    """``(t, value)``: a reading and the time it was taken, the clock read on both sides of it.

    A thread can lose the CPU between a reading and its timestamp for seconds: another thread
    holding the GIL in a long C call, or the OS. A reading dated then would move the energy it
    accounts to the wrong side of a test's or phase's edge (a derived source: the CPU model, RAPL),
    or misdate a power sample. When the two clock readings are more than :data:`READ_SPREAD_S`
    apart the reading is taken again (at most :data:`READ_TRIES` times in all; the tightest pair
    is kept), and the midpoint dates it.
    """
    best: tuple[float, float, Any] | None = None
    for _ in range(READ_TRIES):
        t0 = clock()
        val = read()
        t1 = clock()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, t0 + (t1 - t0) / 2, val)
        if t1 - t0 <= READ_SPREAD_S:
            break
    assert best is not None
    return best[1], best[2]


class SourceUnavailable(Exception):
    """Raised by a source factory when its hardware or library is not there."""


@lean_dataclass
class Device(LeanDataclass):
    """One measured device. ``key`` is unique within a session (e.g. ``gpu0``). A dataclass that writes
    its own ``__init__`` (see greentrack.lean_dataclass)."""

    key: str
    kind: str  # "gpu", "cpu", "dram"
    index: int
    name: str
    uuid: str | None = None
    has_counter: bool = False
    series_method: str = "instant"  # "buffer", "instant", "average", "none"
    info: dict[str, Any] = field(default_factory=dict)

    def __init__(self, key: str, kind: str, index: int, name: str, uuid: str | None = None,
                 has_counter: bool = False, series_method: str = "instant", info: dict[str, Any] | None = None) -> None:
        self.key = key
        self.kind = kind
        self.index = index
        self.name = name
        self.uuid = uuid
        self.has_counter = has_counter
        self.series_method = series_method
        self.info = {} if info is None else info

    @property
    def method(self) -> str:
        """What produced the device's total: ``counter`` or the series method."""
        return "counter" if self.has_counter else self.series_method


Reading = tuple  # (t_s, power_w)


class Source(Protocol):
    """What the sampler needs of a power source."""

    name: str
    kind: str
    poll_interval_s: float
    devices: Sequence[Device]

    def poll(self, device: Device) -> list[Reading]:
        """New samples since the last call, oldest first."""

    def energy_j(self, device: Device) -> float | None:
        """Cumulative energy counter in joules (any origin), or None."""

    def close(self) -> None:
        """Release the library or handles."""


class NullSource:
    """A source with no devices: what is measured when nothing can be."""

    name = "none"
    kind = "none"
    poll_interval_s = 1.0
    devices: Sequence[Device] = ()

    def poll(self, device: Device) -> list[Reading]:
        return []

    def energy_j(self, device: Device) -> float | None:
        return None

    def close(self) -> None:
        pass
