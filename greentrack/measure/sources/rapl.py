"""CPU package and DRAM energy from RAPL, through Linux powercap (``/sys/class/powercap``).

Each ``intel-rapl:N`` zone (a CPU package; AMD CPUs appear under the same name) and its
``dram`` sub-zone is a device with an energy counter (``energy_uj``, µJ) that wraps at
``max_energy_range_uj``; the wrap is handled per device (``Device.info["wrap_j"]``). RAPL has
no power samples: the series is derived from counter deltas at each poll. Core, uncore and
platform (psys) zones are not recorded: core and uncore are inside the package, psys overlaps.

Since Linux 5.10 ``energy_uj`` is readable by root only. Where no zone is readable the
source is unavailable (``greentrack doctor`` says why) and nothing is recorded: no guess.
``GREENTRACK_RAPL_ROOT`` points at another powercap tree (containers that mount it elsewhere).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ...plugins import hookimpl
from ...settings import env as settings_env
from .base import Device, SourceUnavailable, timed_read

DEFAULT_ROOT = "/sys/class/powercap"
ENV_ROOT = "GREENTRACK_RAPL_ROOT"


class Zone:
    """One powercap zone: ``intel-rapl:0`` (package) or ``intel-rapl:0:2`` (its DRAM); *kind* is
    ``cpu`` or ``dram``. A plain class (see :class:`greentrack.measure.sampler.DeviceState`)."""

    def __init__(self, path: Path, zone_id: str, name: str, kind: str, package: int, readable: bool,
                 max_range_uj: int | None, error: str | None = None) -> None:
        self.path = path
        self.zone_id = zone_id
        self.name = name
        self.kind = kind
        self.package = package
        self.readable = readable
        self.max_range_uj = max_range_uj
        self.error = error

    def __repr__(self) -> str:
        return f"Zone({self.zone_id!r}, {self.name!r}, {self.kind}, readable={self.readable})"


def powercap_root() -> Path:
    return Path(settings_env(ENV_ROOT) or DEFAULT_ROOT)


def _read_int(p: Path) -> int:
    with open(p) as fh:
        return int(fh.read().strip())


def find_zones(root: Path | None = None) -> list[Zone]:
    """Package and DRAM zones under *root*, each with whether its counter can be read."""
    root = root or powercap_root()
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    zones = []
    for d in entries:
        parts = d.name.split(":")
        if parts[0] != "intel-rapl" or len(parts) not in (2, 3) or not all(x.isdigit() for x in parts[1:]):
            continue
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            continue
        if len(parts) == 2 and name.startswith("package"):
            kind = "cpu"
        elif len(parts) == 3 and name == "dram":
            kind = "dram"
        else:
            continue
        readable, err, max_range = _probe(d)
        zones.append(Zone(d, d.name[len("intel-rapl:"):], name, kind, int(parts[1]), readable, max_range, err))
    # sub-zones may also appear only nested inside the package folder
    for z in list(zones):
        if z.kind != "cpu":
            continue
        for sub in sorted(z.path.glob("intel-rapl:*:*")):
            if any(x.path.name == sub.name for x in zones):
                continue
            zones.extend(find_zones_in(sub))
    return sorted(zones, key=lambda z: (z.package, z.kind != "cpu", z.zone_id))


def find_zones_in(sub: Path) -> list[Zone]:
    """A nested ``intel-rapl:N:M`` folder as a zone, if it is a DRAM zone."""
    try:
        if (sub / "name").read_text().strip() != "dram":
            return []
    except OSError:
        return []
    parts = sub.name.split(":")
    readable, err, mr = _probe(sub)
    return [Zone(sub, sub.name[len("intel-rapl:"):], "dram", "dram", int(parts[1]), readable, mr, err)]


def _probe(zone: Path) -> tuple[bool, str | None, int | None]:
    """Whether a zone's counter is readable (and why not), and its wrap range in µJ."""
    readable, err = True, None
    try:
        _read_int(zone / "energy_uj")
    except PermissionError:
        readable, err = False, "energy_uj is readable by root only"
    except (OSError, ValueError) as exc:
        readable, err = False, f"energy_uj cannot be read ({exc})"
    try:
        max_range: int | None = _read_int(zone / "max_energy_range_uj")
    except (OSError, ValueError):
        max_range = None
    return readable, err, max_range


class RAPLSource:
    """Every readable RAPL package and DRAM zone of this machine."""

    name = "rapl"
    kind = "cpu"
    interval_means = True  # each sample is the mean power since the previous poll (a counter delta)
    poll_at_edges = True  # a poll is one file read: a test's window starts at a sample

    def __init__(self, root: Path | str | None = None, clock: Callable[[], float] = time.time,
                 poll_interval_s: float | None = None) -> None:
        self.root = Path(root) if root else powercap_root()
        self.clock = clock
        self.poll_interval_s = poll_interval_s or 1.0
        zones = find_zones(self.root)
        if not zones:
            raise SourceUnavailable(f"no RAPL zones under {self.root}")
        usable = [z for z in zones if z.readable]
        if not usable:
            raise SourceUnavailable(f"RAPL zones under {self.root} are not readable ({zones[0].error})")
        self.devices: list[Device] = []
        self._files: dict[str, Path] = {}
        self._last: dict[str, tuple[float, int]] = {}
        for z in usable:
            key = f"{'cpu' if z.kind == 'cpu' else 'dram'}{z.package}"
            info: dict[str, Any] = {"zone": f"intel-rapl:{z.zone_id}"}
            if z.max_range_uj:
                info["wrap_j"] = z.max_range_uj / 1e6
            self.devices.append(Device(key=key, kind=z.kind, index=z.package, name=f"RAPL {z.name}", uuid=None,
                                       has_counter=True, series_method="delta", info=info))
            self._files[key] = z.path / "energy_uj"
        for d in self.devices:  # so the first poll already gives a power
            try:
                self._last[d.key] = (clock(), self._read_uj(d))
            except (OSError, ValueError):
                pass

    def _read_uj(self, device: Device) -> int:
        return _read_int(self._files[device.key])

    def energy_j(self, device: Device) -> float | None:
        """The zone's counter in joules (wraps at ``device.info['wrap_j']``)."""
        return self._read_uj(device) / 1e6

    def poll(self, device: Device) -> list[tuple[float, float]]:
        """Average power since the previous poll, from the counter delta (wrap handled)."""
        now, uj = timed_read(lambda: self._read_uj(device), self.clock)
        prev = self._last.get(device.key)
        self._last[device.key] = (now, uj)
        if prev is None or now <= prev[0]:
            return []
        d = uj - prev[1]
        if d < 0:
            wrap = device.info.get("wrap_j")
            if not wrap:
                return []
            d += int(round(wrap * 1e6))
        return [(now, d / 1e6 / (now - prev[0]))]

    def close(self) -> None:
        pass


def from_settings(settings: Any) -> RAPLSource:
    return RAPLSource(poll_interval_s=getattr(settings, "sample_interval_s", None))


@hookimpl
def greentrack_register_sources(register: Callable[..., None]) -> None:
    register("rapl", from_settings, priority=50, auto=True)
