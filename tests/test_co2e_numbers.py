"""CO2e checked as a number, against the hand calculation written in each test (never greentrack's formula):

    device kWh   = J / 3.6e6
    facility kWh = device kWh x PUE
    CO2e kg      = facility kWh x gCO2e/kWh / 1000

at PUE 1.5 and a known intensity: a test grid of 400 gCO2e/kWh (a greentrack plugin registered by
the test), France as codecarbon's data file gives it (read here as a file), and the world average
(475 gCO2e/kWh, IEA 2019) used when no region is given. Sessions, the pytest plugin's per-test and
session figures, ``greentrack compare`` and ``greentrack estimate`` are each checked.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import artifact_tests, read_artifact
from test_budgets_at_limit import pytest_run

import greentrack
from greentrack import plugins
from greentrack.carbon import grid
from greentrack.carbon.grid import Intensity
from greentrack.errors import ConfigError
from greentrack.store.sqlite import Store

J_PER_KWH = 3.6e6
WORLD_G_PER_KWH = 475.0  # IEA Global Energy & CO2 Status Report 2019, as codecarbon ships it


class FixedGrid:
    @greentrack.hookimpl
    def greentrack_grid_intensity(self, region: str, at: float | None) -> Intensity | None:
        if region == "TEST-400":
            return Intensity("TEST-400", 400.0, "fixed for the test", 2026, "test grid")
        return None


def session_at(monkeypatch: pytest.MonkeyPatch, watts: float, seconds: float, **kw: Any) -> Any:
    monkeypatch.setenv("GREENTRACK_MOCK", f"constant:{watts:g}")
    with greentrack.session("co2e", **kw) as s:
        time.sleep(seconds)
    return s.result


def assert_energy_is_power_times_time(r: Any, watts: float) -> None:
    """Constant power: J = W x s, to the dating of the run's two edges: within 2.3 ms in 15 runs on an idle
    machine; allowed 25 ms, as the sampler thread runs late on a loaded one (the CO2e checks below use the
    measured joules exactly, whatever this margin)."""
    assert r.energy_j == pytest.approx(watts * r.duration_s, abs=watts * 0.025)


# ---- sessions --------------------------------------------------------------------------------------

def test_session_co2e_without_pue_is_caught(monkeypatch: pytest.MonkeyPatch, cli: Any, db_path: Path) -> None:
    """PUE 1.5 on a 400 g/kWh grid: kills CO2e computed from device kWh, without the intensity, or scaled."""
    plugins.register(FixedGrid(), name="fixed-grid")
    r = session_at(monkeypatch, 3600, 0.3, region="TEST-400", pue=1.5)
    assert_energy_is_power_times_time(r, 3600)
    kg = r.energy_j / 3.6e6 * 1.5 * 400 / 1000
    assert r.co2e_kg == pytest.approx(kg, rel=1e-12)
    assert r.co2e_g == pytest.approx(kg * 1000, rel=1e-12)
    assert r.energy_kwh == pytest.approx(r.energy_j / 3.6e6, rel=1e-12)  # device kWh: no PUE
    assert (r.pue, r.intensity_g_per_kwh, r.region) == (1.5, 400.0, "TEST-400")
    # as stored, and as `greentrack report --format json` gives it
    row = Store(db_path, create=False).get_run(r.run_id)
    assert row["co2e_kg"] == pytest.approx(kg, rel=1e-12) and row["pue"] == 1.5
    rep = cli("report", "--format", "json")
    assert rep.returncode == 0, rep.stderr
    (rec,) = [x for x in json.loads(rep.stdout)["runs"] if x["id"] == r.run_id]
    assert rec["co2e_kg"] == pytest.approx(kg, rel=1e-9)
    assert rec["energy_kwh"] == pytest.approx(r.energy_j / 3.6e6, rel=1e-9)


@functools.lru_cache(maxsize=1)
def france_from_codecarbon_file() -> tuple[float, int]:
    """France's intensity and year, read from codecarbon's data file directly."""
    path = grid.codecarbon_data_dir() / "private_infra" / "global_energy_mix.json"
    row = json.loads(path.read_text(encoding="utf-8"))["FRA"]
    return float(row["carbon_intensity"]), int(row["year"])


def test_session_co2e_on_a_country_grid_uses_its_table_value(monkeypatch: pytest.MonkeyPatch) -> None:
    g, year = france_from_codecarbon_file()
    r = session_at(monkeypatch, 1000, 0.2, region="FR", pue=1.5)
    assert r.intensity_g_per_kwh == g and f"{year}" in r.intensity_source
    assert r.co2e_kg == pytest.approx(r.energy_j / 3.6e6 * 1.5 * g / 1000, rel=1e-12)


# ---- the world average -----------------------------------------------------------------------------

def test_world_average_is_475_g_per_kwh_from_iea_2019() -> None:
    """Kills a world average scaled (x1.1) or read from another entry: the number itself, its source and year."""
    w = grid.world_average()
    assert w.g_per_kwh == 475.0
    assert w.year == 2019 and w.source.startswith("IEA Global Energy & CO2 Status Report 2019")
    assert w.fallback is True and w.region == "WORLD"
    assert grid.lookup(None) == w and grid.lookup("  ") == w
    assert grid.lookup_static("world") == w and grid.lookup_static("GLOBAL") == w
    # the file it comes from says the same
    data = json.loads((grid.codecarbon_data_dir() / "private_infra" / "carbon_intensity_per_source.json")
                      .read_text(encoding="utf-8"))
    assert data["world_average"] == 475
    assert "global-energy-co2-status-report-2019" in data["world_average_source"]


def test_world_average_without_codecarbons_file_is_the_same_475(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in fallback, when codecarbon's data file is missing, is the same figure."""
    monkeypatch.setattr(grid, "codecarbon_data_dir", lambda: None)
    grid.world_average.cache_clear()
    try:
        w = grid.world_average()
        assert (w.g_per_kwh, w.year, w.fallback) == (475.0, 2019, True)
        assert w.source == "IEA Global Energy & CO2 Status Report 2019"
    finally:
        grid.world_average.cache_clear()


