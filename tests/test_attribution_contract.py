"""Attribution on hand-built inputs: a ``RunRecord`` of real accumulators and device states, checked
against hand-computed figures. Each test kills mutants of ``greentrack/measure/attribution.py`` that the
end-to-end tests let live (see reports/mutation.md).

Run: 100 s to 110 s. Device ``gpu0`` has an energy counter that read 1100 J from 100 s to 110 s, and a
power series of 100 W (1000 J over the run): phases and steps get the series' energy scaled by 1.1,
so they add up to the counter's total.
"""

from __future__ import annotations

import math
from array import array
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


# ---- data gaps: a device without readings for a while -------------------------------------------------

def outage(key: str = "gpu0", gap: tuple[float, float] = (103.0, 106.0), counter_w: float | None = 110.0,
           gap_j: float = 600.0, reads: list[float] | None = None) -> DeviceState:
    """100 W sampled every 0.5 s from T0 to T1, no reading inside *gap* (the sampler's gap() at the failed read,
    resume() at the first one after it). With *counter_w*: an energy counter read at *reads* (default: each
    second outside the gap) that measured *counter_w* W outside the gap and *gap_j* J across it."""
    g0, g1 = gap
    dev = Device(key=key, kind="gpu", index=int(key[-1]), name="Test GPU", has_counter=counter_w is not None,
                 series_method="buffer")
    st = DeviceState(source=None, device=dev, acc=Accumulator())  # type: ignore[arg-type]
    resumed = False
    for i in range(21):
        t = T0 + 0.5 * i
        if g0 < t < g1:
            continue
        if t >= g1 and not resumed:
            st.acc.gap()
            st.acc.resume(g1, 100.0)
            resumed = True
            if t == g1:
                continue
        st.acc.add(t, 100.0)
    st.acc.close()
    st.gaps = [gap]
    if counter_w is not None:
        def counted(t: float) -> float:
            if t <= g0:
                return counter_w * (t - T0)
            return counter_w * (g0 - T0) + gap_j + counter_w * (t - g1)

        times = reads if reads is not None else [float(t) for t in range(100, 111) if not g0 < t < g1]
        st.counter_log = array("d", [x for t in times for x in (t, counted(t))])
        st.counter_start_j, st.counter_last_j = 5000.0, 5000.0 + counted(times[-1])
        st.counter_first_t, st.counter_last_t = times[0], times[-1]
        st.counter_sum_j = counted(times[-1])
        st.start_dated = True
    return st


def test_a_gap_the_counter_spans_is_in_the_total_and_in_no_phase() -> None:
    """The counter read 600 J across a 3 s outage and 110 W around it (the series: 100 W). The gap's energy
    is the counter's delta across it less the (flat) series'; phases and steps get the series scaled by
    (counter less the gap's energy) / series = 770 / 700, so the gap's 600 J stay outside every phase.
    Kills the reading bracket (indices, the pairs' stride, the delta's sign), the gap energy left out of
    the scale or counted against it, and the counter used for a device without one."""
    r = run([outage()], marks=[(104.0, None, None), (105.0, None, None), (107.0, None, None), (108.0, None, None)],
            phases=[("before", 100.0, 103.0), ("after", 106.0, 110.0)])
    (d,) = r.devices
    assert (d.method, d.energy_j, d.series_energy_j) == ("counter", pytest.approx(1370.0), pytest.approx(700.0))
    assert r.gaps == [{"device": "gpu0", "from": 103.0, "to": 106.0, "energy_j": pytest.approx(600.0)}]
    assert r.unmeasured_s == 0.0 and d.unmeasured_s == 0.0 and "unmeasured_s" not in d.info
    assert r.phase("before").energy_j == pytest.approx(330.0) and r.phase("after").energy_j == pytest.approx(440.0)
    assert r.outside_phases_j == pytest.approx(600.0)  # the gap
    assert r.notes == [
        "gpu0: no power reading from +3.0 s to +6.0 s (3.0 s): the energy counter measured 600.0 J across it "
        "(in the total, in no phase or step)",
        "3 of 4 steps overlap a data gap: the per-step figures cover the other 1"]  # (each from the mark before)
    assert r.step_stats["steps"] == 1 and r.step_stats["mean_j"] == pytest.approx(110.0)  # 107 s to 108 s x 1.1


