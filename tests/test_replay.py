"""Replay a power trace recorded on an NVIDIA H200 through the mock backend.

tests/data/h200_trace.csv holds the driver's 50 Hz power samples of one run of
benchmarks/h200_accuracy.py (heavy training, idle, bursty, a 1 s heavy phase, light, idle);
tests/data/h200_trace.json the energy counter's change points, the phase bounds, the step
marks and what greentrack reported on the H200. The replay runs the real sampler and the
real attribution code (Session._compute) on a virtual clock, so it takes no wall time, and
must find what the H200 found: the run total against the counter, each phase of >= 1 s
against the counter's delta over that phase, the energy per step.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from pathlib import Path

import pytest

from greentrack.measure.result import RunResult
from greentrack.measure.sampler import Sampler
from greentrack.measure.sources.mock import MockSource
from greentrack.measure.tracker import Session

DATA = Path(__file__).resolve().parent / "data"
CSV = DATA / "h200_trace.csv"
META = json.loads((DATA / "h200_trace.json").read_text())


class VClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def counter_at(t: float) -> float:
    """The H200's recorded counter (J) at trace time *t*, linear between change points."""
    pts = META["counter"]
    ts = [p[0] for p in pts]
    if t <= ts[0]:
        return pts[0][1]
    if t >= ts[-1]:
        return pts[-1][1]
    i = bisect_right(ts, t)
    (ta, va), (tb, vb) = pts[i - 1], pts[i]
    return va + (vb - va) * (t - ta) / (tb - ta)


def replay(features: str = "counter,buffer", poll_s: float = 1.0, flush_s: float = 2.0) -> RunResult:
    """The recorded run, replayed through MockSource + Sampler + Session attribution on a virtual clock."""
    base = 1_790_000_000.0
    clk = VClock(base)
    src = MockSource(trace=f"replay:{CSV}", features=features, clock=clk, poll_interval_s=poll_s)
    s = Session("h200-replay", region="FR", sources=[src], store=False)
    smp = Sampler([src], flush_s, lambda chunks, states: None, clock=clk,
                  sleep=lambda d: setattr(clk, "t", clk.t + d))
    s.sampler = smp
    s.sources = [src]
    start, end = base + META["session"]["started_at"], base + META["session"]["ended_at"]
    clk.t = start
    smp.read_counters(first=True)
    smp.sync_counters(first=True)  # as the sampler thread does: date the first reading at a refresh
    next_poll, next_flush = start, start + flush_s
    while clk.t < end:
        clk.t = min(next_poll, next_flush, end)
        if clk.t >= next_poll:
            smp.poll(src)
            next_poll += src.poll_interval_s
        if clk.t >= next_flush:
            smp.flush()
            next_flush += flush_s
    smp.poll(src)
    smp.sync_counters(first=False)  # as at stop: date the last reading at a refresh
    smp.poll(src)
    smp.flush(final=True, read_counters=False)
    s.started_at, s.ended_at, s.status = start, end, "running"
    s._phases = [(p["name"], base + p["t0"], base + p["t1"]) for p in META["phases"]]
    s._steps.start_t = s._steps.prev_t = start
    for t, n in META["steps"]:  # as step() records them
        s._marks.extend((base + t, n, None))
    return s._compute("finished")


@pytest.fixture(scope="module")
def result() -> RunResult:
    return replay()


def test_fixture_is_small_and_real() -> None:
    assert CSV.stat().st_size + (DATA / "h200_trace.json").stat().st_size < 1_000_000
    assert "H200" in " ".join(META["env"].get("gpus", [])) or META.get("dry_run")
    assert len(META["phases"]) >= 5 and len(META["counter"]) > 100


def test_run_total_matches_the_recorded_counter(result: RunResult) -> None:
    ref = counter_at(META["session"]["ended_at"]) - counter_at(META["session"]["started_at"])
    dev = result.devices[0]
    assert dev.method == "counter"
    # the mock's counter is the exact integral of the replayed 50 Hz samples, and on the H200 those samples
    # integrate 0.16-0.66 % above the hardware counter: the replay lands +0.255 % from the recorded counter
    # and +0.257 % from the H200 run's own total (deterministic: a virtual clock). Allowed: 0.3 %, i.e. the
    # achieved figure plus 0.045 points. This is not the H200's +-0.035 % (docs/accuracy.md, "What CI checks").
    assert result.energy_j == pytest.approx(ref, rel=0.003)
    assert result.energy_j == pytest.approx(META["greentrack"]["energy_j"], rel=0.003)
    assert dev.series_energy_j == pytest.approx(result.energy_j, rel=1e-4)  # achieved -0.0004 %


