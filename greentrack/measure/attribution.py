"""Attribution: a finished session's totals per device, per phase and per step.

Totals come from each device's energy counter, its edges (before the first dated reading and
after the last) filled from the power series; phases and steps get their energy from the series,
scaled per device so that they add up to the counter's total. No I/O, and no session: the
input is a plain :class:`RunRecord` of what was marked and measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..carbon.footprint import operational
from ..notify import say_once
from . import energy as E
from .result import DeviceResult, PhaseResult, RunResult


@dataclass
class RunRecord:
    """Everything attribution needs of a stopped session, and nothing else.

    *states* are the sampler's per-device states (their accumulators hold the power series and
    their counter readings); *marks* are ``(time, samples, tokens)`` of each ``step()``; *phases*
    ``(name, start, end)``; *notes* the session's notes so far (attribution adds its own).
    """

    run_id: str
    name: str
    started_at: float
    ended_at: float
    states: Sequence[Any]
    marks: Sequence[tuple[float, Any, Any]]
    phases: Sequence[tuple[str, float, float]]
    intensity: Any
    pue: float
    measured: bool  # whether any source was open
    budget_kwh: float | None = None
    budget_co2e_kg: float | None = None
    budget_exceeded: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def usage(self, total_j: float) -> dict[str, float]:
        """What *total_j* joules mean against the budgets: ``energy_kwh`` and ``co2e_kg`` (with PUE)."""
        return usage(total_j, self.pue, self.intensity.g_per_kwh)


def usage(total_j: float, pue: float, g_per_kwh: float) -> dict[str, float]:
    """``{"energy_kwh": ..., "co2e_kg": ...}`` of *total_j* joules (kWh before PUE, CO2e with it)."""
    op = operational(total_j, pue, g_per_kwh)
    return {"energy_kwh": op.it_kwh, "co2e_kg": op.co2e_kg}


def compute_result(session: RunRecord, status: str) -> RunResult:
    """Totals per device (counter, edges from the series), phases, steps, CO2e, budget outcome."""
    t0, t1 = session.started_at, session.ended_at
    devices: list[DeviceResult] = []
    scales: list[tuple[float, Any]] = []
    total: float | None = None
    for st in session.states:
        acc = st.acc
        series_j = acc.series_energy_j(t0, t1) if acc.n_raw else None
        counter_j = st.counter_energy_j() if (st.device.has_counter and not st.counter_failed) else None
        if counter_j is not None and series_j is not None and st.counter_last_t is not None:
            # the counter covers its first to its last read; the series fills the run's edges
            # (the first read comes after start-up, the last after stop, or before a counter
            # that stopped answering): signed, so energy read after t1 is taken off
            first_t = getattr(st, "counter_first_t", None)
            if first_t is not None:
                counter_j += acc.series_energy_j(t0, first_t)
            counter_j += acc.series_energy_j(st.counter_last_t, t1)
        if counter_j is not None and series_j is not None and not st.start_dated:
            # stopped before the counter's first refresh: its start reading cannot be dated
            # (up to one refresh, 0.1 s, stale), so the power series gives this short run's total
            counter_j = None
            session.notes.append(f"{st.device.key}: run shorter than the energy counter's first refresh; "
                              "total from the power series")
        if counter_j is not None:
            dev_j, method = counter_j, "counter"
        else:
            dev_j, method = series_j, (st.device.series_method if series_j is not None else "none")
        if dev_j is not None:
            total = (total or 0.0) + dev_j
            scales.append((E.reconcile_scale(series_j or 0.0, dev_j) if series_j else 1.0, acc))
        dur = t1 - t0
        devices.append(DeviceResult(
            key=st.device.key, kind=st.device.kind, index=st.device.index, name=st.device.name,
            uuid=st.device.uuid, method=method, series_method=st.device.series_method, energy_j=dev_j,
            series_energy_j=series_j, avg_power_w=(dev_j / dur) if (dev_j is not None and dur > 0) else None,
            peak_power_w=acc.peak_w if acc.n_raw else None, n_samples=acc.n_raw, gaps=list(st.gaps),
            info=dict(st.device.info, counter_anomaly=True) if st.counter_anomaly else dict(st.device.info)))

    def energy_at(t: float) -> float:
        return sum(scale * acc.cumulative_j(t) for scale, acc in scales if acc.n_raw)

    marks = session.marks
    step_times = [m[0] for m in marks]
    phases = []
    for name, a, b in session.phases:
        ej = (energy_at(b) - energy_at(a)) if scales else None
        n = sum(1 for t in step_times if a <= t <= b)
        phases.append(PhaseResult(name=name, started_at=a, ended_at=b, energy_j=ej, steps=n))
    phases.sort(key=lambda p: p.started_at)
    outside = None
    if total is not None and phases and _disjoint(phases):
        outside = total - sum(p.energy_j or 0.0 for p in phases)
    samples, tokens = step_counts(session)
    stats = None
    if marks and scales:
        energies = E.step_energies(step_times, t0, energy_at)
        s = E.step_stats(energies, samples, tokens)
        stats = s.as_dict() if s else None
    co2 = None
    if total is not None and session.intensity is not None:
        co2 = session.usage(total)["co2e_kg"]
    if session.measured and total is None:
        session.notes.append("no power sample was read")
    return RunResult(
        run_id=session.run_id, name=session.name, status=status, started_at=t0, ended_at=t1, energy_j=total,
        co2e_kg=co2, region=session.intensity.region if session.intensity else None,
        intensity_g_per_kwh=session.intensity.g_per_kwh if session.intensity else None,
        intensity_source=session.intensity.describe() if session.intensity else None, pue=session.pue,
        devices=devices, phases=phases, outside_phases_j=outside, steps=len(marks), samples=samples,
        tokens=tokens, step_stats=stats, notes=list(session.notes), budget=budget_outcome(session, total))

def budget_outcome(session: RunRecord, total_j: float | None) -> dict[str, Any] | None:
    """The live budget's outcome: crossed (as recorded when it was), or its final usage."""
    if session.budget_exceeded is not None:
        return dict(session.budget_exceeded, exceeded=True)
    if total_j is None or session.intensity is None:
        return None
    usage = session.usage(total_j)
    for key, limit in (("energy_kwh", session.budget_kwh), ("co2e_kg", session.budget_co2e_kg)):
        if limit is not None:
            return {"budget": key, "limit": limit, "usage": usage[key], "exceeded": usage[key] > limit}
    return None


def step_counts(session: RunRecord) -> tuple[float | None, float | None]:
    """Total samples and tokens given to ``step()``; non-numbers are left out, said once."""
    samples = tokens = None
    bad = False
    for _t, s, k in session.marks:
        if s is not None:
            if isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0:
                samples = (samples or 0) + s
            else:
                bad = True
        if k is not None:
            if isinstance(k, (int, float)) and not isinstance(k, bool) and k >= 0:
                tokens = (tokens or 0) + k
            else:
                bad = True
    if bad:
        msg = "step(samples=..., tokens=...) got a value that is not a non-negative number; it was ignored"
        say_once(msg)
        session.notes.append(msg)
    return samples, tokens


def _disjoint(phases: list[PhaseResult]) -> bool:
    end = -float("inf")
    for p in phases:
        if p.started_at < end:
            return False
        end = p.ended_at
    return True