def test_session_without_region_uses_475_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    r = session_at(monkeypatch, 1000, 0.2, pue=1.5)
    assert r.intensity_g_per_kwh == 475.0 and r.region == "WORLD"
    assert r.co2e_kg == pytest.approx(r.energy_j / 3.6e6 * 1.5 * 475 / 1000, rel=1e-12)
    assert any("no region given: CO2e uses the 475 gCO2e/kWh (world average" in n for n in r.notes)


# ---- the pytest plugin: per-test and session figures ----------------------------------------------

def test_pytest_plugin_co2e_per_test_and_session_at_world_average(pytester: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  db_path: Path) -> None:
    """Kills the plugin's per-test CO2e scaled or computed with another intensity (no --greentrack-pue:
    PUE 1), and a session CO2e that differs from the hand calculation. Per test from the JSON artifact
    (``--greentrack-json``) and the JUnit XML joules; the session from the store, the artifact and the
    JUnit suite properties."""
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:2000")
    pytester.makepyfile(test_two="""
        import time

        def test_short():
            time.sleep(0.05)

        def test_long():
            time.sleep(0.2)
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--greentrack", "--junitxml=junit.xml",
                                        "--greentrack-json=gt.json")
    res.assert_outcomes(passed=2)
    doc = json.loads((pytester.path / "gt.json").read_text(encoding="utf-8"))
    tests = {t["nodeid"]: t for t in doc["tests"]}
    assert set(tests) == {"test_two.py::test_short", "test_two.py::test_long"}
    root = ET.parse(pytester.path / "junit.xml").getroot()
    junit_j = {c.get("name"): float(p.get("value")) for c in root.iter("testcase") for p in c.iter("property")
               if p.get("name") == "greentrack_energy_j"}
    for nodeid, t in tests.items():
        j = t["energy_j"]
        assert j == pytest.approx(2000 * t["duration_s"], rel=1e-6)
        assert j >= 2000 * (0.05 if nodeid.endswith("short") else 0.2) * 0.999
        assert t["co2e_g"] == pytest.approx(j / 3.6e6 * WORLD_G_PER_KWH, rel=1e-12), nodeid
        assert junit_j[nodeid.rpartition("::")[2]] == pytest.approx(j, rel=1e-5)
    (row,) = Store(db_path, create=False).list_runs(last=None)
    assert row["pue"] == 1.0 and row["intensity_g_per_kwh"] == WORLD_G_PER_KWH
    kg = row["energy_j"] / 3.6e6 * WORLD_G_PER_KWH / 1000
    assert row["co2e_kg"] == pytest.approx(kg, rel=1e-12)
    session = doc["session"]
    assert (session["pue"], session["intensity_g_per_kwh"], session["region"]) == (1.0, WORLD_G_PER_KWH, "WORLD")
    assert session["energy_j"] == pytest.approx(row["energy_j"], rel=1e-12)
    assert session["energy_kwh"] == pytest.approx(row["energy_j"] / 3.6e6, rel=1e-12)
    assert session["co2e_g"] == pytest.approx(kg * 1000, rel=1e-12)
    suite = {p.get("name"): p.get("value") for p in root.iter("property")
             if (p.get("name") or "").startswith("greentrack_co2e")}
    assert float(suite["greentrack_co2e_g"]) == pytest.approx(kg * 1000, rel=1e-5)
    out = res.stdout.str()
    assert "CO2e: 475 gCO2e/kWh (world average; IEA Global Energy & CO2 Status Report 2019" in out
    assert f"({row['energy_j'] / 3.6e6:.4g} kWh)" in out
    assert re.search(r"^CO2e: 475 gCO2e/kWh .*, PUE 1 \(not applied\)$", out, re.M), out


PUE_SUITE = """
import time

import pytest


def test_short():
    time.sleep(0.05)


@pytest.mark.energy_budget(co2e_g=0.04)
def test_over_with_the_pue():
    time.sleep(0.1)
"""


@pytest.mark.parametrize("args, ini, env_pue, tool_pue, pue", [
    (["--greentrack-pue", "2"], None, None, None, 2.0),
    ([], "1.25", None, None, 1.25),
    (["--greentrack-pue", "2"], "1.25", None, None, 2.0),  # the command line over the ini key
    ([], "1.25", "1.5", "1.75", 1.25),  # the ini key over greentrack's own settings
    ([], None, "1.5", "1.75", 1.5),  # GREENTRACK_PUE over [tool.greentrack] pue
    ([], None, None, "1.75", 1.75),
])
def test_pytest_plugin_co2e_per_test_and_session_scale_with_the_pue(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_path: Path,
        args: list[str], ini: str | None, env_pue: str | None, tool_pue: str | None, pue: float) -> None:
    """--greentrack-pue / ini greentrack_pue on the 400 g/kWh test grid, mock GPU at 2000 W: each test's
    CO2e is J / 3.6e6 x PUE x 400, and so is the session's (store, artifact); kWh stays the devices' energy
    (before PUE); the summary's CO2e line names the PUE. A test at 2000 W for 0.1 s (200 J, 0.022 g
    before PUE) is over its co2e_g=0.04 marker at PUE 2 whatever its duration (>= 0.044 g), at PUE 1.25
    only if its call took 0.144 s or more (a slow machine), at PUE 1 only from 0.18 s: the marker is
    checked on the figure with the PUE. Kills the option not passed to the Session (PUE 1) and a
    per-test figure without the PUE."""
    if ini:
        pytester.makeini(f"[pytest]\ngreentrack_pue = {ini}\n")
    if env_pue:
        monkeypatch.setenv("GREENTRACK_PUE", env_pue)
    if tool_pue:
        (pytester.path / "pyproject.toml").write_text(f"[tool.greentrack]\npue = {tool_pue}\n")
    pytester.makepyfile(test_pue=PUE_SUITE)
    res = pytest_run(pytester, monkeypatch, "--greentrack", "--greentrack-json=gt.json", *args, watts=2000)
    tests = artifact_tests(pytester.path / "gt.json")
    for name, t in tests.items():
        assert t["energy_j"] == pytest.approx(2000 * t["duration_s"], rel=1e-6), name
        assert t["co2e_g"] == pytest.approx(t["energy_j"] / 3.6e6 * pue * 400, rel=1e-12), name
    over = tests["test_over_with_the_pue"]
    if pue == 2.0:
        res.assert_outcomes(passed=1, failed=1)
        assert over["over_budget"] is True and over["outcome"] == "failed"
        assert re.search(r"energy budget exceeded: [\d.]+ gCO2e > 0\.04 gCO2e \(co2e_g=0\.04\)", res.stdout.str())
    else:
        assert over["over_budget"] is (over["co2e_g"] > 0.04)
    (row,) = Store(db_path, create=False).list_runs(last=None)
    assert row["pue"] == pue and row["intensity_g_per_kwh"] == 400.0
    assert row["co2e_kg"] == pytest.approx(row["energy_j"] / 3.6e6 * pue * 400 / 1000, rel=1e-12)
    session = read_artifact(pytester.path / "gt.json")["session"]
    assert (session["pue"], session["intensity_g_per_kwh"], session["region"]) == (pue, 400.0, "TEST-400")
    assert session["energy_kwh"] == pytest.approx(row["energy_j"] / 3.6e6, rel=1e-12)  # devices, before PUE
    assert session["co2e_g"] == pytest.approx(row["energy_j"] / 3.6e6 * pue * 400, rel=1e-12)
    assert re.search(rf"^CO2e: 400 gCO2e/kWh .*, PUE {pue:g}$", res.stdout.str(), re.M), res.stdout.str()


def test_the_pue_comes_from_the_environment_or_the_pyproject_when_none_is_given(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cli: Any, db_path: Path) -> None:
    """A session, and greentrack run, given no PUE read GREENTRACK_PUE, then [tool.greentrack] pue, then use
    1.0; a bad value is a one-line error where the caller is strict, else reported once and 1.0 used."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.greentrack]\npue = 1.3\n")
    assert session_at(monkeypatch, 1000, 0.05).pue == 1.3
    monkeypatch.setenv("GREENTRACK_PUE", "1.6")
    r = session_at(monkeypatch, 1000, 0.05)
    assert r.pue == 1.6
    assert r.co2e_kg == pytest.approx(r.energy_j / 3.6e6 * 1.6 * r.intensity_g_per_kwh / 1000, rel=1e-12)
    assert session_at(monkeypatch, 1000, 0.05, pue=1.1).pue == 1.1  # the argument wins
    p = cli("run", "--backend", "mock", "--", sys.executable, "-c", "pass")
    assert p.returncode == 0, p.stderr
    assert Store(db_path, create=False).list_runs(last=1)[0]["pue"] == 1.6
    monkeypatch.setenv("GREENTRACK_PUE", "0.8")
    p = cli("run", "--backend", "mock", "--", sys.executable, "-c", "pass")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].endswith(
        "GREENTRACK_PUE must be a finite number >= 1.0 (power usage effectiveness), got '0.8'")
    assert len(Store(db_path, create=False).list_runs(last=None)) == 4  # nothing stored for the refused run
    r = session_at(monkeypatch, 1000, 0.05)  # not strict: reported, measured at PUE 1
    assert r.pue == 1.0 and any("GREENTRACK_PUE must be" in n and "PUE 1.0 (not applied)" in n for n in r.notes)
    with pytest.raises(ConfigError, match=r"^pue must be a finite number >= 1.0 .*got 0.5$"):
        greentrack.Session("bad", pue=0.5)
    monkeypatch.delenv("GREENTRACK_PUE")
    (tmp_path / "pyproject.toml").write_text('[tool.greentrack]\npue = "high"\n')
    with pytest.raises(ConfigError, match=r"^\[tool.greentrack\] pue must be a finite number >= 1.0 .*got 'high'$"):
        greentrack.Session("strict", strict=True, backend="mock", store=False).start()


