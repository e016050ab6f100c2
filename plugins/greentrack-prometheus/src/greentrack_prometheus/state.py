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
    last_t: dict[str, float] = field(default_factory=dict)  # device -> time of its last power sample
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
        """Take one flush: the energy so far of each device (*readings*), the new power samples.

        The increase of a device's reading is split between the phases of the flush window in
        proportion to its power samples (the phase of a sample interval is the one at its middle);
        with no samples, it goes to the phase open at *window_end*. *phases* is only read for the
        window this flush covers.
        """
        by_key = {k: (t, p) for k, t, p in batch}
        phases = list(phases) if self.with_phase else []
        ends = [t[-1] for _, t, _ in batch if len(t)]
        w1 = max(ends + ([window_end] if window_end is not None else [])) if (ends or window_end is not None) else 0.0
        w0 = min([self.last_t.get(k, t[0]) for k, t, _ in batch if len(t)] or [w1])
        w0 = min(w0, w1 - 2 * EPS_S)
        tl = phase_timeline(phases, w0, w1) if phases else ([w0], [None])
        end_phase = _phase_at(tl, w1 - EPS_S)
        weights_of: dict[str, dict[str | None, float]] = {}
        if batch:  # a device without new samples in this flush has no current power
            for key in set(self.power) | set(by_key):
                weights_of[key], watts = self._weigh(key, by_key.get(key), tl)
                if watts is None:
                    self.power.pop(key, None)
                else:
                    self.power[key] = (self.phase_label(end_phase), watts)
        for key, e in readings.items():
            if e is None:
                continue
            prev = self.high.get(key, 0.0)
            if e <= prev:
                continue  # never backwards
            self.high[key] = e
            delta = e - prev
            weights = weights_of.get(key, {})
            total = sum(weights.values())
            if total > 0:
                for ph, w in weights.items():
                    k2 = (key, self.phase_label(ph))
                    self.energy[k2] = self.energy.get(k2, 0.0) + delta * w / total
            else:
                k2 = (key, self.phase_label(end_phase))
                self.energy[k2] = self.energy.get(k2, 0.0) + delta
        if steps is not None and (self.steps is None or steps > self.steps):
            self.steps = float(steps)

    def _weigh(self, key: str, series: tuple[Sequence[float], Sequence[float]] | None,
               tl: tuple[list[float], list[str | None]]) -> tuple[dict[str | None, float], float | None]:
        """Energy of the new samples of *key* per phase, and their average power (None: no interval)."""
        weights: dict[str | None, float] = {}
        if not series:
            return weights, None
        times, powers = series
        prev = self.last_t.get(key)
        first = prev
        span = energy = 0.0
        for t, p in zip(times, powers):
            t, p = float(t), float(p)
            if prev is not None and t > prev:
                dt = t - prev
                ph = _phase_at(tl, prev + dt / 2) if len(tl[0]) > 1 else tl[1][0]
                weights[ph] = weights.get(ph, 0.0) + p * dt
                span += dt
                energy += p * dt
            prev = t
        if prev is not None:
            self.last_t[key] = prev
        if first is None and not span and len(times):
            return weights, float(powers[-1])  # the run's very first sample: its power, no interval yet
        return weights, (energy / span if span > 0 else None)

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
