"""A snapshot of a running session as of now, read without touching hardware: for live displays.

The sampler thread polls the sources (every 1 s for a sample buffer, 0.1 s for instant power)
and reads the energy counters at each flush. A display refreshed between two polls would show
energy up to a second old; :func:`snapshot` brings each device's energy up to *now* with its
latest power reading (at most :data:`MAX_EXTRAPOLATION_S` ahead, so a sensor that stopped
answering is not extrapolated forever). Nothing here calls a source: only values the sampler
already holds are read, so it is safe on any thread and costs microseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

MAX_EXTRAPOLATION_S = 5.0


@dataclass(frozen=True)
class Snapshot:
    """A session's figures at ``at`` (wall clock): elapsed time, total power, energy, CO2e so far."""

    at: float
    elapsed_s: float
    power_w: float | None  # sum of each device's latest power reading
    energy_j: float | None  # brought up to ``at``
    co2e_kg: float | None
    steps: int
    phase: str | None
    devices: int


def device_energy_now(st: Any, now: float) -> float | None:
    """One device's energy up to *now*: its newest total (counter or series), plus its latest power since."""
    acc = st.acc
    base_j: float | None = None
    base_t: float | None = None
    if acc.n_raw:
        base_j, base_t = acc.cum_j, acc.last_t
    if st.device.has_counter and not st.counter_failed and st.counter_start_j is not None:
        t = st.counter_last_t
        if t is not None and (base_t is None or t > base_t):
            base_j, base_t = st.counter_sum_j, t
    if base_j is None or base_t is None:
        return None
    ahead = min(max(0.0, now - base_t), MAX_EXTRAPOLATION_S)
    return float(base_j) + (float(acc.last_p) * ahead if acc.n_raw else 0.0)


def snapshot(session: Any, now: float | None = None) -> Snapshot:
    """The live figures of *session* (a :class:`~greentrack.measure.tracker.Session`) at *now*."""
    now = time.time() if now is None else now
    t0 = session.started_at
    elapsed = 0.0 if t0 is None else max(0.0, (session.ended_at or now) - t0)
    sampler = session.sampler
    states = list(sampler.states) if sampler is not None else []
    powers = [float(st.acc.last_p) for st in states if st.acc.n_raw]
    energies = [e for e in (device_energy_now(st, now) for st in states) if e is not None]
    energy = sum(energies) if energies else None
    co2 = None
    intensity = session.intensity
    if energy is not None and intensity is not None:
        from ..carbon.footprint import operational

        co2 = operational(energy, session.pue, intensity.g_per_kwh).co2e_kg
    open_phases = list(session._open_phases)
    return Snapshot(at=now, elapsed_s=elapsed, power_w=sum(powers) if powers else None, energy_j=energy,
                       co2e_kg=co2, steps=session._steps.steps, phase=open_phases[-1][0] if open_phases else None,
                       devices=len(states))
