"""The live figures (greentrack.live / Session.meter) on a real session with the mock GPU."""

from __future__ import annotations

import time

import pytest

import greentrack
from greentrack.errors import GreentrackError
from greentrack.measure.jobs import JobMeter, process_group


def test_intervals_telescope_to_the_run_and_carry_counts_and_phase(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GREENTRACK_MOCK", "step:100,400,0.5")
    s = greentrack.session("live", backend="mock", region="FR", db=tmp_path / "g.db")
    meter = greentrack.live(s)
    with pytest.raises(GreentrackError, match="has not started"):
        meter.read()
    reads = []
    with s:
        for i in range(1, 31):
            time.sleep(0.05)
            s.step(samples=4, tokens=128)
            if i % 10 == 0:
                with s.phase("eval") if i == 20 else _null():
                    reads.append(meter.read())
    reads.append(meter.read())  # after stop: the closing read
    assert meter.read() is reads[-1]  # later reads return it again
    measured = [r for r in reads if r.energy_j is not None]
    assert reads[-1].final and not any(r.final for r in reads[:-1])
    assert [r.phase for r in reads] == [None, "eval", None, None]
    assert sum(r.steps for r in measured) == 30 and sum(r.samples or 0 for r in measured) == 120
    # telescoping: the intervals add up to the last cumulative figure, which is the stored series
    total = sum(r.energy_j for r in measured)
    assert total == pytest.approx(reads[-1].total_j, rel=1e-9)
    assert total == pytest.approx(sum(d.series_energy_j for d in s.result.devices), rel=1e-9)
    assert total == pytest.approx(s.result.energy_j, rel=0.05)
    last = measured[-2]
    assert last.j_per_step == pytest.approx(last.energy_j / last.steps)
    assert last.j_per_token == pytest.approx(last.energy_j / (last.steps * 128))
    m = last.metrics()
    assert set(m) == {"greentrack/energy_j", "greentrack/power_w", "greentrack/energy_kwh", "greentrack/co2e_g",
                      "greentrack/j_per_step", "greentrack/j_per_sample", "greentrack/j_per_token"}
    assert m["greentrack/co2e_g"] == pytest.approx(last.total_j / 3.6e6 * s.intensity.g_per_kwh, rel=1e-9)
    # the closing interval has no step: its per-step figures are left out
    assert "greentrack/j_per_step" not in reads[-1].metrics()


def test_read_costs_no_hardware_read(monkeypatch) -> None:
    with greentrack.session("cost", backend="mock", store=False) as s:
        time.sleep(0.3)
        calls = []
        for src in s.sources:
            monkeypatch.setattr(src, "poll", lambda *a, _f=src.poll: calls.append(1) or _f(*a))
            monkeypatch.setattr(src, "energy_j", lambda *a, _f=src.energy_j: calls.append(1) or _f(*a))
        meter = s.meter()
        meter.read()
        t = time.perf_counter()
        for _ in range(2000):
            meter.read()
        per_read = (time.perf_counter() - t) / 2000
        polled_by_reads = len(calls)
    assert per_read < 200e-6  # 50 µs is the target on an idle machine (benchmarks/bench_live.py); loose here
    assert s.sampler.max_poll_s == pytest.approx(0.2)  # the meter asked the sampler to poll at least every 0.2 s
    assert polled_by_reads <= 30  # only the sampler thread polled (5 times a second), never the reads


def test_job_meter_without_a_process_group_reads_its_own_process() -> None:
    assert process_group() is None
    with greentrack.session("job", backend="mock", store=False) as s:
        time.sleep(0.3)
        job = JobMeter(s.meter())
        r = job.read()
    assert not r.distributed and r.logs_job and r.job is r.local and job.collectives == 0
    final = job.read()
    assert final.local.final and final.result_j == pytest.approx(s.result.energy_j)
    assert final.metrics()["greentrack/total_energy_j"] == pytest.approx(s.result.energy_j)
    # a failed meter: nothing to log, no exception
    broken = JobMeter(None).read()
    assert broken.local is None and broken.metrics() == {}


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def test_live_figures_follow_a_source_of_interval_means(tmp_path, monkeypatch) -> None:
    """The CPU model (like RAPL) gives the mean power since its previous read: the live figures must follow
    its newest read, not hold its first one (they did: the live energy was the first power x the time)."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "auto")
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(tmp_path / "no-powercap"))
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.nvml")
    monkeypatch.setenv("GREENTRACK_CPU_WATTS_PER_THREAD", "4")
    s = greentrack.session("live-model", db=tmp_path / "g.db")
    meter = greentrack.live(s)
    with s:
        time.sleep(1.2)  # idle
        c0 = time.process_time()
        while time.process_time() - c0 < 1.0:  # then one busy thread: ~4 J
            pass
        t = time.time()
        series = s.energy_between(s.started_at, t)  # reads the model now
        live = meter.cumulative_j(t)
    assert s.result.devices[0].method == "model"
    assert series >= 4.0 * 0.9
    assert live == pytest.approx(series, rel=0.1)