# ---- greentrack compare ----------------------------------------------------------------------------

SCENARIO = """
[scenarios.test-dc]
kind = "onprem"
description = "a test data centre"
pue = 1.5
intensity_g_per_kwh = 400
electricity_usd_per_kwh = 0.25
hardware_usd_per_gpu = 30000
hardware_lifetime_years = 4
hardware_use_rate = 0.5
embodied_kg_per_gpu = 2000
embodied_lifetime_years = 5
"""


def test_compare_co2e_and_cost_at_pue_1_5_match_the_hand_calculation(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path, cli: Any) -> None:
    """Two mock GPUs at 500 W measured at PUE 1.5 on the 400 g/kWh grid, replayed on a scenario of the same
    PUE and grid: kills a replay without PUE, with the wrong intensity, or an embodied/cost slip."""
    plugins.register(FixedGrid(), name="fixed-grid")
    monkeypatch.setenv("GREENTRACK_MOCK_GPUS", "2")
    r = session_at(monkeypatch, 500, 0.3, region="TEST-400", pue=1.5)
    (tmp_path / "sc.toml").write_text(SCENARIO)
    res = cli("compare", r.run_id, "--scenarios", str(tmp_path / "sc.toml"), "--scenario", "test-dc",
              "--format", "json")
    assert res.returncode == 0, res.stderr
    c = json.loads(res.stdout)
    measured, dc = c["rows"]
    it_kwh = r.energy_j / 3.6e6
    gpu_hours = 2 * r.duration_s / 3600
    assert c["energy_j"] == pytest.approx(r.energy_j, rel=1e-12)
    for row in (measured, dc):
        assert row["it_kwh"] == pytest.approx(it_kwh, rel=1e-9)
        assert row["pue"] == 1.5
        assert row["facility_kwh"] == pytest.approx(it_kwh * 1.5, rel=1e-9)
        assert row["intensity_g_per_kwh"] == 400.0
        assert row["operational_kg"] == pytest.approx(it_kwh * 1.5 * 400 / 1000, rel=1e-9)
    assert dc["gpu_hours"] == pytest.approx(gpu_hours, rel=1e-9)
    assert dc["embodied_kg"] == pytest.approx(gpu_hours * 2000 / (5 * 8760), rel=1e-9)
    assert dc["total_kg"] == pytest.approx(it_kwh * 1.5 * 0.4 + gpu_hours * 2000 / (5 * 8760), rel=1e-9)
    assert dc["cost_usd"] == pytest.approx(it_kwh * 1.5 * 0.25 + gpu_hours * 30000 / (4 * 8760 * 0.5), rel=1e-9)
    assert dc["cost_parts"]["electricity"] == pytest.approx(it_kwh * 1.5 * 0.25, rel=1e-9)


