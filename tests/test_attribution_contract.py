"""Attribution on hand-built inputs: a ``RunRecord`` of real accumulators and device states, checked
against hand-computed figures. Each test kills mutants of ``greentrack/measure/attribution.py`` that the
end-to-end tests let live (see reports/mutation.md).

Run: 100 s to 110 s. Device ``gpu0`` has an energy counter that read 1100 J from 100 s to 110 s, and a
power series of 100 W (1000 J over the run): phases and steps get the series' energy scaled by 1.1,
so they add up to the counter's total.
"""

from __future__ import annotations

from typing import Any

import pytest

from greentrack.carbon.grid import Intensity
from greentrack.measure.attribution import RunRecord, compute_result
from greentrack.measure.energy import Accumulator
from greentrack.measure.sampler import DeviceState
from greentrack.measure.sources.base import Device
from greentrack.measure.steps import StepLog

T0, T1 = 100.0, 110.0
GRID = Intensity("TEST-400", 400.0, "fixed for the test", 2026, "test grid")


def state(key: str = "gpu0", samples: list[tuple[float, float]] | None = None, counter_j: float | None = None,
          start_dated: bool = True, anomaly: bool = False) -> DeviceState:
    """A device state as the sampler leaves it: *samples* in the accumulator, the counter read at T0 and T1."""
    dev = Device(key=key, kind="gpu", index=int(key[-1]), name="Test GPU", has_counter=counter_j is not None,
                 series_method="buffer")
    st = DeviceState(source=None, device=dev, acc=Accumulator())  # type: ignore[arg-type]
    for t, p in samples if samples is not None else [(T0 + 0.5 * i, 100.0) for i in range(21)]:
        st.acc.add(t, p)
    st.acc.close()
    if counter_j is not None:
        st.counter_start_j, st.counter_last_j = 5000.0, 5000.0 + counter_j
        st.counter_first_t, st.counter_last_t = T0, T1
        st.counter_sum_j = counter_j
        st.start_dated = start_dated
        st.counter_anomaly = anomaly
    return st


def steps(marks: list[tuple[float, Any, Any]] | None = None, start: float = T0) -> StepLog:
    """A session's step log holding *marks* ``(time, samples, tokens)`` as ``session.step()`` leaves them."""
    return StepLog(start_t=start, marks=[x for m in marks or [] for x in m])


def run(states: list[DeviceState], marks: list[tuple[float, Any, Any]] | None = None,
        phases: list[tuple[str, float, float]] | None = None, measured: bool = True, **kw: Any) -> Any:
    rec = RunRecord(run_id="r1", name="attr", started_at=T0, ended_at=T1, states=states, steps=steps(marks),
                    phases=phases or [], intensity=GRID, pue=1.5, measured=measured, **kw)
    return compute_result(rec, "finished")


def test_phases_and_steps_are_scaled_to_the_counter_total() -> None:
    """Kills the scale factor dropped (``if not series_j``, ``series_j and 0.0``): phases at 1.1 x the series."""
    r = run([state(counter_j=1100.0)], marks=[(102.0, 4, None), (104.0, 4, None)],
            phases=[("warm", 100.0, 102.0), ("rest", 102.0, 110.0)])
    (d,) = r.devices
    assert (d.method, d.energy_j, d.series_energy_j) == ("counter", 1100.0, pytest.approx(1000.0))
    assert r.phase("warm").energy_j == pytest.approx(220.0)  # 100 W x 2 s x 1.1
    assert r.phase("rest").energy_j == pytest.approx(880.0)
    assert r.outside_phases_j == pytest.approx(0.0, abs=1e-9)
    assert r.step_stats["mean_j"] == pytest.approx(220.0) and r.step_stats["j_per_sample"] == pytest.approx(55.0)
    assert r.energy_j == 1100.0 and r.co2e_kg == pytest.approx(1100 / 3.6e6 * 1.5 * 400 / 1000, rel=1e-12)


def test_device_average_and_peak_power_are_energy_over_duration_and_the_highest_sample() -> None:
    """Kills ``t1 + t0`` for the duration, ``dev_j * dur``, ``dur > 1`` and the None guards of both figures."""
    samples = [(T0 + 0.5 * i, 100.0 if i % 4 else 300.0) for i in range(21)]
    r = run([state(samples=samples, counter_j=1234.0), state("gpu1", samples=[])])
    busy, idle = r.devices
    assert busy.avg_power_w == pytest.approx(123.4) and busy.peak_power_w == 300.0 and busy.n_samples == 21
    assert idle.energy_j is None and idle.avg_power_w is None and idle.peak_power_w is None
    assert idle.method == "none" and idle.n_samples == 0
    # a run of half a second has one; a run of zero length has none
    rec = RunRecord(run_id="r2", name="half", started_at=T0, ended_at=T0 + 0.5,
                    states=[state(samples=[(T0, 50.0), (T0 + 0.5, 50.0)])], steps=steps(), phases=[], intensity=GRID,
                    pue=1.0, measured=True)
    (d,) = compute_result(rec, "finished").devices
    assert d.energy_j == pytest.approx(25.0) and d.avg_power_w == pytest.approx(50.0)
    rec = RunRecord(run_id="r0", name="zero", started_at=T0, ended_at=T0, states=[state(samples=[(T0, 50.0)])],
                    steps=steps(), phases=[], intensity=GRID, pue=1.0, measured=True)
    (d,) = compute_result(rec, "finished").devices
    assert d.energy_j == 0.0 and d.avg_power_w is None