def test_a_gap_right_after_the_counters_first_reading_is_bracketed_by_it() -> None:
    """The outage starts at the first reading (100 s) and ends at 102.5 s; the next reading is at 103 s: the
    counter's 100 s to 103 s delta less the series' 50 J after the outage. Kills ``i < 1`` / ``i <= 0`` and
    the bracket taken one reading early."""
    st = outage(gap=(100.0, 102.5), reads=[100.0, 103.0, 105.0, 110.0], gap_j=400.0)
    r = run([st])
    # counter: 400 J in the gap + 110 W x 0.5 s to 103 s; series over it: 100 W x 0.5 s
    assert r.gaps[0]["energy_j"] == pytest.approx(400.0 + 55.0 - 50.0)
    assert r.devices[0].energy_j == pytest.approx(400.0 + 110.0 * 7.5)


def test_a_gap_no_reading_brackets_is_left_out_and_counted_even_with_a_counter() -> None:
    """The counter stopped answering with the power (its last reading at 107 s; readings resume at 109.5 s):
    nothing measured the gap, so it is unmeasured time, not made up. The series fills the run's end after
    the counter's last reading."""
    st = outage(gap=(107.0, 109.5), reads=[100.0, 101.0, 105.0, 107.0])
    r = run([st])
    (d,) = r.devices
    assert r.gaps == [{"device": "gpu0", "from": 107.0, "to": 109.5, "energy_j": None}]
    assert d.unmeasured_s == pytest.approx(2.5) and d.info["unmeasured_s"] == pytest.approx(2.5)
    assert r.unmeasured_s == pytest.approx(2.5)
    assert d.energy_j == pytest.approx(110.0 * 7.0 + 50.0)  # the counter to 107 s, then the series' 50 J
    assert r.notes == ["gpu0: no power reading from +7.0 s to +9.5 s (2.5 s): its energy was not measured and "
                       "is left out of the total (unmeasured, 25% of the run)"]


def test_unmeasured_time_is_the_union_of_the_devices_gaps_within_the_run() -> None:
    """Two devices without a counter, outages of 103-106 s and 105-107 s: 4 s of the run unmeasured, not 5;
    an outage that ended as the run started is no gap of the run (kills ``b >= a`` in the clipping)."""
    a, b = outage("gpu0", counter_w=None), outage("gpu1", gap=(105.0, 107.0), counter_w=None)
    a.gaps = [(95.0, 100.0), (103.0, 106.0)]
    r = run([a, b])
    assert [(g["device"], g["from"], g["to"]) for g in r.gaps] == [("gpu0", 103.0, 106.0), ("gpu1", 105.0, 107.0)]
    assert r.unmeasured_s == pytest.approx(4.0)
    assert [d.unmeasured_s for d in r.devices] == [pytest.approx(3.0), pytest.approx(2.0)]
    assert r.energy_j == pytest.approx(700.0 + 800.0)  # each device's series: nothing made up for the gaps


def test_a_phase_is_said_to_overlap_a_gap_only_when_it_does() -> None:
    """Phases that touch the outage's ends do not overlap it; one across it does (kills ``<=`` on either end,
    ``or`` for ``and``, and the note dropped or given to every phase)."""
    r = run([outage()], phases=[("to", 100.0, 103.0), ("across", 102.0, 107.0), ("from", 106.0, 110.0)])
    assert [n for n in r.notes if n.startswith("phase")] == [
        "phase 'across' overlaps a data gap: its energy covers only what was read during it"]
    assert r.phase("across").energy_j == pytest.approx(1.1 * 200.0)


def test_more_than_five_gaps_are_summed_up_in_one_note() -> None:
    st = outage(counter_w=None)
    st.gaps = [(100.5 + i, 100.7 + i) for i in range(7)]
    r = run([st])
    gap_notes = [n for n in r.notes if "gpu0: no power reading" in n or "more data gaps" in n]
    assert len(gap_notes) == 6 and gap_notes[-1] == "... and 2 more data gaps (see the devices' gaps)"
    assert gap_notes[0] == ("gpu0: no power reading from +0.5 s to +0.7 s (0.2 s): its energy was not measured "
                            "and is left out of the total (unmeasured, 2% of the run)")


def test_impossible_readings_are_counted_in_the_device_info_and_said() -> None:
    st = state()
    st.rejected = 3
    r = run([st, state("gpu1")])
    assert [d.info.get("rejected_readings") for d in r.devices] == [3, None]
    assert r.notes == ["gpu0: 3 impossible reading(s) (not a number, NaN, infinite, negative or above 1 MW) "
                       "left out"]