def test_each_phase_of_a_second_or_more_within_2_percent_of_the_counter(result: RunResult) -> None:
    checked = 0
    for p, rec in zip(result.phases, META["greentrack"]["phases"]):
        assert p.name == rec["name"]
        if p.duration_s < 1.0:
            continue
        ref = counter_at(p.ended_at - 1_790_000_000.0) - counter_at(p.started_at - 1_790_000_000.0)
        # achieved: -0.01 % to +0.69 % (bursty); allowed 0.8 % (the 2 % target is the claim, this the check)
        assert p.energy_j == pytest.approx(ref, rel=0.008), p.name
        # and what greentrack said on the H200 for the same phase: achieved within 0.30 %, allowed 0.4 %
        assert p.energy_j == pytest.approx(rec["energy_j"], rel=0.004), p.name
        checked += 1
    assert checked >= 5
    assert sum(p.energy_j for p in result.phases) + result.outside_phases_j == pytest.approx(result.energy_j)


def test_energy_per_step_as_on_the_h200(result: RunResult) -> None:
    st, h200 = result.step_stats, META["greentrack"]["step_stats"]
    assert st["steps"] == h200["steps"] == len(META["steps"])
    # achieved: +0.255 %, -0.280 %, +0.255 %; allowed 0.35 %
    assert st["mean_j"] == pytest.approx(h200["mean_j"], rel=0.0035)
    assert st["p50_j"] == pytest.approx(h200["p50_j"], rel=0.0035)
    assert st["j_per_sample"] == pytest.approx(h200["j_per_sample"], rel=0.0035)


@pytest.mark.parametrize("features, poll", [("buffer", 1.0), ("instant", 0.1)])
def test_without_counter_the_series_alone_is_within_1_percent(features: str, poll: float) -> None:
    r = replay(features=features, poll_s=poll)
    ref = counter_at(META["session"]["ended_at"]) - counter_at(META["session"]["started_at"])
    assert r.devices[0].method == features
    # achieved: buffer +0.254 %, instant +0.194 % (the H200 itself: buffer +0.16 to +0.65 %, instant polling
    # -1.72 to +1.71 %: the replayed trace is one run, not the spread); allowed 0.3 %
    assert r.energy_j == pytest.approx(ref, rel=0.003)


def test_replay_is_deterministic(result: RunResult) -> None:
    again = replay()
    assert again.energy_j == result.energy_j
    assert [p.energy_j for p in again.phases] == [p.energy_j for p in result.phases]




def test_attribution_keeps_a_power_step_where_it_happened() -> None:
    """Bounds right at the H200's power steps (the 1 s heavy burst) are attributed as the raw 50 Hz
    samples say, not smeared over 0.1 s: a 0.1 s resolution was off by several percent here."""
    import csv

    from oracles import trapezoid_j

    from greentrack.measure.energy import Accumulator

    rows = [(float(t), float(p)) for t, p in list(csv.reader(CSV.open()))[1:]]
    acc = Accumulator()
    for t, p in rows:
        acc.add(t, p)
    acc.close()
    assert len(acc.times) < 0.8 * len(rows)  # compressed, yet exact to 0.1 J per point
    ph = next(p for p in META["phases"] if p["name"] == "heavy_1s")
    margin = META.get("margin_s", 0.3)
    a, b = ph["t0"] + margin, ph["t1"] - margin  # the work itself: power steps at both ends
    inside = [(t, p) for t, p in rows if a <= t <= b]
    exact = trapezoid_j([t for t, _ in inside], [p for _, p in inside])
    got = acc.series_energy_j(inside[0][0], inside[-1][0])
    assert got == pytest.approx(exact, abs=0.5)
    assert exact > 500  # really the heavy burst
