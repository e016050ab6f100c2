"""The mock backend behaves like an NVML GPU: 10 Hz counter, 50 Hz buffer, instant power."""

from __future__ import annotations

import pytest

from greentrack.errors import ConfigError
from greentrack.measure.sources.mock import MockSource, parse_trace


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_counter_updates_at_10hz_and_buffer_at_50hz():
    clk = Clock()
    src = MockSource("constant:200", clock=clk)
    dev = src.devices[0]
    assert dev.has_counter and dev.series_method == "buffer"
    clk.t += 0.15
    assert src.energy_j(dev) == pytest.approx(20.0)  # last update at 0.1 s
    clk.t += 0.06  # 0.21 s
    assert src.energy_j(dev) == pytest.approx(40.0)
    samples = src.poll(dev)
    assert len(samples) == 10 and samples[1][0] - samples[0][0] == pytest.approx(0.02)
    assert src.poll(dev) == []  # nothing new
    clk.t += 1.0
    assert len(src.poll(dev)) == 50


def test_step_and_load_traces():
    f = parse_trace("step:100,300,2")
    assert f(0.5, False) == 100 and f(2.5, False) == 300 and f(4.1, False) == 100
    g = parse_trace("load:70,600")
    assert g(1.0, True) == 600 and g(1.0, False) == 70


def test_load_trace_follows_step_marks():
    clk = Clock()
    src = MockSource("load:50,500", clock=clk)

    from greentrack.measure.steps import StepLog

    class FakeSession:
        _steps = StepLog(start_t=1000.0, marks=[1000.3, None, None, 1000.4, None, None])

    src.bind(FakeSession())
    clk.t += 2.0
    samples = src.poll(src.devices[0])
    busy = [t for t, p in samples if p == 500]
    assert busy[0] == pytest.approx(1000.30) and busy[-1] == pytest.approx(1000.88)


def test_replay_csv_interpolates(tmp_path):
    csv = tmp_path / "trace.csv"
    csv.write_text("t_s,power_w\n0,100\n1,300\n2,300\n")
    clk = Clock()
    src = MockSource(f"replay:{csv}", clock=clk, features="counter,instant")
    clk.t += 3.0
    # 0..1 s ramp (avg 200 W) + 1..3 s at 300 W = 800 J
    assert src.energy_j(src.devices[0]) == pytest.approx(800.0, rel=1e-3)
    assert src.poll(src.devices[0]) == [(clk.t, 300.0)]


@pytest.mark.parametrize("spec", ["constant:-5", "step:1,2", "load:x,y", "sine:3", "constant:nan"])
def test_bad_traces_are_config_errors(spec):
    with pytest.raises(ConfigError, match="mock trace"):
        parse_trace(spec)


def test_bad_replay_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read trace"):
        parse_trace(f"replay:{tmp_path / 'missing.csv'}")
    empty = tmp_path / "e.csv"
    empty.write_text("t_s,power_w\n")
    with pytest.raises(ConfigError, match="holds no samples"):
        parse_trace(f"replay:{empty}")


def test_bad_features_and_gpu_count():
    with pytest.raises(ConfigError):
        MockSource(features="counter,telepathy")
    with pytest.raises(ConfigError):
        MockSource(gpus=0)


def test_each_rank_measures_only_its_gpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    src = MockSource("constant:100", gpus=4)
    assert [d.key for d in src.devices] == ["gpu1"]
    monkeypatch.setenv("GREENTRACK_ALL_GPUS", "1")
    assert len(MockSource("constant:100", gpus=4).devices) == 4


def test_ranks_of_one_job_add_up(monkeypatch, db_path):
    """Two ranks on two mock GPUs: each run holds one GPU, both share the job id."""
    import greentrack
    from greentrack.store.sqlite import Store

    monkeypatch.setenv("GREENTRACK_MOCK", "constant:200")
    monkeypatch.setenv("GREENTRACK_MOCK_GPUS", "2")
    monkeypatch.setenv("GREENTRACK_JOB_ID", "job-42")
    monkeypatch.setenv("WORLD_SIZE", "2")
    results = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        with greentrack.session("ddp") as s:
            pass
        results.append(s.result)
    assert [r.devices[0].key for r in results] == ["gpu0", "gpu1"]
    rows = Store(db_path).list_runs(job_id="job-42")
    assert sorted(r["rank"] for r in rows) == [0, 1] and {r["world_size"] for r in rows} == {2}
