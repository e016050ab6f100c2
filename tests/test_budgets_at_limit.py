"""Budgets checked near their limit: a measured value at 0.5x and 2x each kind of limit.

A budget test whose limit is orders of magnitude away from what is measured passes with a
1000x unit error (``e / 3.6e9`` for kWh) or a comparison against ``100 * limit``. Here the mock
GPU draws a constant power, so each figure is known in advance to within the timing of a
``sleep``; every limit is set at twice (must pass) or half (must fail) of it, and the
figures greentrack reports are checked against a hand calculation:

    kWh    = J / 3.6e6                    (device energy: the kWh budgets count it before PUE)
    gCO2e  = J / 3.6e6 x PUE x 400        (the test grid below: 400 gCO2e/kWh)

The pytest plugin runs in real pytest subprocesses (pytester); the Session API in process.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import artifact_tests, read_artifact

import greentrack
from greentrack.carbon.grid import Intensity
from greentrack.store.sqlite import Store

G_PER_KWH = 400.0  # the test grid's intensity
J_PER_KWH = 3.6e6  # written out here on purpose: the tests do not use greentrack's constant

# a greentrack plugin giving the region TEST-400 a known intensity; in a pytester project it is
# registered by the project's conftest.py, which pytest imports before the session starts
FIXED_GRID = """
from greentrack import hookimpl, plugins
from greentrack.carbon.grid import Intensity


class FixedGrid:
    @hookimpl
    def greentrack_grid_intensity(self, region, at):
        if region == "TEST-400":
            return Intensity("TEST-400", 400.0, "fixed for the test", 2026, "test grid")
        return None


