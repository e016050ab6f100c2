"""Attribution: a finished session's totals per device, per phase and per step.

Totals come from each device's energy counter, its edges (before the first dated reading and after
the last) filled from the power series; phases and steps get their energy from the series, scaled
per device so that they add up to the counter's total, except a phase whose energy was read at its
edges (the CPU model's, one test's call in the pytest plugin), which keeps that figure. A data gap
(no reading of a device for a while) is never filled in: the counter's delta across it is its energy
when readings bracket it (in the total, in no phase or step), else it is left out and counted in
``unmeasured_s``; either way a note says so. No I/O, and no session: the input is a plain
:class:`RunRecord` of what was marked and measured.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import Any, Sequence

from ..carbon.footprint import operational
from ..notify import say_once
from . import energy as E
from .result import DeviceResult, PhaseResult, RunResult
from .steps import StepLog


class RunRecord:
    """Everything attribution needs of a stopped session, and nothing else.

    *states* are the sampler's per-device states (their accumulators hold the power series, their
    counter readings and data gaps); *steps* the session's :class:`~greentrack.measure.steps.StepLog`
    (marks not folded yet are folded here); *phases* ``(name, start, end)``; *phase_j* the energy of
    some of them read at their edges (index in *phases* -> joules), kept as it is; *notes* the session's
    notes so far (attribution adds its own); *measured*: whether any source was open. A plain class
    (see :class:`greentrack.measure.sampler.DeviceState`).
    """

    def __init__(self, run_id: str, name: str, started_at: float, ended_at: float, states: Sequence[Any],
                 steps: StepLog, phases: Sequence[tuple[str, float, float]], intensity: Any, pue: float,
                 measured: bool, budget_kwh: float | None = None, budget_co2e_kg: float | None = None,
                 budget_exceeded: dict[str, Any] | None = None, notes: list[str] | None = None,
                 phase_j: dict[int, float] | None = None) -> None:
        self.run_id = run_id
        self.name = name
        self.started_at = started_at
        self.ended_at = ended_at
        self.states = states
        self.steps = steps
        self.phases = phases
        self.phase_j: dict[int, float] = phase_j or {}
        self.intensity = intensity
        self.pue = pue
        self.measured = measured
        self.budget_kwh = budget_kwh
        self.budget_co2e_kg = budget_co2e_kg
        self.budget_exceeded = budget_exceeded
        self.notes: list[str] = [] if notes is None else notes

    def usage(self, total_j: float) -> dict[str, float]:
        """What *total_j* joules mean against the budgets: ``energy_kwh`` and ``co2e_kg`` (with PUE)."""
        return usage(total_j, self.pue, self.intensity.g_per_kwh)


def usage(total_j: float, pue: float, g_per_kwh: float) -> dict[str, float]:
    """``{"energy_kwh": ..., "co2e_kg": ...}`` of *total_j* joules (kWh before PUE, CO2e with it)."""
    op = operational(total_j, pue, g_per_kwh)
    return {"energy_kwh": op.it_kwh, "co2e_kg": op.co2e_kg}


def _counter_across(st: Any, g0: float, g1: float) -> float | None:
    """Energy the device's counter measured inside the gap ``(g0, g1)``, or None when no pair of its
    readings brackets the gap: the counter's delta over the bracket less the series' (which is
    flat inside the gap)."""
    log = getattr(st, "counter_log", None)
    if not log or not st.device.has_counter or st.counter_failed:
        return None
    ts = log[0::2]
    i = bisect_right(ts, g0) - 1  # newest reading at or before the gap's start
    j = bisect_left(ts, g1)  # first reading at or after its end
    if i < 0 or j >= len(ts):
        return None
    c_b, c_a = ts[i], ts[j]
    counter = log[2 * j + 1] - log[2 * i + 1]
    return max(0.0, counter - (st.acc.cumulative_j(c_a) - st.acc.cumulative_j(c_b)))


def _gaps(st: Any, t0: float, t1: float) -> list[tuple[float, float]]:
    out = []
    for g0, g1 in getattr(st, "gaps", ()):
        a, b = max(g0, t0), min(g1, t1)
        if b > a:
            out.append((a, b))
    return out


def _union_s(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, -math.inf
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def compute_result(session: RunRecord, status: str) -> RunResult:
    """Totals per device (counter, edges from the series), phases, steps, CO2e, budget outcome."""
    t0, t1 = session.started_at, session.ended_at
    dur = t1 - t0
    devices: list[DeviceResult] = []
    scales: dict[str, float] = {}
    total: float | None = None
    unmeasured_spans: list[tuple[float, float]] = []
    gap_stats: list[dict[str, Any]] = []
    for st in session.states:
        acc = st.acc
        key = st.device.key
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
            session.notes.append(f"{key}: run shorter than the energy counter's first refresh; "
                                 "total from the power series")
        if counter_j is not None:
            dev_j, method = counter_j, "counter"
        else:
            dev_j, method = series_j, (st.device.series_method if series_j is not None else "none")
        if dev_j is not None and not math.isfinite(dev_j):  # never a made-up number, never NaN
            session.notes.append(f"{key}: its energy could not be computed from its readings; left out")
            dev_j, method = None, "none"
        in_gaps_j = 0.0
        dev_unmeasured = 0.0
        for g0, g1 in _gaps(st, t0, t1):
            e = _counter_across(st, g0, g1) if method == "counter" else None
            gap_stats.append({"device": key, "from": g0, "to": g1, "energy_j": e})
            if e is not None:
                in_gaps_j += e
            else:
                dev_unmeasured += g1 - g0
                unmeasured_spans.append((g0, g1))
        if dev_j is not None:
            total = (total or 0.0) + dev_j
            if series_j is not None:
                scales[key] = E.reconcile_scale(series_j, dev_j - in_gaps_j)
        info = dict(st.device.info, counter_anomaly=True) if st.counter_anomaly else dict(st.device.info)
        if getattr(st, "rejected", 0):
            info["rejected_readings"] = st.rejected
            session.notes.append(f"{key}: {st.rejected} impossible reading(s) (not a number, NaN, infinite, "
                                 f"negative or above 1 MW) left out")
        if dev_unmeasured:
            info["unmeasured_s"] = dev_unmeasured
        devices.append(DeviceResult(
            key=key, kind=st.device.kind, index=st.device.index, name=st.device.name,
            uuid=st.device.uuid, method=method, series_method=st.device.series_method, energy_j=dev_j,
            series_energy_j=series_j, avg_power_w=(dev_j / dur) if (dev_j is not None and dur > 0) else None,
            peak_power_w=acc.peak_w if acc.n_raw else None, n_samples=acc.n_raw, gaps=list(st.gaps),
            info=info, unmeasured_s=dev_unmeasured))
    session.notes.extend(_gap_notes(gap_stats, t0, dur))
    unmeasured_s = _union_s(unmeasured_spans)

    accs = {st.device.key: st.acc for st in session.states if st.device.key in scales and st.acc.n_raw}

    def energy_at(t: float) -> float:
        return sum(scales[k] * acc.cumulative_j(t) for k, acc in accs.items())

    steps = session.steps
    steps.fold([d for d in _fold_devices(session.states) if d.key in scales], math.inf,
               sorted(x for _n, a, b in session.phases for x in (a, b)))
    phases = []
    given = session.phase_j
    for i, (name, a, b) in enumerate(session.phases):
        if not accs:
            ej = None
        elif i in given:  # read at its edges: the source's own figure for the window (the CPU model)
            ej = given[i]
        else:
            ej = energy_at(b) - energy_at(a)
        phases.append(PhaseResult(name=name, started_at=a, ended_at=b, energy_j=ej,
                                  steps=steps.steps_between(a, b) if steps.steps else 0))  # a pytest run marks none
        if accs and gap_stats and any(g["from"] < b and a < g["to"] for g in gap_stats):
            session.notes.append(f"phase {name!r} overlaps a data gap: its energy covers only what was read "
                                 "during it")
    phases.sort(key=lambda p: p.started_at)
    outside = None
    if total is not None and phases and _disjoint(phases):
        outside = total - sum(p.energy_j or 0.0 for p in phases)
    if steps.bad_counts:
        msg = "step(samples=..., tokens=...) got a value that is not a non-negative number; it was ignored"
        say_once(msg)
        session.notes.append(msg)
    stats = steps.stats(scales) if accs else None
    if stats is not None and steps.unmeasured:
        session.notes.append(f"{steps.unmeasured} of {steps.n} steps overlap a data gap: the per-step figures "
                             f"cover the other {steps.n - steps.unmeasured}")
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
        devices=devices, phases=phases, outside_phases_j=outside, steps=steps.n, samples=steps.samples,
        tokens=steps.tokens, step_stats=stats, notes=list(session.notes),
        budget=budget_outcome(session, total), unmeasured_s=unmeasured_s, gaps=gap_stats)


def _fold_devices(states: Sequence[Any]) -> list[Any]:
    from .steps import DeviceSeries

    return [DeviceSeries(st.device.key, st.acc, list(st.gaps), None) for st in states if st.acc.n_raw]


def _gap_notes(gaps: list[dict[str, Any]], t0: float, dur: float, most: int = 5) -> list[str]:
    """One note per data gap (the first *most*, then a count): when, how long, what became of its energy."""
    notes = []
    for g in gaps[:most]:
        span = g["to"] - g["from"]
        when = f"{g['device']}: no power reading from +{g['from'] - t0:.1f} s to +{g['to'] - t0:.1f} s ({span:.1f} s)"
        if g["energy_j"] is not None:
            notes.append(f"{when}: the energy counter measured {g['energy_j']:.1f} J across it (in the total, "
                         "in no phase or step)")
        else:
            share = f", {span / dur * 100:.0f}% of the run" if dur > 0 else ""
            notes.append(f"{when}: its energy was not measured and is left out of the total (unmeasured{share})")
    if len(gaps) > most:
        notes.append(f"... and {len(gaps) - most} more data gaps (see the devices' gaps)")
    return notes


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


def _disjoint(phases: list[PhaseResult]) -> bool:
    end = -float("inf")
    for p in phases:
        if p.started_at < end:
            return False
        end = p.ended_at
    return True
