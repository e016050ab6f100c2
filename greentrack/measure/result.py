"""What a finished session reports: totals, per device, per phase, per step."""

from __future__ import annotations

from dataclasses import asdict, field
from typing import Any

from ..lean_dataclass import LeanDataclass, lean_dataclass
from ..units import J_PER_KWH


@lean_dataclass
class DeviceResult(LeanDataclass):
    """One device's totals. A dataclass that writes its own ``__init__`` (see greentrack.lean_dataclass)."""

    key: str
    kind: str
    index: int
    name: str
    uuid: str | None
    method: str  # counter | buffer | instant | average | delta | model | none
    series_method: str
    energy_j: float | None
    series_energy_j: float | None
    avg_power_w: float | None
    peak_power_w: float | None
    n_samples: int = 0
    gaps: list[tuple[float, float]] = field(default_factory=list)  # data gaps: (from, to), no reading between
    info: dict[str, Any] = field(default_factory=dict)
    unmeasured_s: float = 0.0  # seconds of its gaps whose energy no reading measured (left out of energy_j)

    def __init__(self, key: str, kind: str, index: int, name: str, uuid: str | None, method: str,
                 series_method: str, energy_j: float | None, series_energy_j: float | None,
                 avg_power_w: float | None, peak_power_w: float | None, n_samples: int = 0,
                 gaps: list[tuple[float, float]] | None = None, info: dict[str, Any] | None = None,
                 unmeasured_s: float = 0.0) -> None:
        self.key = key
        self.kind = kind
        self.index = index
        self.name = name
        self.uuid = uuid
        self.method = method
        self.series_method = series_method
        self.energy_j = energy_j
        self.series_energy_j = series_energy_j
        self.avg_power_w = avg_power_w
        self.peak_power_w = peak_power_w
        self.n_samples = n_samples
        self.gaps = [] if gaps is None else gaps
        self.info = {} if info is None else info
        self.unmeasured_s = unmeasured_s


@lean_dataclass
class PhaseResult(LeanDataclass):
    """One phase's bounds, energy and steps."""

    name: str
    started_at: float
    ended_at: float
    energy_j: float | None
    steps: int = 0

    def __init__(self, name: str, started_at: float, ended_at: float, energy_j: float | None,
                 steps: int = 0) -> None:
        self.name = name
        self.started_at = started_at
        self.ended_at = ended_at
        self.energy_j = energy_j
        self.steps = steps

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def energy_kwh(self) -> float | None:
        return None if self.energy_j is None else self.energy_j / J_PER_KWH


@lean_dataclass
class RunResult(LeanDataclass):
    """Totals of one run. Energies in joules, with ``*_kwh`` views; None where unmeasured."""

    run_id: str
    name: str
    status: str
    started_at: float
    ended_at: float
    energy_j: float | None
    co2e_kg: float | None
    region: str | None
    intensity_g_per_kwh: float | None
    intensity_source: str | None
    pue: float = 1.0
    devices: list[DeviceResult] = field(default_factory=list)
    phases: list[PhaseResult] = field(default_factory=list)
    outside_phases_j: float | None = None
    steps: int = 0
    samples: float | None = None
    tokens: float | None = None
    step_stats: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    budget: dict[str, Any] | None = None
    #: wall-clock seconds in which some device's energy was not measured (a data gap no counter bridged)
    unmeasured_s: float = 0.0
    #: every data gap: ``{"device", "from", "to", "energy_j"}`` (energy_j: what a counter measured across it, or None)
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def __init__(self, run_id: str, name: str, status: str, started_at: float, ended_at: float,
                 energy_j: float | None, co2e_kg: float | None, region: str | None,
                 intensity_g_per_kwh: float | None, intensity_source: str | None, pue: float = 1.0,
                 devices: list[DeviceResult] | None = None, phases: list[PhaseResult] | None = None,
                 outside_phases_j: float | None = None, steps: int = 0, samples: float | None = None,
                 tokens: float | None = None, step_stats: dict[str, Any] | None = None,
                 notes: list[str] | None = None, budget: dict[str, Any] | None = None, unmeasured_s: float = 0.0,
                 gaps: list[dict[str, Any]] | None = None) -> None:
        self.run_id = run_id
        self.name = name
        self.status = status
        self.started_at = started_at
        self.ended_at = ended_at
        self.energy_j = energy_j
        self.co2e_kg = co2e_kg
        self.region = region
        self.intensity_g_per_kwh = intensity_g_per_kwh
        self.intensity_source = intensity_source
        self.pue = pue
        self.devices = [] if devices is None else devices
        self.phases = [] if phases is None else phases
        self.outside_phases_j = outside_phases_j
        self.steps = steps
        self.samples = samples
        self.tokens = tokens
        self.step_stats = step_stats
        self.notes = [] if notes is None else notes
        self.budget = budget
        self.unmeasured_s = unmeasured_s
        self.gaps = [] if gaps is None else gaps

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def energy_kwh(self) -> float | None:
        return None if self.energy_j is None else self.energy_j / J_PER_KWH

    @property
    def energy_method(self) -> str | None:
        """``measured``, ``model`` (estimated from CPU time, not measured) or ``mixed``; None if nothing."""
        from ..store.records import energy_method

        return energy_method(d.method for d in self.devices if d.energy_j is not None)

    @property
    def co2e_g(self) -> float | None:
        return None if self.co2e_kg is None else self.co2e_kg * 1000.0

    @property
    def avg_power_w(self) -> float | None:
        if self.energy_j is None or self.duration_s <= 0:
            return None
        return self.energy_j / self.duration_s

    @property
    def peak_power_w(self) -> float | None:
        peaks = [d.peak_power_w for d in self.devices if d.peak_power_w is not None]
        return sum(peaks) if peaks else None

    def phase(self, name: str) -> PhaseResult:
        """The (last) phase of that name."""
        for p in reversed(self.phases):
            if p.name == name:
                return p
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(duration_s=self.duration_s, energy_kwh=self.energy_kwh, avg_power_w=self.avg_power_w,
                 peak_power_w=self.peak_power_w)
        return d

    def summary(self) -> str:
        """One line for people."""
        from ..units import fmt_co2, fmt_duration, fmt_energy, mark, shorten

        how = self.energy_method  # "model" figures (the CPU model) are marked ~
        return (f"{shorten(self.name, 80)} [{self.run_id}] {self.status}: {fmt_duration(self.duration_s)}, "
                f"{mark(fmt_energy(self.energy_j), how)}, {mark(fmt_co2(self.co2e_kg), how)}")