plugins.register(FixedGrid(), name="fixed-grid")
"""


class FixedGrid:
    @greentrack.hookimpl
    def greentrack_grid_intensity(self, region: str, at: float | None) -> Intensity | None:
        if region == "TEST-400":
            return Intensity("TEST-400", G_PER_KWH, "fixed for the test", 2026, "test grid")
        return None


def pytest_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str, watts: float,
               region: str | None = "TEST-400") -> pytest.RunResult:
    """One pytest session in a subprocess, on a mock GPU drawing *watts*, on the TEST-400 grid."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "mock")
    monkeypatch.setenv("GREENTRACK_MOCK", f"constant:{watts:g}")
    if region:
        monkeypatch.setenv("GREENTRACK_REGION", region)
    if not (pytester.path / "conftest.py").exists():
        pytester.makeconftest(FIXED_GRID)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    """``{test name: {property: value}}`` of the ``greentrack_*`` properties of each test case in a JUnit XML
    report (``greentrack_energy_j``, ``greentrack_energy_method``, ``greentrack_energy_budget``,
    ``greentrack_energy_budget_status``)."""
    out: dict[str, dict[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")
                 if (p.get("name") or "").startswith("greentrack_")}
        if props:
            out[str(case.get("name"))] = props
    return out


def newest_run(db: Path) -> dict[str, Any]:
    return Store(db, create=False).list_runs(last=1)[0]


# ---- per-test limits: @pytest.mark.energy_budget(joules=, kwh=, co2e_g=) ------------------------------

# 3600 W for 0.2 s: 720 J = 2e-4 kWh = 0.08 gCO2e on the 400 g/kWh grid (PUE 1)
PER_TEST = """
import time
import pytest

T = 0.2


@pytest.mark.energy_budget(joules=1440)
def test_joules_half_the_limit():
    time.sleep(T)


@pytest.mark.energy_budget(joules=360)
def test_joules_twice_the_limit():
    time.sleep(T)


@pytest.mark.energy_budget(kwh=4e-4)
def test_kwh_half_the_limit():
    time.sleep(T)


@pytest.mark.energy_budget(kwh=1e-4)
def test_kwh_twice_the_limit():
    time.sleep(T)


@pytest.mark.energy_budget(co2e_g=0.16)
def test_co2e_half_the_limit():
    time.sleep(T)


@pytest.mark.energy_budget(co2e_g=0.04)
def test_co2e_twice_the_limit():
    time.sleep(T)
"""


def test_per_test_limits_at_half_and_twice_catch_unit_and_comparison_errors(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills: kWh as ``e / 3.6e9`` (or ``e * 3.6e6``), CO2e without the intensity or scaled, and
    ``used > k * limit`` for any k outside (0.5, 2): each pair fails on one side."""
    pytester.makepyfile(test_budgets=PER_TEST)
    res = pytest_run(pytester, monkeypatch, "--greentrack", "--junitxml=junit.xml", "--greentrack-json=gt.json",
                     watts=3600)
    out = res.stdout.str()
    res.assert_outcomes(passed=3, failed=3)
    failed = set(re.findall(r"^FAILED test_budgets.py::(\w+) - Failed: energy", out, re.M))
    assert failed == {"test_joules_twice_the_limit", "test_kwh_twice_the_limit", "test_co2e_twice_the_limit"}, out
    tests = artifact_tests(pytester.path / "gt.json")
    props = junit_properties(pytester.path / "junit.xml")
    assert len(tests) == 6 and set(props) == set(tests)
    for name, t in tests.items():
        j = t["energy_j"]
        # constant 3600 W over a call of at least 0.2 s: at least 720 J; under 2x that, or the pairs
        # above would not be at 0.5x / 2x of their limits
        assert 720.0 * 0.999 <= j < 1440.0, (name, j)
        assert j == pytest.approx(3600.0 * t["duration_s"], rel=1e-6)
        assert t["co2e_g"] == pytest.approx(j / J_PER_KWH * G_PER_KWH, rel=1e-12)
        assert t["over_budget"] is name.endswith("twice_the_limit") and t["budget_checked"] is True
        # JUnit XML: the same joules, the marker's limit and the outcome
        p = props[name]
        assert float(p["greentrack_energy_j"]) == pytest.approx(j, rel=1e-5)
        assert p["greentrack_energy_method"] == t["method"] == "buffer"  # the mock's power series
        assert p["greentrack_energy_budget"] == ",".join(f"{k}={v:g}" for k, v in t["budget"].items())
        assert p["greentrack_energy_budget_status"] == ("exceeded" if name.endswith("twice_the_limit") else "within")
    assert tests["test_kwh_twice_the_limit"]["budget"] == {"kwh": 1e-4}
    # the failure lines show the measured figure in the limit's unit
    twice = {k: tests[f"test_{k}_twice_the_limit"]["energy_j"] for k in ("joules", "kwh", "co2e")}
    m = re.search(r"energy budget exceeded: ([\d.e+-]+) J > 360 J \(joules=360\)", out)
    assert m and float(m.group(1)) == pytest.approx(twice["joules"], rel=1e-3)
    m = re.search(r"energy budget exceeded: ([\d.e+-]+) kWh > 0.0001 kWh \(kwh=0.0001\)", out)
    assert m and float(m.group(1)) == pytest.approx(twice["kwh"] / J_PER_KWH, rel=1e-3)
    m = re.search(r"energy budget exceeded: ([\d.e+-]+) gCO2e > 0.04 gCO2e \(co2e_g=0.04\)", out)
    assert m and float(m.group(1)) == pytest.approx(twice["co2e"] / J_PER_KWH * G_PER_KWH, rel=1e-3)
    assert "3 tests over their energy_budget marker" in out


def test_per_test_limit_of_zero_holds_a_test_that_used_zero(pytester: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly at the limit is within it: kills ``used >= limit`` (0 J against joules=0, kwh=0, co2e_g=0)."""
    pytester.makepyfile(test_zero="""
        import time
        import pytest

        @pytest.mark.energy_budget(joules=0, kwh=0, co2e_g=0)
        def test_idle_gpu(greentrack_energy):
            time.sleep(0.05)
            assert greentrack_energy.energy_j == 0.0
    """)
    res = pytest_run(pytester, monkeypatch, "--greentrack", watts=0)
    res.assert_outcomes(passed=1)


def test_fixture_figures_match_the_hand_calculation(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``greentrack_energy`` fixture's kWh and gCO2e: kills a unit or intensity error in its properties."""
    pytester.makepyfile(test_fix="""
        import time
        import pytest

        @pytest.fixture
        def fixed(greentrack_energy):
            yield greentrack_energy
            m = greentrack_energy  # the call has ended: its figures are fixed now
            e = m.energy_j
            assert m.ended_at is not None and e == m.energy_j
            assert abs(e / m.duration_s - 3600.0) <= 1e-6 * 3600.0
            assert abs(m.energy_kwh - e / 3.6e6) <= 1e-12 * e / 3.6e6
            assert abs(m.co2e_g - e / 3.6e6 * 400.0) <= 1e-12 * e / 3.6e6 * 400.0

        def test_figures(fixed):
            time.sleep(0.1)
            assert fixed.energy_j > 0 and fixed.over_budget() == []
    """)
    res = pytest_run(pytester, monkeypatch, "--greentrack", watts=3600)
    res.assert_outcomes(passed=1)


# ---- session limits: --energy-budget-kwh, --energy-budget-co2e-g --------------------------------------

# one test of 1 s at 3600 W: the session (collection, the test, stop) about 1.1 s, ~1.1e-3 kWh,
# ~0.44 gCO2e; limits at 2x and 0.5x of that
SESSION = """
import time


def test_one_second():
    time.sleep(1.0)
"""
KWH_PASS, KWH_FAIL = 2.2e-3, 5.5e-4
G_PASS, G_FAIL = 0.88, 0.22


def _session_figures(db: Path) -> tuple[float, float, float]:
    row = newest_run(db)
    j = row["energy_j"]
    # the session lasted at least the 1 s test and less than 2 s: its figures sit between the
    # limits, so the two limits below are at about 0.5x and 2x
    assert 3600.0 <= j < 7200.0, j
    assert row["co2e_kg"] == pytest.approx(j / J_PER_KWH * G_PER_KWH / 1000.0, rel=1e-12)
    return j, j / J_PER_KWH, j / J_PER_KWH * G_PER_KWH


def test_session_kwh_and_co2e_limits_at_twice_the_measure_pass(pytester: pytest.Pytester,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                db_path: Path) -> None:
    """Kills ``used < limit`` and ``used > limit / 100``-style errors: within both, exit 0; the held
    budget is stored with the run, not flagged as exceeded."""
    pytester.makepyfile(test_session=SESSION)
    res = pytest_run(pytester, monkeypatch, "--energy-budget-kwh", str(KWH_PASS), "--energy-budget-co2e-g",
                     str(G_PASS), "--greentrack-json=gt.json", watts=3600)
    assert res.ret == 0, res.stdout.str()
    assert "over its energy budget" not in res.stdout.str()
    _j, kwh, g = _session_figures(db_path)
    assert kwh < KWH_PASS and g < G_PASS
    assert newest_run(db_path)["budget"] == {"budget": "energy_budget_kwh", "limit": KWH_PASS,
                                             "usage": pytest.approx(kwh, rel=1e-9), "exceeded": False}
    doc = read_artifact(pytester.path / "gt.json")
    assert doc["failed"] is False
    assert doc["session"]["energy_kwh"] == pytest.approx(kwh, rel=1e-9)
    assert doc["session"]["co2e_g"] == pytest.approx(g, rel=1e-9)
    checks = {c["check"]: c for c in doc["checks"]}
    assert {k: c["status"] for k, c in checks.items()} == {"energy_budget_kwh": "ok", "energy_budget_co2e_g": "ok"}
    assert checks["energy_budget_co2e_g"]["data"] == {"limit": G_PASS, "usage": pytest.approx(g, rel=1e-9)}


def test_session_kwh_unit_error_is_caught_at_twice_the_limit(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """Kills the session kWh computed as ``e / 3.6e9`` and ``used > 100 * limit``: 2x the limit fails."""
    pytester.makepyfile(test_session=SESSION)
    res = pytest_run(pytester, monkeypatch, "--energy-budget-kwh", str(KWH_FAIL), "--energy-budget-co2e-g",
                     str(G_PASS), watts=3600)
    assert res.ret == 1, res.stdout.str()
    _j, kwh, _g = _session_figures(db_path)
    m = re.search(r"greentrack: session over its energy budget: ([\d.e+-]+) kWh > 0.00055 kWh "
                  r"\(energy_budget_kwh\)", res.stdout.str())
    assert m and float(m.group(1)) == pytest.approx(kwh, rel=1e-3)
    assert "gCO2e > " not in res.stdout.str()
    budget = newest_run(db_path)["budget"]
    assert budget == {"budget": "energy_budget_kwh", "limit": KWH_FAIL, "usage": pytest.approx(kwh, rel=1e-9),
                      "exceeded": True}


def test_session_co2e_without_intensity_or_scaled_is_caught_at_twice_the_limit(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """Kills a session gCO2e off by the intensity (or in kg): 2x the gCO2e limit fails, kWh within."""
    pytester.makepyfile(test_session=SESSION)
    res = pytest_run(pytester, monkeypatch, "--energy-budget-kwh", str(KWH_PASS), "--energy-budget-co2e-g",
                     str(G_FAIL), watts=3600)
    assert res.ret == 1, res.stdout.str()
    _j, _kwh, g = _session_figures(db_path)
    out = res.stdout.str()
    m = re.search(r"greentrack: session over its energy budget: ([\d.e+-]+) gCO2e > 0.22 gCO2e "
                  r"\(energy_budget_co2e_g\)", out)
    assert m and float(m.group(1)) == pytest.approx(g, rel=1e-3)
    assert "kWh > " not in out
    budget = newest_run(db_path)["budget"]
    assert budget == {"budget": "energy_budget_co2e_g", "limit": G_FAIL, "usage": pytest.approx(g, rel=1e-9),
                      "exceeded": True}


def test_session_limit_of_zero_holds_a_session_that_used_zero(pytester: pytest.Pytester,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly at the limit is within it: kills ``used >= limit`` in the session check."""
    pytester.makepyfile(test_session="def test_nothing():\n    pass\n")
    res = pytest_run(pytester, monkeypatch, "--energy-budget-kwh", "0", "--energy-budget-co2e-g", "0", watts=0)
    assert res.ret == 0, res.stdout.str()
    assert "over its energy budget" not in res.stdout.str()


# ---- regression percent: --energy-budget-regression ---------------------------------------------------

REGRESSION = """
import time


def test_a():
    time.sleep(0.3)


def test_b():
    time.sleep(0.3)
"""


def test_regression_percent_at_half_and_twice_the_limit(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                        db_path: Path) -> None:
    """Each run draws 1.5x the power of the one before: +50 %. A 100 % limit holds (0.5x), a 25 % limit
    fails (2x). Kills a change computed as a ratio (``b / a``), in per-mille, or compared ``> k * limit``."""
    pytester.makepyfile(test_reg=REGRESSION)
    assert pytest_run(pytester, monkeypatch, "--greentrack", watts=1000).ret == 0
    first = newest_run(db_path)["id"]

    res = pytest_run(pytester, monkeypatch, "--color=yes", "--energy-budget-regression", "100", watts=1500)
    assert res.ret == 0, res.stdout.str()
    line = next(ln for ln in res.stdout.str().splitlines() if "tests in common with run" in ln)
    assert "\x1b[31m" not in line  # within the limit: not shown as a failure
    m = re.search(rf"greentrack: the 2 tests in common with run {first} .* used ([\d.]+) J against ([\d.]+) J: "
                  r"([+-][\d.]+)% \(limit \+100%\)", res.stdout.str())
    assert m, res.stdout.str()
    new_j, old_j, change = float(m.group(1)), float(m.group(2)), float(m.group(3))
    assert change == pytest.approx((new_j / old_j - 1) * 100, abs=0.2)  # as printed: J to 0.1, % to 0.1
    assert 25.0 < change < 100.0  # +50 % by construction; the sleeps' jitter is far smaller
    second = newest_run(db_path)["id"]

    res = pytest_run(pytester, monkeypatch, "--color=yes", "--energy-budget-regression", "25", watts=2250)
    assert res.ret == 1, res.stdout.str()
    line = next(ln for ln in res.stdout.str().splitlines() if "energy regression: " in ln)
    assert "\x1b[31m" in line  # over the limit: shown as a failure
    m = re.search(rf"greentrack: energy regression: the 2 tests in common with run {second} .* "
                  r"([+-][\d.]+)% \(limit \+25%\); largest increase: test_reg.py::test_[ab]", res.stdout.str())
    assert m, res.stdout.str()
    assert 25.0 < float(m.group(1)) < 100.0
    budget = newest_run(db_path)["budget"]
    assert budget["budget"] == "energy_budget_regression" and budget["limit"] == 25.0
    assert budget["usage"] == pytest.approx(float(m.group(1)), abs=0.05) and budget["against"] == second


# ---- the Session API: budget_kwh, budget_co2e_kg (live, at each flush, and at the end) ----------------

@pytest.fixture
def watcher(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """The TEST-400 grid and a plugin recording each ``greentrack_budget_exceeded`` call."""
    from greentrack import plugins

    seen: list[tuple[dict[str, Any], dict[str, float]]] = []

    class Watcher:
        @greentrack.hookimpl
        def greentrack_budget_exceeded(self, run: Any, budget: dict[str, Any], usage: dict[str, float]) -> None:
            seen.append((budget, usage))

    plugins.register(FixedGrid(), name="fixed-grid")
    plugins.register(Watcher(), name="watcher")
    return seen


def measured_session(monkeypatch: pytest.MonkeyPatch, watts: float, seconds: float, **budgets: float) -> Any:
    """A session at PUE 1.5 on the TEST-400 grid, on a mock GPU at constant *watts*, flushing every 0.05 s."""
    monkeypatch.setenv("GREENTRACK_MOCK", f"constant:{watts:g}")
    with greentrack.session("budget", region="TEST-400", pue=1.5, flush_interval_s=0.05, **budgets) as s:
        time.sleep(seconds)
    return s.result


# 3600 W for 0.6 s: ~2160 J = 6e-4 kWh (device), x 1.5 x 400 g = 0.36 gCO2e = 3.6e-4 kg


def test_session_budget_kwh_at_twice_the_measure_holds(monkeypatch: pytest.MonkeyPatch, watcher: list) -> None:
    r = measured_session(monkeypatch, 3600, 0.6, budget_kwh=1.2e-3)
    assert watcher == []
    kwh = r.energy_j / J_PER_KWH
    assert 0.25 * 1.2e-3 < kwh < 1.2e-3
    # the kWh budget counts device energy, before PUE
    assert r.budget == {"budget": "energy_kwh", "limit": 1.2e-3, "usage": pytest.approx(kwh, rel=1e-12),
                        "exceeded": False}


def test_session_budget_kwh_unit_error_is_caught_at_twice_the_limit(monkeypatch: pytest.MonkeyPatch,
                                                                    watcher: list, capfd: Any) -> None:
    """Crossed live, at the flush after the limit: kills ``/ 3.6e9``, ``> 100 * limit`` and a check
    that never runs; the usage reported when crossed is just past the limit, not the final total."""
    r = measured_session(monkeypatch, 3600, 0.6, budget_kwh=3e-4)
    assert len(watcher) == 1
    budget, usage = watcher[0]
    assert budget["budget"] == "energy_kwh" and budget["limit"] == 3e-4
    # crossed at the first flush past the limit: less than 0.3 s of 3600 W later (counter 10 Hz, flush 20 Hz)
    assert 3e-4 < budget["usage"] < 3e-4 + 0.3 * 3600 / J_PER_KWH
    assert usage["energy_kwh"] == budget["usage"]
    assert usage["co2e_kg"] == pytest.approx(usage["energy_kwh"] * 1.5 * G_PER_KWH / 1000, rel=1e-12)
    assert r.budget == dict(budget, exceeded=True)
    assert r.energy_j / J_PER_KWH > budget["usage"]  # the run went on after the crossing
    err = capfd.readouterr().err
    assert re.search(r"run 'budget' exceeded its budget: [\d.e-]+ kWh > 0\.0003 kWh", err), err


def test_session_budget_co2e_kg_at_twice_the_measure_holds(monkeypatch: pytest.MonkeyPatch, watcher: list) -> None:
    r = measured_session(monkeypatch, 3600, 0.6, budget_co2e_kg=7.2e-4)
    assert watcher == []
    kg = r.energy_j / J_PER_KWH * 1.5 * G_PER_KWH / 1000
    assert 0.25 * 7.2e-4 < kg < 7.2e-4
    assert r.co2e_kg == pytest.approx(kg, rel=1e-12)
    assert r.budget == {"budget": "co2e_kg", "limit": 7.2e-4, "usage": pytest.approx(kg, rel=1e-12),
                        "exceeded": False}


def test_session_budget_co2e_kg_without_pue_is_caught_at_twice_the_limit(monkeypatch: pytest.MonkeyPatch,
                                                                         watcher: list) -> None:
    """1.8e-4 kg is crossed after ~0.3 s with PUE 1.5, after ~0.45 s without it: the usage reported
    at the crossing tells them apart (kills CO2e without PUE, or with kWh in place of CO2e)."""
    r = measured_session(monkeypatch, 3600, 0.6, budget_co2e_kg=1.8e-4)
    assert len(watcher) == 1
    budget, usage = watcher[0]
    assert budget["budget"] == "co2e_kg" and budget["limit"] == 1.8e-4
    assert 1.8e-4 < budget["usage"] < 1.8e-4 + 0.3 * 3600 / J_PER_KWH * 1.5 * G_PER_KWH / 1000
    assert usage["co2e_kg"] == budget["usage"]
    assert usage["co2e_kg"] == pytest.approx(usage["energy_kwh"] * 1.5 * G_PER_KWH / 1000, rel=1e-12)
    assert r.budget == dict(budget, exceeded=True)


def test_session_budgets_of_zero_hold_a_session_that_used_zero(monkeypatch: pytest.MonkeyPatch,
                                                               watcher: list) -> None:
    """Exactly at the limit is within it: kills ``usage >= limit`` in the live and the final check."""
    r = measured_session(monkeypatch, 0, 0.2, budget_kwh=0.0)
    assert r.energy_j == 0.0 and watcher == []
    assert r.budget == {"budget": "energy_kwh", "limit": 0.0, "usage": 0.0, "exceeded": False}
    r = measured_session(monkeypatch, 0, 0.2, budget_co2e_kg=0.0)
    assert watcher == [] and r.budget["exceeded"] is False


def test_report_says_budget_exceeded_only_for_the_run_that_crossed_it(monkeypatch: pytest.MonkeyPatch,
                                                                      watcher: list, cli: Any,
                                                                      tmp_path: Path) -> None:
    """A run within its budget stores its outcome too (``exceeded`` False): the report must not read
    the mere presence of a budget as "exceeded"."""
    within = measured_session(monkeypatch, 3600, 0.3, budget_kwh=1.0)
    over = measured_session(monkeypatch, 3600, 0.3, budget_kwh=1e-5)
    assert within.budget["exceeded"] is False and over.budget["exceeded"] is True
    res = cli("report", "--format", "json")
    assert res.returncode == 0, res.stderr
    flags = {r["id"]: r["budget_exceeded"] for r in json.loads(res.stdout)["runs"]}
    assert flags == {within.run_id: False, over.run_id: True}
    rows = csv.DictReader(io.StringIO(cli("report", "--format", "csv").stdout))
    assert {r["id"]: r["budget_exceeded"] for r in rows} == {within.run_id: "false", over.run_id: "true"}
    html = cli("report", "--format", "html", "-o", str(tmp_path / "r.html"))
    assert html.returncode == 0, html.stderr
    page = (tmp_path / "r.html").read_text()
    assert page.count("EXCEEDED: ") == 1 and page.count("within: ") == 1

