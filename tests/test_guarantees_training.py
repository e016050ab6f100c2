"""Guarantee: nothing a plugin, a budget or a forked worker does stops training.

Each test names the fault it injects; the processes are real where the fault is a process's
(a fork, a pytest run with a broken plugin installed as a distribution).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time

import pytest

import greentrack
from greentrack import plugins
from greentrack.carbon.grid import Intensity
from greentrack.errors import ConfigError
from greentrack.measure.sources.base import Device, SourceUnavailable
from greentrack.store.sqlite import Store


class FineSource:
    """A well-behaved plugin source: one device at 50 W."""

    name = "fine"
    kind = "gpu"
    poll_interval_s = 0.05

    def __init__(self) -> None:
        self.devices = [Device(key="fine0", kind="gpu", index=0, name="Fine", series_method="instant")]

    def poll(self, device):
        return [(time.time(), 50.0)]

    def energy_j(self, device):
        return None

    def close(self):
        pass


class HostilePlugin:
    """Every way a plugin can answer wrong across the boundary."""

    @greentrack.hookimpl
    def greentrack_register_sources(self, register):
        register("raises", lambda settings: (_ for _ in ()).throw(KeyError("no such device")), priority=90)
        register("returns-junk", lambda settings: "not a source", priority=80)
        register("bad-devices", lambda settings: type("S", (), {"name": "x", "kind": "gpu", "poll_interval_s": 1.0,
                                                                 "devices": [1, 2], "poll": print, "energy_j": print,
                                                                 "close": print})(), priority=70)
        register("absent", lambda settings: (_ for _ in ()).throw(SourceUnavailable("not here")), priority=60)
        register("fine", lambda settings: FineSource(), priority=10)
        register(42, lambda settings: FineSource())  # a name that is not a string
        register("not-callable", "factory")

    @greentrack.hookimpl
    def greentrack_grid_intensity(self, region, at):
        return {"FR": "12 g/kWh", "DE": Intensity("DE", float("nan"), "feed", 2026),
                "PL": Intensity("PL", 1e9, "feed", 2026), "ES": Intensity("ES", 100.0, "", 2026)}.get(region)

    @greentrack.hookimpl
    def greentrack_register_scenarios(self, register):
        register({"pue": 0.2}, name="onprem")  # would break a shipped scenario
        register({"kind": "cloud", "pue": "1.1"}, name="half-baked")
        register(["not", "a", "dict"])
        register({"kind": "cloud", "pue": 1.2, "price_per_gpu_hour": 2.0, "embodied_kg_per_gpu": 100,
                  "embodied_lifetime_years": 4, "region": "FR"}, name="plugin-ok")


def test_a_plugin_source_factory_raising_anything_is_skipped_with_backend_auto(capsys):
    plugins.register(HostilePlugin(), name="hostile")
    with greentrack.session("boundary", backend="auto", region="IT") as s:
        time.sleep(0.2)
        s.step()
    r = s.result
    assert r.status == "finished"
    assert [d.key for d in r.devices] == ["fine0"] and r.energy_j == pytest.approx(50 * r.duration_s, rel=0.2)
    err = capsys.readouterr().err
    assert err.count("raises failed in source factory: KeyError") == 1
    assert err.count("returns-junk failed in source factory: TypeError") == 1
    assert err.count("bad-devices failed in source factory: TypeError") == 1
    assert "42 failed in greentrack_register_sources" in err and "not-callable" in err
    assert any(n.startswith("raises: source failed to open (KeyError") for n in r.notes)
    assert "absent: not here" in r.notes  # SourceUnavailable stays a quiet note


def test_a_named_backend_whose_factory_raises_is_one_config_line(capsys):
    plugins.register(HostilePlugin(), name="hostile")
    with pytest.raises(ConfigError, match="backend 'raises' failed to open: 'no such device'"):
        greentrack.Session("strict", backend="raises", strict=True).start()
    with greentrack.session("lenient", backend="returns-junk") as s:
        s.step()
    assert s.result.status == "finished" and s.result.devices == []
    assert "backend 'returns-junk' failed to open" in capsys.readouterr().err


@pytest.mark.parametrize("region, why", [("FR", "returned str '12 g/kWh'"), ("DE", "nan"), ("PL", "1000000000.0"),
                                         ("ES", "without a region or a source")])
def test_a_wrong_grid_intensity_answer_is_skipped_and_the_table_answers(region, why, capsys):
    plugins.register(HostilePlugin(), name="hostile")
    with greentrack.session("grid", region=region, backend="none") as s:
        pass
    it = s.result
    from greentrack.carbon.grid import lookup_static

    table = lookup_static(region)  # the built-in table's answer is what the run gets
    assert it.status == "finished" and it.region == table.region
    assert it.intensity_g_per_kwh == table.g_per_kwh and it.intensity_source == table.describe()
    err = capsys.readouterr().err
    assert err.count("hostile failed in greentrack_grid_intensity") == 1 and why in err


def test_a_bad_scenario_registration_is_undone_and_the_catalogue_stays_usable(capsys):
    from greentrack.carbon.scenarios import Catalogue

    plugins.register(HostilePlugin(), name="hostile")
    cat = Catalogue.load(conf={})
    assert cat.get("onprem:FR").pue >= 1.0  # the shipped definition, not the plugin's PUE 0.2
    assert "half-baked" not in cat.names() and "plugin-ok" in cat.names()
    assert len(cat.all()) == len(cat.names())  # every usable scenario builds
    err = capsys.readouterr().err
    assert "hostile failed in greentrack_register_scenarios (onprem)" in err
    assert "hostile failed in greentrack_register_scenarios (half-baked)" in err


@pytest.mark.parametrize("budget", [float("nan"), -1.0, float("inf"), "lots", True, [1]])
def test_a_budget_that_is_not_a_number_is_refused_before_training_starts(budget):
    """A bad budget is a one-line error when the session is made (as on the CLI), never mid-run."""
    with pytest.raises(ConfigError, match=r"budget_kwh must be a finite number >= 0 \(kWh\)"):
        greentrack.session("budget", budget_kwh=budget)
    with pytest.raises(ConfigError, match="budget_co2e_kg must be a finite number >= 0"):
        greentrack.Session("co2", budget_co2e_kg=budget)


def test_a_budget_given_as_a_numeric_string_is_taken_as_its_number():
    with greentrack.session("budget", budget_kwh="0.5") as s:
        s.step()
    assert s.budget_kwh == 0.5 and s.result.budget["limit"] == 0.5 and s.result.status == "finished"


HOSTILE_DIST = {
    "gt_hostile-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: gt-hostile\nVersion: 0.1\n",
    "gt_hostile-0.1.dist-info/entry_points.txt": "[greentrack]\nhostile = gt_hostile\n",
    "gt_hostile.py": textwrap.dedent("""
        import greentrack

        class Broken(Exception):
            pass

        def factory(settings):
            raise Broken("firmware says no")

        @greentrack.hookimpl
        def greentrack_register_sources(register):
            register("hostile-gpu", factory, priority=1000)

        @greentrack.hookimpl
        def greentrack_grid_intensity(region, at):
            return "a string"
    """),
}


def test_pytest_greentrack_survives_a_broken_plugin_installed_as_a_distribution(pytester, monkeypatch, db_path):
    site = pytester.path / "site"
    for rel, text in HOSTILE_DIST.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("GREENTRACK_BACKEND", "auto")
    monkeypatch.setenv("GREENTRACK_REGION", "FR")
    pytester.makepyfile(test_x="def test_one():\n    assert True\n")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--greentrack")
    assert res.ret == 0, res.stdout.str() + res.stderr.str()
    assert "INTERNALERROR" not in res.stdout.str() + res.stderr.str()
    err = res.stderr.str()
    assert "hostile-gpu failed in source factory: Broken: firmware says no" in err
    assert "hostile failed in greentrack_grid_intensity" in err
    run = Store(db_path).list_runs(last=1)[0]
    assert run["status"] == "finished" and run["region"] == "FRA"


FORK_CHILD = textwrap.dedent("""
    import os, sys, greentrack
    with greentrack.session("parent") as s:
        s.step()
        pid = os.fork()
        if pid == 0:
            s.step()
            sys.exit(int(sys.argv[1]))  # the child leaves the inherited with block
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        s.step()
    print("parent", s.result.status, s.result.steps)
