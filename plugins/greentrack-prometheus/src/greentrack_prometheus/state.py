"""What the exporter knows of a run, kept so that its counters behave as Prometheus expects.

Pure bookkeeping, no prometheus_client: the per-process exporter feeds a :class:`RunState` from the
hooks (the sampler thread, at each flush), the node-level one from the store; the collector turns
:meth:`RunState.snapshot` into metric families.

- Counters are monotonic: a device's energy is the highest reading seen, so a reading that goes
  back (a device dropping out, a source switching method) never makes a counter decrease; a device
  that stops reporting keeps its last value until the run is dropped.
- Each joule is counted once, under the *innermost* phase open when it was drawn (``(none)``
  outside any phase). The energy a flush adds is split between phases in proportion to the power
  series of that flush, sample by sample, so a phase that starts between two flushes gets its own
  share, not the whole flush.
- A series is shown at 0 on its first scrape and at its value from the next one on: Prometheus'
  ``increase()`` ignores the first value of a series, so a phase that appears with 600 J already
  in it would otherwise lose those 600 J.
- The number of distinct phase names per run is capped (:data:`MAX_PHASES`); further names are
  counted under ``(other)``, which keeps label cardinality bounded whatever the program does.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

NO_PHASE = "(none)"
OTHER_PHASE = "(other)"
MAX_PHASES = 32
J_PER_KWH = 3.6e6
EPS_S = 1e-4  # well above float resolution of a unix time (~2.4e-7 s)


@dataclass(frozen=True)
class DeviceLabels:
    """A device as the ``greentrack_device_info`` series shows it."""

    key: str
    model: str = ""
    uuid: str = ""
    method: str = ""


@dataclass
class Snapshot:
    """A run's values for one scrape (plain data, safe to read outside the exporter's lock)."""

    labels: tuple[str, str, str, str, str]  # run, run_id, job_id, rank, host
    energy: list[tuple[str, str, float]]  # (device, phase, joules)
    co2e_g_per_j: float | None
    power: list[tuple[str, str, float]]  # (device, phase, watts)
    steps: float | None
    devices: list[DeviceLabels]
    region: str
    intensity_g_per_kwh: float | None
    intensity_source: str
    pue: float
    started_at: float | None
    ended_at: float | None


def phase_timeline(phases: Iterable[Any], w0: float, w1: float) -> tuple[list[float], list[str | None]]:
    """The innermost open phase over ``[w0, w1]`` as breakpoints and names.

    *phases* are objects with ``name``, ``started_at`` and ``ended_at`` (None while open), as
    :attr:`greentrack.RunView.phases` gives them. Returns ``(starts, names)``: ``names[i]`` holds from
    ``starts[i]`` to ``starts[i + 1]`` (None: no phase). Only phases that overlap the window are looked at.
    """
    rel = [p for p in phases
           if p.started_at <= w1 and (p.ended_at is None or p.ended_at > w0)]
    cuts = {w0}
    for p in rel:
        if w0 < p.started_at <= w1:
            cuts.add(p.started_at)
        if p.ended_at is not None and w0 < p.ended_at <= w1:
            cuts.add(p.ended_at)
    starts = sorted(cuts)
    names: list[str | None] = []
    for b in starts:
        best = None
        for p in rel:  # innermost: the latest started among those open at b
            if p.started_at <= b and (p.ended_at is None or b < p.ended_at):
                if best is None or p.started_at >= best.started_at:
                    best = p
        names.append(None if best is None else str(best.name))
    return starts, names


def _spread(segments: Iterable[tuple[float, float, float]], tl: tuple[list[float], list[str | None]],
            lo: float, hi: float) -> dict[str | None, float]:
    """Energy (W x s) of *segments* ``(t0, t1, W)`` clipped to ``(lo, hi]``, per phase of the timeline *tl*."""
    starts, names = tl
    out: dict[str | None, float] = {}
    for a, b, p in segments:
        a, b = max(a, lo), min(b, hi)
        i = max(bisect_right(starts, a) - 1, 0)
        while a < b:
            edge = starts[i + 1] if i + 1 < len(starts) else b
            end = min(b, edge) if edge > a else b
            out[names[i]] = out.get(names[i], 0.0) + p * (end - a)
            a = end
            i = min(i + 1, len(starts) - 1)
    return out


def _phase_at(tl: tuple[list[float], list[str | None]], t: float) -> str | None:
    starts, names = tl
    i = bisect_right(starts, t) - 1
    return names[max(i, 0)]


@dataclass
class RunState:
    """One run's counters and gauges. Not thread-safe by itself: the exporter holds a lock around it."""

    run_id: str
    name: str
    job_id: str | None = None
    rank: int | None = None
    host: str = ""
    started_at: float | None = None
    region: str | None = None
    intensity_g_per_kwh: float | None = None
    intensity_source: str | None = None
    pue: float = 1.0
    with_phase: bool = True
    zero_first: bool = True
    ended_at: float | None = None
    energy: dict[tuple[str, str], float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)  # device -> highest energy reading seen
    read_t: dict[str, float] = field(default_factory=dict)  # device -> when that reading was taken
    last_t: dict[str, float] = field(default_factory=dict)  # device -> time of its last power sample
    last_p: dict[str, float] = field(default_factory=dict)  # device -> its power
    first_t: dict[str, float] = field(default_factory=dict)  # device -> its first sample's time
    _new: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict, repr=False)
    power: dict[str, tuple[str, float]] = field(default_factory=dict)  # device -> (phase, W)
    steps: float | None = None
    devices: dict[str, DeviceLabels] = field(default_factory=dict)
    phase_names: set[str] = field(default_factory=set)
    shown: set[Any] = field(default_factory=set)
    last_scraped_at: float | None = None
    final_shown: bool = False  # a scrape after the run's end showed every series at its final value

    @property
    def labels(self) -> tuple[str, str, str, str, str]:
        return (self.name, self.run_id, self.job_id or "", "" if self.rank is None else str(self.rank), self.host)

    def phase_label(self, name: str | None) -> str:
        """The label value for phase *name* (``(none)`` outside phases; ``(other)`` past the cap)."""
        if not self.with_phase:
            return ""
        if name is None:
            return NO_PHASE
        if name in self.phase_names:
            return name
        if len(self.phase_names) >= MAX_PHASES:
            return OTHER_PHASE
        self.phase_names.add(name)
        return name

    def add_device(self, dev: DeviceLabels, phase: str | None = None) -> None:
        """Know *dev*; its energy series starts at 0 now (so the first scrape sees the run begin)."""
        self.devices[dev.key] = dev
        self.energy.setdefault((dev.key, self.phase_label(phase)), 0.0)

    def observe(self, readings: Mapping[str, float | None],
                batch: Sequence[tuple[str, Sequence[float], Sequence[float]]] = (),
                phases: Iterable[Any] = (), window_end: float | None = None,
                steps: float | None = None) -> None:
        """Take one flush: each device's energy so far (*readings*, read at *window_end*) and its new samples.

        A device's reading grew by the energy of the time since the previous reading; that increase
        is spread over the phases of that time in proportion to the power series (the new samples,
        then the last power held up to *window_end*, as the samples lag the energy reading), split
        exactly at phase edges. With no power known, in proportion to time. *phases* is read only
        for that window.
        """
        by_key = {k: (t, p) for k, t, p in batch if len(t)}
        segments = {key: self._segments(key, *series) for key, series in by_key.items()}
        if batch:  # a device without new samples in this flush has no current power
            for key in set(self.power) - set(by_key):
                del self.power[key]
        tl: tuple[list[float], list[str | None]] | None = None
        end_phase: str | None = None
        if self.with_phase and window_end is not None:
            lo = min([self.read_t.get(k, self._origin(k)) for k in readings] + [window_end - 2 * EPS_S])
            tl = phase_timeline(list(phases), lo, window_end)
            end_phase = _phase_at(tl, window_end - EPS_S)
        for key, watts in self._power_of(by_key).items():
            self.power[key] = (self.phase_label(end_phase), watts)
        for key, e in readings.items():
            if e is None:
                continue
            prev = self.high.get(key, 0.0)
            t0 = self.read_t.get(key, self._origin(key))
            if window_end is not None:
                self.read_t[key] = window_end
            if e <= prev:
                continue  # never backwards
            self.high[key] = e
            delta = e - prev
            if tl is None:
                k2 = (key, self.phase_label(end_phase))
                self.energy[k2] = self.energy.get(k2, 0.0) + delta
                continue
            segs = segments.get(key, [])
            hold = self.last_t.get(key)
            if hold is not None and window_end is not None and hold < window_end:
                segs = [*segs, (hold, window_end, self.last_p.get(key, 0.0))]
            weights = _spread(segs, tl, t0, window_end) if window_end is not None else {}
            if sum(weights.values()) <= 0:  # no power known for the window: in proportion to time
                weights = _spread([(t0, window_end, 1.0)], tl, t0, window_end) if window_end is not None else {}
            total = sum(weights.values())
            if total <= 0:
                weights, total = {end_phase: 1.0}, 1.0
            main = max(weights, key=lambda ph: weights[ph])
            rest = delta
            for ph, w in weights.items():  # shares by weight; the largest takes what is left, so they add up
                if ph != main:
                    share = delta * w / total
                    rest -= share
                    k2 = (key, self.phase_label(ph))
                    self.energy[k2] = self.energy.get(k2, 0.0) + share
            k2 = (key, self.phase_label(main))
            self.energy[k2] = self.energy.get(k2, 0.0) + max(rest, 0.0)
        if steps is not None and (self.steps is None or steps > self.steps):
            self.steps = float(steps)

    def _origin(self, key: str) -> float:
        """Where a device's energy starts: the run's start, else its first sample."""
        if self.started_at is not None:
            return self.started_at
        return self.first_t.get(key, 0.0)

    def _segments(self, key: str, times: Sequence[float], powers: Sequence[float]) -> list[tuple[float, float, float]]:
        """``(t0, t1, W)`` of the new samples of *key* (each is the average power since the sample before)."""
        out = []
        prev = self.last_t.get(key)
        if prev is None:
            self.first_t[key] = float(times[0])
        for t, p in zip(times, powers):
            t, p = float(t), float(p)
            if prev is not None and t > prev:
                out.append((prev, t, p))
            prev = t
        self.last_t[key] = float(times[-1])
        self.last_p[key] = float(powers[-1])
        self._new[key] = out
        return out

    def _power_of(self, by_key: Mapping[str, Any]) -> dict[str, float]:
        """Average power of each device over its new samples (its first sample alone: that sample's power)."""
        out = {}
        for key in by_key:
            segs = self._new.pop(key, [])
            span = sum(b - a for a, b, _ in segs)
            if span > 0:
                out[key] = sum((b - a) * p for a, b, p in segs) / span
            elif key in self.last_p:
                out[key] = self.last_p[key]
        return out

    def end(self, ended_at: float, readings: Mapping[str, float | None] | None = None,
            phases: Iterable[Any] = (), steps: float | None = None) -> None:
        """The run ended: take its final readings (the totals stored with it) and stop its power gauges."""
        if readings:
            self.observe(readings, (), phases, window_end=ended_at, steps=steps)
        elif steps is not None:
            self.observe({}, (), (), window_end=ended_at, steps=steps)
        self.power.clear()
        self.ended_at = ended_at

    def snapshot(self, now: float) -> Snapshot:
        """The values to show in the scrape at *now*; a series seen for the first time shows 0."""
        energy = []
        zero = False
        for (dev, ph), v in self.energy.items():
            key = ("e", dev, ph)
            if key not in self.shown and self.zero_first:
                v, zero = 0.0, zero or v > 0
            energy.append((dev, ph, v))
            self.shown.add(key)
        steps = self.steps
        if steps is not None:
            if "steps" not in self.shown and self.zero_first:
                steps, zero = 0.0, zero or steps > 0
            self.shown.add("steps")
        self.last_scraped_at = now
        self.final_shown = self.ended_at is not None and not zero
        g = self.intensity_g_per_kwh
        return Snapshot(
            labels=self.labels, energy=energy,
            co2e_g_per_j=None if g is None else self.pue * g / J_PER_KWH,
            power=[(dev, ph, w) for dev, (ph, w) in self.power.items()], steps=steps,
            devices=list(self.devices.values()), region=self.region or "",
            intensity_g_per_kwh=g, intensity_source=self.intensity_source or "", pue=self.pue,
            started_at=self.started_at, ended_at=self.ended_at)

    def expired(self, now: float, grace_s: float) -> bool:
        """Whether the run ended more than *grace_s* ago (its series are then dropped)."""
        return self.ended_at is not None and now - self.ended_at > grace_s
