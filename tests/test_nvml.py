"""The NVML source against a stand-in for pynvml that returns what pynvml really returns.

``FakeNVML`` builds its answers from nvidia-ml-py's own ctypes structures (``c_nvmlSample_t``,
``c_nvmlFieldValue_t``) and raises its real ``NVMLError`` subclasses, with the shapes seen on
an H200 (benchmarks/h200_probe.py): ``nvmlDeviceGetSamples`` returns ``(value_type, [samples])``
with µs wall-clock timestamps, mW values, and raises "Not Found" when nothing is newer;
``nvmlDeviceGetFieldValues`` returns an array of field values with their own return code.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import pynvml as real
import pytest

from greentrack.errors import ConfigError
from greentrack.measure.sources import SourceUnavailable
from greentrack.measure.sources.nvml import NVMLSource, parse_visible, select_indices, value_of
from greentrack.measure.tracker import Session

TICK = 0.02


class FakeGPU:
    def __init__(self, index: int, power: Callable[[float], float], features: set[str], clock: Callable[[], float],
                 fail_after_s: float | None = None, offset_s: float = 0.0, mig: list[str] | None = None) -> None:
        self.index = index
        self.uuid = f"GPU-{index:08x}-aaaa-bbbb-cccc-{index:012d}"
        self.power = power
        self.features = features
        self.clock = clock
        self.t0 = clock()
        self.fail_after_s = fail_after_s
        self.offset_s = offset_s
        self.mig = mig or []
        self.ticks: list[float] = []  # power of each 20 ms tick since t0

    def check(self) -> None:
        if self.fail_after_s is not None and self.clock() - self.t0 >= self.fail_after_s:
            raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)

    def advance(self) -> float:
        self.check()
        now = self.clock()
        n = int((now - self.t0) / TICK)
        while len(self.ticks) < n:
            k = len(self.ticks)
            self.ticks.append(self.power(self.t0 + (k + 0.5) * TICK))
        return now

    def energy_until(self, n_ticks: int) -> float:
        return sum(self.ticks[:n_ticks]) * TICK


class FakeNVML:
    """Enough of pynvml's API, with its real structures, constants and errors."""

    NVMLError = real.NVMLError
    NVML_TOTAL_POWER_SAMPLES = real.NVML_TOTAL_POWER_SAMPLES
    NVML_FI_DEV_POWER_INSTANT = real.NVML_FI_DEV_POWER_INSTANT
    NVML_ERROR_NOT_FOUND = real.NVML_ERROR_NOT_FOUND

    def __init__(self, gpus: int = 1, power: Callable[[float], float] | None = None,
                 features: str = "counter,buffer,instant,average", clock: Callable[[], float] = time.time,
                 value_type: int = real.NVML_VALUE_TYPE_UNSIGNED_INT, fail: dict[int, float] | None = None,
                 offset_s: float = 0.0, init_error: bool = False) -> None:
        feats = {f for f in features.split(",") if f}
        self.clock = clock
        self.value_type = value_type
        self.init_error = init_error
        self.inits = 0
        self.calls: dict[str, int] = {}
        p = power or (lambda t: 100.0 + 300.0 * (int(t * 2) % 2))
        self.gpus = [FakeGPU(i, p, feats, clock, (fail or {}).get(i), offset_s) for i in range(gpus)]

    def _n(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    # library
    def nvmlInit(self) -> None:
        if self.init_error:
            raise real.NVMLError(real.NVML_ERROR_DRIVER_NOT_LOADED)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "13.580.159.04"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGPU:
        if not 0 <= i < len(self.gpus):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: bytes | str) -> Any:
        u = uuid.decode() if isinstance(uuid, bytes) else uuid
        for g in self.gpus:
            if g.uuid == u:
                return g
            if u in g.mig:
                return ("mig", g)
        raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h: Any) -> FakeGPU:
        return h[1]

    def nvmlDeviceGetName(self, h: FakeGPU) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetUUID(self, h: FakeGPU) -> str:
        return h.uuid

    # power
    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGPU) -> int:
        self._n("counter")
        if "counter" not in h.features:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        now = h.advance()
        n = int((now - h.t0) / 0.1) * 5  # updates at 10 Hz
        return int(round(h.energy_until(min(n, len(h.ticks))) * 1000.0))

    def nvmlDeviceGetSamples(self, h: FakeGPU, kind: int, since_us: int) -> tuple[int, list]:
        self._n("samples")
        if "buffer" not in h.features or kind != real.NVML_TOTAL_POWER_SAMPLES:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        h.advance()
        out = []
        first = max(0, len(h.ticks) - 500)  # the driver keeps 10 s
        for k in range(first, len(h.ticks)):
            ts = int(round((h.t0 + (k + 1) * TICK + h.offset_s) * 1e6))
            if ts <= since_us:
                continue
            s = real.c_nvmlSample_t()
            s.timeStamp = ts
            mw = h.ticks[k] * 1000.0
            if self.value_type == real.NVML_VALUE_TYPE_DOUBLE:
                s.sampleValue.dVal = mw
            else:
                s.sampleValue.uiVal = int(round(mw))
            out.append(s)
        if not out:
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)
        return self.value_type, out

    def nvmlDeviceGetFieldValues(self, h: FakeGPU, ids: list[int]) -> Any:
        self._n("fields")
        h.check()
        arr = (real.c_nvmlFieldValue_t * len(ids))()
        now = h.advance()
        for i, fid in enumerate(ids):
            arr[i].fieldId = fid
            arr[i].timestamp = int(now * 1e6)
            if fid != real.NVML_FI_DEV_POWER_INSTANT or "instant" not in h.features:
                arr[i].nvmlReturn = real.NVML_ERROR_NOT_SUPPORTED
                continue
            k = (len(h.ticks) // 5) * 5 - 1  # updates at 10 Hz
            arr[i].valueType = real.NVML_VALUE_TYPE_UNSIGNED_INT
            arr[i].value.uiVal = int(round((h.ticks[k] if k >= 0 else h.power(now)) * 1000.0))
        return arr

    def nvmlDeviceGetPowerUsage(self, h: FakeGPU) -> int:
        self._n("usage")
        if "average" not in h.features:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        h.advance()
        last = h.ticks[-50:] or [h.power(h.clock())]  # a one-second average
        return int(round(sum(last) / len(last) * 1000.0))


class VClock:
    def __init__(self, t: float = 1_790_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---- decoding -------------------------------------------------------------------------------------

def test_value_of_reads_the_union_member_nvml_names() -> None:
    v = real.c_nvmlValue_t()
    v.dVal = 412.5
    assert value_of(real.NVML_VALUE_TYPE_DOUBLE, v) == 412.5
    v = real.c_nvmlValue_t()
    v.uiVal = 700123
    assert value_of(real.NVML_VALUE_TYPE_UNSIGNED_INT, v) == 700123.0
    v = real.c_nvmlValue_t()
    v.ullVal = 2**40
    assert value_of(real.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, v) == float(2**40)


@pytest.mark.parametrize("vtype", [real.NVML_VALUE_TYPE_UNSIGNED_INT, real.NVML_VALUE_TYPE_DOUBLE])
def test_buffer_poll_returns_watts_at_wall_clock_times_once(vtype: int) -> None:
    clk = VClock()
    nv = FakeNVML(power=lambda t: 250.0, clock=clk, value_type=vtype)
    src = NVMLSource(nv=nv, clock=clk)
    d = src.devices[0]
    assert (d.has_counter, d.series_method, d.method) == (True, "buffer", "counter")
    assert src.poll_interval_s == 1.0
    clk.t += 1.0
    first = src.poll(d)
    assert len(first) == 50 and all(p == 250.0 for _, p in first)
    assert first[0][0] > clk.t - 1.0 - 1e-6 and first[-1][0] <= clk.t + 1e-6
    assert src.poll(d) == []  # "Not Found": nothing newer
    clk.t += 0.5
    second = src.poll(d)
    assert len(second) == 25 and second[0][0] > first[-1][0]


def test_buffer_in_another_time_base_is_shifted_to_the_wall_clock() -> None:
    clk = VClock()
    nv = FakeNVML(power=lambda t: 100.0, clock=clk, offset_s=-1_000_000.0)  # e.g. a monotonic clock
    clk.t += 0.5  # the buffer holds samples at open
    src = NVMLSource(nv=nv, clock=clk)
    clk.t += 1.0
    got = src.poll(src.devices[0])
    assert len(got) == 50
    assert abs(got[-1][0] - clk.t) < 0.03


def test_counter_in_joules() -> None:
    clk = VClock()
    nv = FakeNVML(power=lambda t: 300.0, clock=clk)
    src = NVMLSource(nv=nv, clock=clk)
    e0 = src.energy_j(src.devices[0])
    clk.t += 2.0
    assert src.energy_j(src.devices[0]) - e0 == pytest.approx(600.0, abs=1e-6)


@pytest.mark.parametrize("features, series, poll", [
    ("counter,instant,average", "instant", 0.1),
    ("counter,average", "average", 0.1),
    ("instant", "instant", 0.1),
])
def test_fallbacks_are_chosen_and_recorded(features: str, series: str, poll: float) -> None:
    clk = VClock()
    src = NVMLSource(nv=FakeNVML(power=lambda t: 420.0, features=features, clock=clk), clock=clk)
    d = src.devices[0]
    assert d.series_method == series
    assert d.method == ("counter" if "counter" in features else series)
    assert src.poll_interval_s == poll
    clk.t += 1.0
    (t, w), = src.poll(d)
    assert t == clk.t and w == pytest.approx(420.0)


def test_environment_forces_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    clk = VClock()
    monkeypatch.setenv("GREENTRACK_NVML_COUNTER", "off")
    monkeypatch.setenv("GREENTRACK_NVML_SERIES", "instant")
    src = NVMLSource(nv=FakeNVML(clock=clk), clock=clk)
    d = src.devices[0]
    assert (d.has_counter, d.method, d.series_method) == (False, "instant", "instant")
    assert "GREENTRACK_NVML_COUNTER=off" in d.info["counter"]
    assert src.energy_j(d) is None
    monkeypatch.setenv("GREENTRACK_NVML_SERIES", "magic")
    with pytest.raises(ConfigError, match="GREENTRACK_NVML_SERIES"):
        NVMLSource(nv=FakeNVML(clock=clk), clock=clk)
    monkeypatch.delenv("GREENTRACK_NVML_SERIES")
    monkeypatch.setenv("GREENTRACK_NVML_COUNTER", "maybe")
    with pytest.raises(ConfigError, match="on or off"):
        NVMLSource(nv=FakeNVML(clock=clk), clock=clk)


def test_forcing_a_method_the_gpu_lacks_says_so_and_uses_the_best_left() -> None:
    clk = VClock()
    src = NVMLSource(nv=FakeNVML(features="counter,instant", clock=clk), clock=clk, series="buffer")
    d = src.devices[0]
    assert d.series_method == "instant"
    assert "not offered" in d.info["series"]


def test_no_driver_is_source_unavailable_and_nvml_is_shut_down_on_failure() -> None:
    with pytest.raises(SourceUnavailable, match="did not initialise"):
        NVMLSource(nv=FakeNVML(init_error=True))
    nv = FakeNVML(gpus=2)
    with pytest.raises(SourceUnavailable):
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = "7"
        try:
            NVMLSource(nv=nv)
        finally:
            del os.environ["CUDA_VISIBLE_DEVICES"]
    assert nv.inits == 0


# ---- device selection -------------------------------------------------------------------------------

def test_parse_visible_stops_like_cuda() -> None:
    assert parse_visible(None) is None
    assert parse_visible("0,2") == ["0", "2"]
    assert parse_visible("1,-1,0") == ["1"]
    assert parse_visible("") == []


@pytest.mark.parametrize("visible, want", [
    ("1", [1]), ("2,0", [2, 0]), ("0,0", [0]), ("5", []), ("1,5,0", [1]),
    ("GPU-00000002-aaaa-bbbb-cccc-000000000002", [2]), ("GPU-00000001", [1]), ("00000002-aaaa", [2]),
    ("GPU-0000000", []),  # ambiguous prefix: CUDA stops there
])
def test_cuda_visible_devices_by_index_and_uuid(monkeypatch: pytest.MonkeyPatch, visible: str, want: list[int]) -> None:
    nv = FakeNVML(gpus=3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    if not want:
        with pytest.raises(SourceUnavailable, match="CUDA_VISIBLE_DEVICES"):
            NVMLSource(nv=nv)
        return
    assert [d.index for d in NVMLSource(nv=nv).devices] == want


def test_mig_instance_is_measured_as_its_parent_gpu() -> None:
    nv = FakeNVML(gpus=2)
    nv.gpus[1].mig = ["MIG-1234abcd-0000-1111-2222-333344445555"]
    got = select_indices(nv, 2, ["MIG-1234abcd-0000-1111-2222-333344445555"])
    assert got == [(1, "MIG instance MIG-1234abcd-0000-1111-2222-333344445555: the whole parent GPU is measured")]
    assert select_indices(nv, 2, ["MIG-unknown"]) == []


def test_under_torchrun_a_rank_measures_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    nv = FakeNVML(gpus=2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert [d.key for d in NVMLSource(nv=nv).devices] == ["gpu1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert [d.key for d in NVMLSource(nv=nv).devices] == ["gpu1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # launcher gave each rank one GPU
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert [d.key for d in NVMLSource(nv=nv).devices] == ["gpu1"]
    monkeypatch.setenv("GREENTRACK_ALL_GPUS", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert [d.key for d in NVMLSource(nv=nv).devices] == ["gpu0", "gpu1"]


# ---- end to end through a session (real threads, real wall clock) -------------------------------------

def _square(t: float) -> float:
    return 150.0 if int(t * 4) % 2 else 550.0


def _energy_over(gpu: FakeGPU, t0: float, t1: float) -> float:
    """The fake GPU's true energy over [t0, t1]: its 20 ms ticks of constant power, cut at the bounds."""
    gpu.advance()
    total = 0.0
    for k, p in enumerate(gpu.ticks):
        a, b = gpu.t0 + k * TICK, gpu.t0 + (k + 1) * TICK
        total += p * max(0.0, min(b, t1) - max(a, t0))
    return total


def test_session_total_is_the_counter_and_phases_add_up(db_path: Any) -> None:
    nv = FakeNVML(gpus=2, power=_square)
    src = NVMLSource(nv=nv, poll_interval_s=0.2)
    with Session("fake-h200", region="FR", sources=[src], flush_interval_s=0.3) as s:
        with s.phase("a"):
            for _ in range(10):
                time.sleep(0.05)
                s.step(samples=4)
        with s.phase("b"):
            time.sleep(0.6)
    r = s.result
    assert [d.method for d in r.devices] == ["counter", "counter"]
    assert [d.series_method for d in r.devices] == ["buffer", "buffer"]
    # the total is the energy over the session's own window (~400 J per GPU): the counter covers it from its
    # first to its last read, and the 50 Hz series fills the two edges, where a sample's power is placed up to
    # half a 20 ms tick off a 400 W swing: 4 J per edge, 8 J for two. Achieved: within 4.7 J in 38 runs (1.2 %);
    # allowed: the 8 J bound plus 2 J of margin (the counter read after the run was 111 J off before).
    for d in r.devices:
        ref = _energy_over(nv.gpus[d.index], r.started_at, r.ended_at)
        assert d.energy_j == pytest.approx(ref, abs=10.0)
        assert d.series_energy_j == pytest.approx(ref, abs=10.0)
    assert sum(p.energy_j for p in r.phases) + r.outside_phases_j == pytest.approx(r.energy_j, rel=1e-9)
    assert r.step_stats["steps"] == 10 and r.step_stats["j_per_sample"] > 0
    assert nv.calls["counter"] >= 6  # start, flushes, end: never per step
    assert nv.inits == 0


def test_a_gpu_failing_mid_run_is_reported_once_and_the_run_goes_on(capfd: Any) -> None:
    nv = FakeNVML(gpus=2, power=lambda t: 200.0, fail={1: 0.4})
    src = NVMLSource(nv=nv, poll_interval_s=0.1)
    with Session("gpu-lost", region="FR", sources=[src], flush_interval_s=0.2) as s:
        for _ in range(12):
            time.sleep(0.1)
            s.step()
    r = s.result
    err = capfd.readouterr().err
    assert err.count("GPU is lost") == 2  # once for the power read, once for the counter
    assert r.status == "finished"
    good, bad = r.devices
    assert good.energy_j == pytest.approx(200.0 * r.duration_s, rel=0.1)
    assert len(bad.gaps) == 1 and bad.gaps[0][1] == pytest.approx(r.ended_at, abs=0.5)
    # the failed GPU's energy: what was read until it failed; nothing is made up for the rest
    lost_at = bad.gaps[0][0]
    assert bad.energy_j == pytest.approx(200.0 * (lost_at - r.started_at), abs=0.15 * 200)
    assert bad.unmeasured_s == pytest.approx(r.ended_at - lost_at, abs=0.01)
    assert r.unmeasured_s == pytest.approx(bad.unmeasured_s)
    assert any("gpu1: no power reading" in n and "not measured" in n for n in r.notes)
    assert r.energy_j == pytest.approx(good.energy_j + bad.energy_j)
    assert not math.isnan(r.energy_j)
