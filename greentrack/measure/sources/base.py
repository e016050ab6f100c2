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

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence


class SourceUnavailable(Exception):
    """Raised by a source factory when its hardware or library is not there."""


@dataclass
class Device:
    """One measured device. ``key`` is unique within a session (e.g. ``gpu0``)."""

    key: str
    kind: str  # "gpu", "cpu", "dram"
    index: int
    name: str
    uuid: str | None = None
    has_counter: bool = False
    series_method: str = "instant"  # "buffer", "instant", "average", "none"
    info: dict[str, Any] = field(default_factory=dict)

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
