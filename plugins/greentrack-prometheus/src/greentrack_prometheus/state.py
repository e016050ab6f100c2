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

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

NO_PHASE = "(none)"
OTHER_PHASE = "(other)"
MAX_PHASES = 32
J_PER_KWH = 3.6e6
MAX_RECENT = 4096  # power samples kept per device for readings that lag them
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
        if a >= b:
            continue
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
    first_p: dict[str, float] = field(default_factory=dict)  # device -> its power
    from_t: dict[str, float] = field(default_factory=dict)  # device -> when its live energy starts counting
    recent: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict, repr=False)  # samples since
    _new: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict, repr=False)
    power: dict[str, tuple[str, float]] = field(default_factory=dict)  # device -> (phase, W)
    steps: float | None = None
    devices: dict[str, DeviceLabels] = field(default_factory=dict)
    phase_names: set[str] = field(default_factory=set)
    shown: set[Any] = field(default_factory=set)
    last_scraped_at: float | None = None
    final_scrapes: int = 0  # scrapes after the run's end that showed every series at its final value

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
                steps: float | None = None, read_at: Mapping[str, float] | None = None,
                counts_from: Mapping[str, float] | None = None, final: bool = False) -> None:
        """Take one flush: each device's energy so far (*readings*, read at *read_at*, else at
        *window_end*) and its new samples.

        A device's reading grew by the energy of the time since the previous reading; that increase
        is spread over the phases of that time in proportion to the power series (the new samples,
        then the last power held up to the reading, as the samples lag it), split exactly at phase
        edges; with no power known, in proportion to time. A live reading counts from
        *counts_from* (greentrack bases a counter at its first refresh after the start): the
        run's totals (*final*) also hold the energy from the run's start to then, spread likewise.
        *phases* is read only for the times these windows cover.
        """
        by_key = {k: (t, p) for k, t, p in batch if len(t)}
        for key, series in by_key.items():
            self._segments(key, *series)
        if batch:  # a device without new samples in this flush has no current power
            for key in set(self.power) - set(by_key):
                del self.power[key]
        for key, t in (counts_from or {}).items():
            self.from_t.setdefault(key, float(t))
        tl: tuple[list[float], list[str | None]] | None = None
        end_phase: str | None = None
        if self.with_phase and window_end is not None:
            starts = [self.read_t.get(k, self._from(k)) for k in readings]
            if final and self.started_at is not None:
                starts.append(self.started_at)
            tl = phase_timeline(list(phases), min([*starts, window_end - 2 * EPS_S]), window_end)
            end_phase = _phase_at(tl, window_end - EPS_S)
        for key, watts in self._power_of(by_key).items():
            self.power[key] = (self.phase_label(end_phase), watts)
        for key, e in readings.items():
            if e is None:
                continue
            prev = self.high.get(key, 0.0)
            t0 = self.read_t.get(key, self._from(key))
            t1 = window_end
            if window_end is not None:
                t1 = min(window_end, (read_at or {}).get(key, window_end))
                self.read_t[key] = max(t0, t1)
            if e <= prev:
                continue  # never backwards
            self.high[key] = e
            delta = e - prev
            if tl is None or t1 is None:
                self._add(key, {end_phase: 1.0}, delta)
                continue
            # estimated joules per phase: the power series over the window since the last reading (in
            # proportion to time when no power is known for it), then for the run's totals the start edge
            # the live readings did not hold, at the first power sampled
            weights = _spread(self._known_power(key, t1), tl, t0, t1)
            held = self.first_p.get(key, self.last_p.get(key, 1.0)) or 1.0
            if sum(weights.values()) <= 0:
                weights = _spread([(t0, t1, held)], tl, t0, t1)
            edge = self._from(key)
            if final and self.started_at is not None and edge > self.started_at:
                for ph, w in _spread([(self.started_at, edge, held)], tl, self.started_at, edge).items():
                    weights[ph] = weights.get(ph, 0.0) + w
            self._add(key, weights if sum(weights.values()) > 0 else {end_phase: 1.0}, delta)
        for key, segs in self.recent.items():  # keep the samples a later reading may still need (bounded)
            cut = self.read_t.get(key, -math.inf)
            self.recent[key] = [sg for sg in segs if sg[1] > cut][-MAX_RECENT:]
        if steps is not None and (self.steps is None or steps > self.steps):
            self.steps = float(steps)

    def _add(self, key: str, weights: Mapping[str | None, float], delta: float) -> None:
        """Add *delta* joules of device *key* to its phases by *weights*; the shares add up to *delta* exactly."""
        total = sum(weights.values())
        main = max(weights, key=lambda ph: weights[ph])
        rest = delta
        for ph, w in weights.items():  # the largest share takes what is left
            if ph != main:
                share = delta * w / total
                rest -= share
                k2 = (key, self.phase_label(ph))
                self.energy[k2] = self.energy.get(k2, 0.0) + share
        k2 = (key, self.phase_label(main))
        self.energy[k2] = self.energy.get(k2, 0.0) + max(rest, 0.0)

    def _known_power(self, key: str, t1: float) -> list[tuple[float, float, float]]:
        """The power of *key* over time as far as known: its first sample's power held back to the run's
        start, the samples since its last reading, the last power held up to *t1*."""
        segs = list(self.recent.get(key, []))
        first = self.first_t.get(key)
        if first is not None:
            segs.insert(0, (min(first, self.started_at if self.started_at is not None else first), first,
                            self.first_p.get(key, 0.0)))
        hold = self.last_t.get(key)
        if hold is not None and hold < t1:
            segs.append((hold, t1, self.last_p.get(key, 0.0)))
        return segs

    def _from(self, key: str) -> float:
        """Where a device's live energy starts counting: as told, else the run's start, else its first sample."""
        if key in self.from_t:
            return self.from_t[key]
        if self.started_at is not None:
            return self.started_at
        return self.first_t.get(key, 0.0)

    def _segments(self, key: str, times: Sequence[float], powers: Sequence[float]) -> list[tuple[float, float, float]]:
        """``(t0, t1, W)`` of the new samples of *key* (each is the average power since the sample before)."""
        out = []
        prev = self.last_t.get(key)
        if prev is None:
            self.first_t[key] = float(times[0])
            self.first_p[key] = float(powers[0])
        for t, p in zip(times, powers):
            t, p = float(t), float(p)
            if prev is not None and t > prev:
                out.append((prev, t, p))
            prev = t
        self.last_t[key] = float(times[-1])
        self.last_p[key] = float(powers[-1])
        self._new[key] = out
        self.recent.setdefault(key, []).extend(out)
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
            self.observe(readings, (), phases, window_end=ended_at, steps=steps, final=True)
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
        if self.ended_at is not None and not zero:
            self.final_scrapes += 1
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