# ---- greentrack estimate ---------------------------------------------------------------------------

def test_estimate_co2e_at_pue_1_5_and_400_g(cli: Any) -> None:
    """100 GPU-hours at 700 W: 70 kWh at the GPUs, 105 kWh with PUE 1.5, 42 kgCO2e at 400 g/kWh."""
    res = cli("estimate", "--params", "7e9", "--gpus", "8", "--gpu-hours", "100", "--gpu-power-w", "700",
              "--pue", "1.5", "--intensity", "400", "--format", "json")
    assert res.returncode == 0, res.stderr
    e = json.loads(res.stdout)
    assert e["it_kwh"] == pytest.approx(70.0, rel=1e-12)
    assert e["energy_kwh"] == pytest.approx(105.0, rel=1e-12)
    assert e["co2e_operational_kg"] == pytest.approx(42.0, rel=1e-12)
    assert e["co2e_embodied_kg"] == 0.0 and e["co2e_kg"] == pytest.approx(42.0, rel=1e-12)
    text = cli("estimate", "--params", "7e9", "--gpus", "8", "--gpu-hours", "100", "--gpu-power-w", "700",
               "--pue", "1.5", "--intensity", "400").stdout
    assert "105.0 kWh  with PUE 1.5" in text and "42.0 kg   at 400 gCO2e/kWh" in text


def test_estimate_without_region_uses_the_world_average_475(cli: Any) -> None:
    res = cli("estimate", "--params", "7e9", "--gpus", "8", "--gpu-hours", "100", "--gpu-power-w", "700",
              "--pue", "1.5", "--format", "json")
    assert res.returncode == 0, res.stderr
    e = json.loads(res.stdout)
    assert e["intensity_g_per_kwh"] == WORLD_G_PER_KWH
    assert e["co2e_kg"] == pytest.approx(105.0 * 0.475, rel=1e-12)  # 49.875 kg
    assert any("world average" in n for n in e["notes"])
