"""greentrack tune against a stand-in for NVML: the frontier, the choice, refusal and restore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import greentrack
from greentrack import plugins
from greentrack.errors import GreentrackError
from greentrack.measure.gpucontrol import ControlRefused, GPUControl, restore_pending
from greentrack.measure.sources.base import Device
from greentrack.study.tune import auto_limits, tune

pytest.importorskip("pynvml")
from nvml_standin import StandInNVML  # noqa: E402

TESTS = Path(__file__).parent
DEMAND_W = 600.0  # what the workload would draw without a cap


class CappedGPU:
    """A power source whose GPU draws min(demand, power limit), the limit read from the stand-in."""

    name, kind, poll_interval_s = "capped", "gpu", 0.02

    def __init__(self, nv: StandInNVML) -> None:
        self.nv = nv
        self.devices = [Device(key="gpu0", kind="gpu", index=0, name="Stand-in GPU", series_method="instant")]

    def poll(self, device):
        return [(time.time(), min(DEMAND_W, self.nv.limit_w()))]

    def energy_j(self, device):
        return None

    def close(self):
        pass


@pytest.fixture
def nv(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENTRACK_GPU_STATE", str(tmp_path / "gpu-settings.json"))
    s = StandInNVML(tmp_path / "driver.json")

    class Capped:
        @greentrack.hookimpl
        def greentrack_register_sources(self, register):
            register("capped", lambda settings: CappedGPU(s), priority=0, auto=False)

    plugins.register(Capped(), name="capped")
    return s


def capped_step(nv: StandInNVML, base_s: float = 0.02):
    """A step that slows as the limit caps power: time ∝ sqrt(demand / power)."""
    def step():
        p = min(DEMAND_W, nv.limit_w())
        time.sleep(base_s * (DEMAND_W / p) ** 0.5)
    return step


def test_auto_limits_span_the_range_with_the_default():
    assert auto_limits({"min": 200, "max": 700, "default": 700, "current": 700}) == [200, 325, 450, 575, 700]
    assert 500 in auto_limits({"min": 100, "max": 600, "default": 500, "current": 500})


def test_frontier_choice_and_remeasured_saving(nv, tmp_path):
    ctl = GPUControl(nv)
    res = tune(capped_step(nv), control=ctl, seconds=0.6, reps=2, warmup_steps=1, max_slowdown_pct=30.0,
               backend="capped", db=str(tmp_path / "t.db"))
    by = {p.label: p for p in res.points}
    assert set(by) == {"200W", "325W", "450W", "575W", "700W"}
    # with power min(600, L) and time sqrt(600 / min(600, L)), 450 W is the cheapest within a 30 % slowdown
    # (325 W is 36 % slower); 575 W and 700 W draw the same 600 W
    assert res.chosen == "450W"
    assert by["450W"].slowdown_pct == pytest.approx(15.5, abs=4.0)
    # every lower limit saves energy and costs time here: each point is on the frontier
    assert all(p.on_frontier for p in res.points)
    expected = (1 - (450 * (600 / 450) ** 0.5) / 600) * 100  # 13.4 %
    assert res.predicted_saving_pct == pytest.approx(expected, abs=2.0)
    assert res.measured_saving_pct == pytest.approx(res.predicted_saving_pct, abs=2.0)
    assert nv.limit_w() == 700.0 and not (tmp_path / "gpu-settings.json").exists()  # restored
    runs = greentrack.runs(db=str(tmp_path / "t.db"), tags={"study": res.study_id})
    assert len(runs) == 5 * 2 + 2 * 2  # sweep, then the chosen and the default measured again


def test_locked_clocks_are_points_and_unlocked_after(nv, tmp_path):
    ctl = GPUControl(nv)
    res = tune(capped_step(nv, 0.01), control=ctl, limits=[450, 700], clocks=[1410], seconds=0.2, reps=1,
               warmup_steps=0, max_slowdown_pct=50.0, backend="capped", db=str(tmp_path / "t.db"))
    assert [p.label for p in res.points] == ["450W", "700W", "700W@1410MHz"]
    assert nv.clock_mhz() is None and nv.limit_w() == 700.0


def test_a_driver_that_forbids_changes_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENTRACK_GPU_STATE", str(tmp_path / "s.json"))
    nv = StandInNVML(tmp_path / "driver.json", refuse=True)
    ctl = GPUControl(nv)
    with pytest.raises(ControlRefused, match="not allowed here \\(insufficient permissions\\)"):
        tune(lambda: None, control=ctl, seconds=0.1, reps=1, backend="mock", db=str(tmp_path / "t.db"))
    assert nv.limit_w() == 700.0


def test_a_limit_outside_the_range_is_refused(nv):
    with pytest.raises(GreentrackError, match="outside GPU 0's range 200-700 W"):
        GPUControl(nv).set_power_limit(0, 900)


CHANGE_AND_WAIT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from nvml_standin import StandInNVML
    from greentrack.measure.gpucontrol import GPUControl, restoring
    nv = StandInNVML({driver!r})
    ctl = GPUControl(nv)
    with restoring(ctl):
        ctl.set_power_limit(0, 300)
        ctl.lock_clocks(0, 1200)
        print("CHANGED", flush=True)
        time.sleep(60)
""")


def _changer(tmp_path: Path) -> subprocess.Popen:
    code = CHANGE_AND_WAIT.format(tests=str(TESTS), driver=str(tmp_path / "driver.json"))
    env = dict(os.environ, GREENTRACK_GPU_STATE=str(tmp_path / "gpu-settings.json"))
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "CHANGED"
    return p


def test_sigkill_then_the_next_start_restores(tmp_path):
    nv = StandInNVML(tmp_path / "driver.json")
    p = _changer(tmp_path)
    assert nv.limit_w() == 300.0 and nv.clock_mhz() == 1200
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    assert nv.limit_w() == 300.0  # nothing could run at SIGKILL
    done = restore_pending(nv, tmp_path / "gpu-settings.json")
    assert done == ["GPU 0: power limit back to 700 W, SM clocks unlocked"]
    assert nv.limit_w() == 700.0 and nv.clock_mhz() is None
    assert not (tmp_path / "gpu-settings.json").exists()
    assert restore_pending(nv, tmp_path / "gpu-settings.json") == []


def test_sigterm_restores_before_exiting(tmp_path):
    nv = StandInNVML(tmp_path / "driver.json")
    p = _changer(tmp_path)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == -signal.SIGTERM
    assert nv.limit_w() == 700.0 and nv.clock_mhz() is None


def test_a_live_tuner_is_left_alone(tmp_path):
    nv = StandInNVML(tmp_path / "driver.json")
    p = _changer(tmp_path)
    try:
        msg = restore_pending(nv, tmp_path / "gpu-settings.json")
        assert len(msg) == 1 and "being changed by process" in msg[0] and nv.limit_w() == 300.0
    finally:
        p.kill()
        p.wait()