def test_a_counter_anomaly_is_recorded_in_the_device_info() -> None:
    """Kills the ``counter_anomaly`` flag dropped, inverted or set to False."""
    flagged, plain = run([state(counter_j=1100.0, anomaly=True), state("gpu1", counter_j=1100.0)]).devices
    assert flagged.info == {"counter_anomaly": True}
    assert "counter_anomaly" not in plain.info


def test_a_run_shorter_than_the_counters_first_refresh_takes_the_series_and_says_so() -> None:
    """Kills the note deleted: the reader is told why the total is the series' (not the counter's)."""
    r = run([state(counter_j=1100.0, start_dated=False)])
    (d,) = r.devices
    assert d.method == "buffer" and d.energy_j == pytest.approx(1000.0)
    assert r.notes == ["gpu0: run shorter than the energy counter's first refresh; total from the power series"]


def test_nothing_read_is_said_only_when_a_source_was_open_and_gave_nothing() -> None:
    """Kills the ``no power sample was read`` note deleted or given when something was read / nothing was open."""
    assert run([state(samples=[])]).notes == ["no power sample was read"]
    assert run([state(samples=[])]).energy_j is None
    assert run([state()]).notes == []
    assert run([], measured=False).notes == []


def test_phases_are_reported_in_time_order_and_a_step_on_a_bound_counts_in_the_phase() -> None:
    """Kills the sort dropped (the pytest plugin adds phases in report order) and ``a < t`` for ``a <= t``."""
    r = run([state(counter_j=1000.0)], marks=[(104.0, None, None), (106.0, None, None)],
            phases=[("second", 104.0, 106.0), ("first", 100.0, 104.0)])
    assert [p.name for p in r.phases] == ["first", "second"]
    assert [p.steps for p in r.phases] == [1, 2]  # the mark at 104 s ends "first" and starts "second"


def test_a_phase_of_zero_energy_leaves_the_total_outside_the_phases() -> None:
    """Kills ``energy_j or 1.0``: a phase that used 0 J takes nothing from the energy outside the phases."""
    samples = [(T0 + 0.5 * i, 0.0 if T0 + 0.5 * i < 104.0 else 100.0) for i in range(21)]
    r = run([state(samples=samples)], phases=[("idle", 100.0, 103.0)])
    assert r.phase("idle").energy_j == 0.0
    assert r.outside_phases_j == pytest.approx(r.energy_j) and r.energy_j == pytest.approx(625.0)  # 25 J ramp + 600 J


def test_steps_without_any_power_have_no_step_statistics() -> None:
    """Kills ``marks or scales``: steps marked while nothing was measured get no (zero) energy per step."""
    r = run([state(samples=[])], marks=[(102.0, 8, 100), (104.0, 8, 100)])
    assert r.steps == 2 and r.samples == 16 and r.tokens == 200
    assert r.step_stats is None


def test_valid_step_counts_add_no_note() -> None:
    """Kills ``bad = True`` at the start of ``step_counts`` and ``> 0`` for ``>= 0``: numbers given to step(),
    zero included, are not reported as bad."""
    r = run([state()], marks=[(102.0, 8, 100.0), (104.0, 8, None), (106.0, None, None), (108.0, 0, 0)])
    assert (r.samples, r.tokens) == (16, 100.0)  # zero samples and tokens are numbers too
    assert r.notes == []
    r = run([state()], marks=[(102.0, "eight", None), (104.0, 8, -1)])
    assert r.samples == 8 and r.tokens is None
    assert r.notes == ["step(samples=..., tokens=...) got a value that is not a non-negative number; it was ignored"]


def test_bad_tokens_alone_are_reported() -> None:
    """Kills the ``bad = True`` of the tokens branch dropped: a bad token count alone is said."""
    r = run([state()], marks=[(102.0, 8, -1)])
    assert (r.samples, r.tokens) == (8, None)
    assert r.notes == ["step(samples=..., tokens=...) got a value that is not a non-negative number; it was ignored"]


def test_energy_outside_phases_needs_disjoint_phases() -> None:
    """Kills ``_disjoint`` answering True for overlapping phases (nested phases would be counted twice) and
    ``<=`` for ``<`` (phases that touch are disjoint)."""
    nested = run([state(counter_j=1000.0)], phases=[("outer", 100.0, 108.0), ("inner", 102.0, 104.0)])
    assert nested.outside_phases_j is None
    touching = run([state(counter_j=1000.0)], phases=[("a", 100.0, 105.0), ("b", 105.0, 108.0)])
    assert touching.outside_phases_j == pytest.approx(200.0)