""")


@pytest.mark.parametrize("code", [0, 3])
def test_a_forked_child_leaving_the_with_block_exits_silently_with_its_own_code(code, tmp_path, db_path):
    script = tmp_path / "fork.py"
    script.write_text(FORK_CHILD)
    out = subprocess.run([sys.executable, str(script), str(code)], capture_output=True, text=True, timeout=60)
    said = f"stdout: {out.stdout!r}; stderr: {out.stderr!r}"
    assert out.returncode == 0, said
    assert f"child exit {code}" in out.stdout, said
    assert "parent finished 2" in out.stdout, said  # the child's step never reached the parent's run
    # no traceback, no "belongs to the parent process", nothing from greentrack (Python >= 3.12 may warn
    # that forking a process with threads is risky: that line is Python's, not ours)
    assert "Traceback" not in out.stderr and "greentrack" not in out.stderr, said
    rows = Store(db_path).list_runs(last=None)
    assert [r["status"] for r in rows] == ["finished"], (rows, said)


def test_stop_takes_well_under_a_second_after_a_million_steps():
    with greentrack.session("many", store=False) as s:
        step = s.step
        for _ in range(1_000_000):
            step(samples=8)
        t = time.perf_counter()
    stop_s = time.perf_counter() - t
    r = s.result
    assert r.steps == 1_000_000 and r.samples == 8_000_000
    assert stop_s < 1.0
    assert not s._steps.marks and len(s._steps._t) == 0  # everything folded
    # what is kept grows with the run's duration (a few seconds here), not with the steps
    assert s._steps.memory_bytes() < 100_000
    assert len(s._steps.e_first) <= 10 * (r.duration_s + 1) + 50
    assert r.step_stats["steps"] == 1_000_000 and math.isfinite(r.step_stats["p95_j"])


def test_the_step_log_keeps_the_same_memory_for_a_hundred_times_more_steps():
    from greentrack.measure.energy import Accumulator
    from greentrack.measure.steps import DeviceSeries, StepLog

    sizes = []
    for n in (1_000, 100_000):
        acc = Accumulator()
        for i in range(501):
            acc.add(1000.0 + i * 0.02, 300.0)
        log = StepLog(start_t=1000.0)
        for i in range(n):
            log.marks.extend((1000.0 + 10.0 * (i + 1) / n, 4, None))
            if i % 997 == 0:
                log.fold([DeviceSeries("gpu0", acc)], 1000.0 + 10.0 * (i + 1) / n)
        log.fold([DeviceSeries("gpu0", acc)], math.inf)
        assert log.n == n and log.samples == 4 * n
        sizes.append(log.memory_bytes())
    assert sizes[1] < 2 * sizes[0] + 20_000


def test_step_log_raw_marks_of_a_dead_device_are_not_kept_forever(monkeypatch):
    """A device that never answers must not make the marks pile up (they are folded without it)."""
    monkeypatch.setenv("GREENTRACK_MOCK_FAIL_AFTER", "0")
    from greentrack.measure import sampler as sampler_mod

    monkeypatch.setattr(sampler_mod, "GAP_HOLD_S", 0.3)
    with greentrack.session("dead", sample_interval_s=0.05, flush_interval_s=0.1) as s:
        t = time.time()
        while time.time() - t < 1.0:
            s.step()
            time.sleep(0.001)
        pending = len(s._steps.marks) // 3 + len(s._steps._t)
        assert pending < s._steps.steps / 2
    assert s.result.step_stats is None and s.result.steps > 0
    assert s.result.energy_j is None and "no power sample was read" in s.result.notes


def test_hook_wrappers_cannot_smuggle_a_wrong_intensity(capsys):
    class Wrapper:
        @greentrack.hookimpl(wrapper=True)
        def greentrack_grid_intensity(self, region, at):
            yield
            return "wrapped nonsense"

    plugins.register(Wrapper(), name="wrapper")
    with greentrack.session("w", region="FR", backend="none") as s:
        pass
    assert s.result.intensity_g_per_kwh > 0 and "codecarbon" in s.result.intensity_source
    assert "wrapper failed in greentrack_grid_intensity" in capsys.readouterr().err