def test_a_device_whose_energy_is_not_a_number_is_left_out_with_a_note() -> None:
    """A counter total that is infinite (a broken driver's readings): never a made-up number, the device is
    left out of the total and of the phases (kills the note dropped and the phases reading its scale)."""
    bad = state(counter_j=1100.0)
    bad.counter_sum_j = math.inf
    r = run([bad, state("gpu1", counter_j=2000.0)], phases=[("all", 100.0, 110.0)])
    broken, fine = r.devices
    assert (broken.energy_j, broken.method, broken.avg_power_w) == (None, "none", None)
    assert fine.energy_j == 2000.0 and r.energy_j == 2000.0
    assert r.phase("all").energy_j == pytest.approx(2000.0)
    assert r.notes == ["gpu0: its energy could not be computed from its readings; left out"]


def test_the_counters_delta_across_a_gap_is_less_the_series_between_its_readings() -> None:
    """Readings at 102 s and 107 s bracket the 103-106 s outage: 820 J by the counter, of which the series
    (100 W from 102 s to 103 s and from 106 s to 107 s) accounts for 200 J: 620 J in the gap (kills the
    series' energy added, or its two ends added instead of subtracted)."""
    r = run([outage(reads=[100.0, 102.0, 107.0, 110.0], gap_j=600.0)])
    assert r.gaps[0]["energy_j"] == pytest.approx(600.0 + 2 * 110.0 - 200.0)


def test_a_gap_the_counter_saw_no_energy_in_is_zero_joules() -> None:
    """An idle device during the outage: the counter's delta equals the series' around it, 0 J in the gap
    (kills the floor of the gap's energy at 1 J); a counter below the series gives 0 J, never negative."""
    assert run([outage(counter_w=100.0, gap_j=0.0)]).gaps[0]["energy_j"] == pytest.approx(0.0, abs=1e-9)
    low = run([outage(reads=[100.0, 102.0, 107.0, 110.0], counter_w=90.0, gap_j=0.0)])
    assert low.gaps[0]["energy_j"] == 0.0


def test_five_gaps_are_each_said_and_no_summary_line() -> None:
    """Exactly five: five notes, no '... and 0 more' (kills ``>=``)."""
    st = outage(counter_w=None)
    st.gaps = [(100.5 + i, 100.7 + i) for i in range(5)]
    notes = run([st]).notes
    assert len(notes) == 5 and not any("more data gaps" in n for n in notes)


def test_a_gap_in_a_run_shorter_than_a_second_gives_its_share_of_the_run() -> None:
    """0.3 s unmeasured in a 0.75 s run: 40% of it (kills the share given only to runs over 1 s)."""
    dev = Device(key="gpu0", kind="gpu", index=0, name="Test GPU", series_method="buffer")
    st = DeviceState(source=None, device=dev, acc=Accumulator())  # type: ignore[arg-type]
    for t in (T0, T0 + 0.1, T0 + 0.2):
        st.acc.add(t, 100.0)
    st.acc.gap()
    st.acc.resume(T0 + 0.5, 100.0)
    st.acc.add(T0 + 0.75, 100.0)
    st.acc.close()
    st.gaps = [(T0 + 0.2, T0 + 0.5)]
    rec = RunRecord(run_id="r3", name="short", started_at=T0, ended_at=T0 + 0.75, states=[st], steps=steps(),
                    phases=[], intensity=GRID, pue=1.0, measured=True)
    r = compute_result(rec, "finished")
    assert r.notes == ["gpu0: no power reading from +0.2 s to +0.5 s (0.3 s): its energy was not measured and is "
                       "left out of the total (unmeasured, 40% of the run)"]
    assert r.energy_j == pytest.approx(45.0) and r.unmeasured_s == pytest.approx(0.3)


def test_the_run_before_the_counters_first_reading_is_filled_from_the_series() -> None:
    """The counter's first reading came 1 s after the start (start-up): its 1100 J cover 101 s to 110 s, and
    the series' 100 J before it are added (kills that edge dropped, subtracted, or always skipped)."""
    st = state(counter_j=1100.0)
    st.counter_first_t = 101.0
    (d,) = run([st]).devices
    assert d.method == "counter" and d.energy_j == pytest.approx(1200.0)


def test_a_budget_crossed_live_is_reported_as_exceeded_with_the_usage_at_the_crossing() -> None:
    """The outcome recorded when the budget was crossed (not the final usage) and ``exceeded`` True; a run
    within its budget: its final usage and ``exceeded`` False."""
    crossed = {"budget": "energy_kwh", "limit": 1e-4, "usage": 1.2e-4}
    r = run([state(counter_j=1100.0)], budget_kwh=1e-4, budget_exceeded=dict(crossed))
    assert r.budget == dict(crossed, exceeded=True)
    r = run([state(counter_j=1100.0)], budget_co2e_kg=1.0)
    assert r.budget == {"budget": "co2e_kg", "limit": 1.0, "usage": pytest.approx(1100 / 3.6e6 * 1.5 * 0.4),
                        "exceeded": False}
