"""The pytest plugin end to end: real pytest subprocesses (pytester), the mock GPU, a real SQLite file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from greentrack.store.sqlite import Store

SUITE = """
import time
import pytest

def test_quick():
    pass

def test_sleepy():
    time.sleep(0.15)  # the session spans at least one 10 Hz update of the mock's energy counter

@pytest.mark.energy_budget(joules=1e6)
def test_within_budget(greentrack_energy):
    time.sleep(0.01)
    assert greentrack_energy.enabled
    assert greentrack_energy.energy_j > 0
"""


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str, mock: str = "constant:1000",
        backend: str = "mock") -> pytest.RunResult:
    """One pytest session in a fresh subprocess, so the plugin loads through its entry point."""
    monkeypatch.setenv("GREENTRACK_BACKEND", backend)
    monkeypatch.setenv("GREENTRACK_MOCK", mock)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def runs_named(db: Path, name: str) -> list[dict]:
    return Store(db, create=False).list_runs(last=None, name=name)


def test_inert_when_not_enabled(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    # no energy_budget marker and no greentrack_energy fixture (those enable it: tests/test_pytest_ci.py)
    pytester.makepyfile(test_idle="""
        import sys
        import pytest

        def test_idle(request):
            assert request.config.pluginmanager.has_plugin("greentrack")
            # nothing of the measuring machinery was imported
            assert "greentrack.measure.tracker" not in sys.modules
            assert "greentrack.pytest_plugin.energy" not in sys.modules
            assert not request.config.pluginmanager.has_plugin("greentrack-energy")
    """)
    res = run(pytester, monkeypatch, "--strict-markers")
    res.assert_outcomes(passed=1)
    assert "greentrack energy" not in res.stdout.str()
    assert not db_path.exists()


def test_marker_options_and_ini_keys_are_registered(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest_subprocess("--markers")
    res.stdout.fnmatch_lines(["@pytest.mark.energy_budget(kwh=None, co2e_g=None, joules=None): fail the test *"])
    res = pytester.runpytest_subprocess("--help")
    res.stdout.fnmatch_lines(["energy budgets (greentrack):", "  --greentrack *", "  --energy-budget-kwh=KWH*"])
    for key in ("greentrack (bool)", "energy_budget_kwh (float)", "energy_budget_co2e_g (float)",
                "energy_budget_regression (float)", "greentrack_name (string)", "greentrack_top (string)",
                "greentrack_pue (string)"):
        assert key in res.stdout.str()


def test_suite_under_budget_passes_and_prints_summary(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                      db_path: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    res = run(pytester, monkeypatch, "--energy-budget-kwh", "1", "--energy-budget-co2e-g", "1000",
              "--greentrack-top", "2", mock="constant:100")
    res.assert_outcomes(passed=3)
    assert res.ret == 0
    out = res.stdout.str()
    assert "greentrack energy" in out
    assert re.search(r"session '\w+' \(run [0-9a-f]{12}\): .* J .* backend mock", out)
    assert "3 tests measured" in out
    # the two hungriest tests, hungriest first
    lines = out.splitlines()
    i = lines.index("most energy-hungry tests (energy of the call):")
    assert "test_suite.py::test_sleepy" in lines[i + 1]
    assert "test_suite.py::test_within_budget" in lines[i + 2]
    assert "test_quick" not in lines[i + 3]
    assert "over its energy budget" not in out


def test_per_test_budget_fails_that_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_over="""
        import time
        import pytest

        @pytest.mark.energy_budget(joules=0.001)
        def test_joules():
            time.sleep(0.01)

        @pytest.mark.energy_budget(kwh=1e-12)
        def test_kwh():
            time.sleep(0.01)

        @pytest.mark.energy_budget(co2e_g=1e-12)
        def test_co2():
            time.sleep(0.01)

        @pytest.mark.energy_budget(joules=1e9)
        def test_fine():
            time.sleep(0.01)

        @pytest.mark.energy_budget(kwh=1e-12)
        class TestClassBudget:
            def test_in_class(self):
                time.sleep(0.01)
    """)
    res = run(pytester, monkeypatch, "--greentrack")
    res.assert_outcomes(passed=1, failed=4)
    out = res.stdout.str()
    assert re.search(r"^energy budget exceeded: [\d.]+ J > 0.001 J \(joules=0.001\)$", out, re.M)
    assert re.search(r"energy budget exceeded: [\d.e-]+ kWh > 1e-12 kWh \(kwh=1e-12\)", out)
    assert re.search(r"energy budget exceeded: [\d.e-]+ gCO2e > 1e-12 gCO2e \(co2e_g=1e-12\)", out)
    assert "FAILED test_over.py::TestClassBudget::test_in_class" in out
    assert "4 tests over their energy_budget marker" in out
    # measured at 1000 W for about 10 ms: about 10 J, never zero
    m = re.search(r"^energy budget exceeded: ([\d.]+) J > 0.001 J", out, re.M)
    assert 5 < float(m.group(1)) < 500


def test_session_budget_exits_non_zero(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                       db_path: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    res = run(pytester, monkeypatch, "--energy-budget-kwh", "1e-9")
    res.assert_outcomes(passed=3, errors=1)  # the exceeded budget is an error in pytest's final line
    assert res.ret == 1
    res.stdout.re_match_lines([r"greentrack: session over its energy budget: [\d.e-]+ kWh > 1e-09 kWh "
                               r"\(energy_budget_kwh\)"])
    run_row = runs_named(db_path, pytester.path.name)[0]
    assert run_row["budget"]["budget"] == "energy_budget_kwh" and run_row["budget"]["limit"] == 1e-9

    res = run(pytester, monkeypatch, "--energy-budget-co2e-g", "1e-9")
    assert res.ret == 1
    res.stdout.re_match_lines([r"greentrack: session over its energy budget: .* gCO2e > 1e-09 gCO2e"])


def test_run_is_stored_with_a_phase_per_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                             db_path: Path, cli) -> None:
    pytester.makepyfile(test_suite=SUITE)
    res = run(pytester, monkeypatch, "--greentrack", "--greentrack-name", "unit-suite")
    res.assert_outcomes(passed=3)
    store = Store(db_path, create=False)
    (row,) = store.list_runs(last=None, name="unit-suite")
    assert row["status"] == "finished" and row["tags"] == {"runner": "pytest"} and row["backend"] == "mock"
    assert row["energy_j"] > 0 and "--greentrack" in row["command"]
    run_full = store.get_run(row["id"])
    phases = {p["name"]: p for p in run_full["phases"]}
    assert set(phases) == {"test_suite.py::test_quick", "test_suite.py::test_sleepy",
                           "test_suite.py::test_within_budget"}
    assert all(p["energy_j"] > 0 for p in phases.values())  # the 0.1 ms test too: from the series
    assert phases["test_suite.py::test_sleepy"]["energy_j"] > phases["test_suite.py::test_quick"]["energy_j"]
    rep = cli("report", "--name", "unit-suite")
    assert rep.returncode == 0 and row["id"] in rep.stdout and "finished" in rep.stdout


def test_fixture_measures_short_test_from_the_power_series(pytester: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_fix="""
        import time

        def test_live(greentrack_energy):
            assert greentrack_energy.energy_j is not None
            t0 = time.time()
            while time.time() - t0 < 0.03:  # shorter than the counter's 0.1 s update period
                pass
            e, d = greentrack_energy.energy_j, greentrack_energy.duration_s
            # constant 1000 W: joules = 1000 x seconds
            assert abs(e / d - 1000) < 50, (e, d)
            assert greentrack_energy.energy_kwh == e / 3.6e6 or abs(greentrack_energy.energy_kwh - e / 3.6e6) < 1e-6
            assert greentrack_energy.co2e_g > 0
            assert greentrack_energy.session.backend == "mock"

        def test_tiny(greentrack_energy):
            pass
    """)
    res = run(pytester, monkeypatch, "--greentrack", "--greentrack-top", "5")
    res.assert_outcomes(passed=2)
    # the 0.1 ms test gets its share of 1000 W, not zero
    m = re.search(r"^\s+([\d.]+) (mJ|J)\s+\d+ms\s+test_fix.py::test_tiny$", res.stdout.str(), re.M)
    assert m and float(m.group(1)) > 0


def test_ini_options_in_pyproject(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makepyprojecttoml("""
        [tool.pytest.ini_options]
        energy_budget_co2e_g = "1e-9"
        greentrack_name = "from-ini"
        greentrack_top = "1"
    """)
    res = run(pytester, monkeypatch)
    assert res.ret == 1
    res.stdout.re_match_lines([r"greentrack: session over its energy budget: .* gCO2e > 1e-09 gCO2e "
                               r"\(energy_budget_co2e_g\)"])
    assert len(runs_named(db_path, "from-ini")) == 1
    assert res.stdout.str().count("ms  test_suite.py::") == 1  # top 1

    pytester.makepyprojecttoml("""
        [tool.pytest.ini_options]
        greentrack = true
        greentrack_name = "from-ini"
    """)
    res = run(pytester, monkeypatch)
    assert res.ret == 0 and "greentrack energy" in res.stdout.str()
    assert len(runs_named(db_path, "from-ini")) == 2


PUE_ERROR = "ERROR: greentrack: {} must be a finite number >= 1.0 (power usage effectiveness), got {}"


@pytest.mark.parametrize("args, ini, message", [
    (["--energy-budget-kwh", "-1"], None,
     "greentrack: --energy-budget-kwh must be a finite number >= 0 (kWh), got -1.0"),
    (["--energy-budget-co2e-g", "lots"], None, "argument --energy-budget-co2e-g: invalid float value: 'lots'"),
    ([], 'energy_budget_kwh = "abc"', "greentrack: bad value for ini option energy_budget_kwh: "),
    ([], 'greentrack_top = "many"', None),  # not enabled: the key is not read
    (["--greentrack"], 'greentrack_top = "many"', "greentrack: greentrack_top must be a whole number, got 'many'"),
    (["--greentrack", "--greentrack-pue", "0.99"], None, PUE_ERROR.format("--greentrack-pue", "'0.99'")),
    (["--energy-budget-kwh", "1", "--greentrack-pue", "1,5"], None, PUE_ERROR.format("--greentrack-pue", "'1,5'")),
    (["--greentrack", "--greentrack-pue", "inf"], None, PUE_ERROR.format("--greentrack-pue", "'inf'")),
    (["--greentrack"], 'greentrack_pue = "0.5"', PUE_ERROR.format("greentrack_pue", "'0.5'")),
    (["--greentrack"], 'greentrack_pue = "nan"', PUE_ERROR.format("greentrack_pue", "'nan'")),
    ([], 'greentrack_pue = "0.5"', None),  # not enabled: the key is not read
])
def test_bad_settings_are_one_line_usage_errors(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                args: list[str], ini: str | None, message: str | None) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    if ini:
        pytester.makepyprojecttoml(f"[tool.pytest.ini_options]\n{ini}\n")
    res = run(pytester, monkeypatch, *args)
    if message is None:
        assert res.ret == 0
        return
    assert res.ret == 4
    err = res.stderr.str()
    assert message in err and "Traceback" not in err
    if "pue" in message:  # the whole of what pytest says
        assert [ln for ln in err.splitlines() if ln.strip()] == [message], err


def test_a_bad_pue_in_greentracks_own_settings_is_a_usage_error(pytester: pytest.Pytester,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    monkeypatch.setenv("GREENTRACK_PUE", "0.5")
    res = run(pytester, monkeypatch, "--greentrack")
    assert res.ret == 4
    err = [ln for ln in res.stderr.str().splitlines() if ln.strip()]
    assert err == [PUE_ERROR.format("GREENTRACK_PUE", "'0.5'")]
    assert run(pytester, monkeypatch, "--greentrack", "--greentrack-pue", "1.2").ret == 0  # the option wins


def test_unknown_backend_is_a_usage_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    res = run(pytester, monkeypatch, "--greentrack", backend="mokc")
    assert res.ret == 4
    assert "ERROR: greentrack: unknown backend 'mokc'" in res.stderr.str()
    assert "Traceback" not in res.stderr.str()


def test_malformed_marker_fails_the_test_clearly(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_marks="""
        import pytest

        @pytest.mark.energy_budget(5)
        def test_positional():
            pass

        @pytest.mark.energy_budget(watts=5)
        def test_unknown_key():
            pass

        @pytest.mark.energy_budget(joules=-1)
        def test_negative():
            pass

        @pytest.mark.energy_budget()
        def test_empty():
            pass
    """)
    res = run(pytester, monkeypatch, "--greentrack")
    res.assert_outcomes(failed=4)
    res.stdout.fnmatch_lines([
        "energy_budget takes keyword arguments only (kwh=, co2e_g=, joules=), got (5,)",
        "energy_budget: unknown limit 'watts'; use kwh=, co2e_g= or joules=",
        "energy_budget: joules=-1 is not a finite number >= 0",
        "energy_budget needs at least one limit: kwh=, co2e_g= or joules=",
    ])


def test_regression_against_the_last_stored_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                db_path: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    res = run(pytester, monkeypatch, "--energy-budget-regression", "10", mock="constant:100")
    assert res.ret == 0
    res.stdout.fnmatch_lines(["greentrack: no earlier run of suite * to compare with; regression not checked"])
    first = runs_named(db_path, pytester.path.name)[0]["id"]

    res = run(pytester, monkeypatch, "--energy-budget-regression", "10", mock="constant:100")
    assert res.ret == 0, res.stdout.str()
    res.stdout.re_match_lines([rf"greentrack: the 3 tests in common with run {first} .* used [\d.]+ J against "
                               r"[\d.]+ J: [+-]\d+\.\d% \(limit \+10%\)"])
    second = runs_named(db_path, pytester.path.name)[0]["id"]

    # ten times the power: the same tests now cost ~10x
    res = run(pytester, monkeypatch, "--energy-budget-regression", "10", "-k", "not quick", mock="constant:1000")
    assert res.ret == 1
    res.stdout.re_match_lines([rf"greentrack: energy regression: the 2 tests in common with run {second} .* "
                               r"\+\d+\.\d% \(limit \+10%\); largest increase: test_suite.py::test_sleepy"])
    row = runs_named(db_path, pytester.path.name)[0]
    assert row["budget"]["budget"] == "energy_budget_regression" and row["budget"]["usage"] > 500


def test_nothing_measured_leaves_budgets_unchecked(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_suite=SUITE.replace("assert greentrack_energy.energy_j > 0", "assert True"))
    res = run(pytester, monkeypatch, "--energy-budget-kwh", "1e-12", backend="none")
    res.assert_outcomes(passed=3)
    assert res.ret == 0
    out = res.stdout.str()
    assert "nothing was measured: backend 'none': no power is measured" in out
    assert "1 energy_budget marker not checked: no power was measured" in out
    assert "greentrack: energy_budget_kwh not checked: no power was measured" in out


def test_collect_only_and_disabled_plugin_store_nothing(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                        db_path: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    res = run(pytester, monkeypatch, "--greentrack", "--collect-only")
    assert res.ret == 0 and "greentrack energy" not in res.stdout.str()
    res = run(pytester, monkeypatch, "-p", "no:greentrack", "--greentrack")
    assert res.ret == 4 and "unrecognized arguments: --greentrack" in res.stderr.str()
    assert not db_path.exists()


def test_xdist_workers_measure_and_controller_reports(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                      db_path: Path) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_par="""
        import os
        import time
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_work(i, greentrack_energy):
            time.sleep(0.02)
            assert os.environ.get("PYTEST_XDIST_WORKER")
            assert greentrack_energy.energy_j > 0

        @pytest.mark.energy_budget(joules=0.001)
        def test_over():
            time.sleep(0.02)
    """)
    res = run(pytester, monkeypatch, "-n", "2", "--greentrack", "--greentrack-name", "par")
    res.assert_outcomes(passed=4, failed=1)
    out = res.stdout.str()
    assert "test_over - Failed: energy budget exceeded:" in out
    assert "5 tests measured" in out
    assert "greentrack: pytest-xdist: the controller measures the session total" in out
    (row,) = runs_named(db_path, "par")
    phases = Store(db_path, create=False).get_run(row["id"])["phases"]
    assert len(phases) == 5 and all(p["energy_j"] > 0 for p in phases)


def test_p_no_greentrack_does_not_even_import_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_imp="""
        import sys

        def test_not_imported():
            assert not any(m == "greentrack" or m.startswith("greentrack.") for m in sys.modules)
    """)
    pytester.runpytest_subprocess("-p", "no:greentrack").assert_outcomes(passed=1)
    pytester.runpytest_subprocess().assert_outcomes(failed=1)  # installed: the entry point is loaded


def test_measuring_modules_are_not_assertion_rewritten(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                       db_path: Path) -> None:
    """pytest marks every package of a pytest11 distribution for rewriting (as installed from a wheel, whose
    RECORD lists greentrack/: reproduced by a dist-info folder here); greentrack takes its own mark back once
    enabled, so its measuring modules load through Python's own loader (faster), while the tests still get
    pytest's rewritten assertions (the failing assert below shows its introspection)."""
    dist = pytester.path / "greentrack_wheel_like-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greentrack-wheel-like\nVersion: 0.1\n")
    (dist / "RECORD").write_text("greentrack/__init__.py,,\ngreentrack/measure/tracker.py,,\n")
    (dist / "entry_points.txt").write_text("[pytest11]\ngreentrack_wheel_like = gt_wheel_like\n")
    pytester.makepyfile(gt_wheel_like="", conftest="""
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_configure(config):
            print("greentrack marked for rewriting:", "greentrack" in config.pluginmanager.rewrite_hook._must_rewrite)
    """, test_loader="""
        import sys
        from _pytest.assertion.rewrite import AssertionRewritingHook

        def test_loaders():
            for name in ("greentrack.measure.tracker", "greentrack.store.sqlite", "greentrack.pytest_plugin.energy"):
                assert not isinstance(sys.modules[name].__loader__, AssertionRewritingHook), name

        def test_rewritten():
            x = [1, 2]
            assert x == [1, 3]
    """)
    res = run(pytester, monkeypatch, "--greentrack", "-s", backend="cpu-model")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert "greentrack marked for rewriting: True" in out  # as pytest does for an installed wheel
    assert "At index 1 diff: 2 != 3" in out  # the test file itself is still rewritten
