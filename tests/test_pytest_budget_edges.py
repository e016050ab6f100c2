"""The pytest plugin's budget code at its edges: limits of None and infinity, a test that raises, a sensor or a
store that fails, budgets that cannot be checked. Real pytest subprocesses (pytester), the mock GPU at a
constant power, the TEST-400 grid of tests/test_budgets_at_limit.py.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import artifact_tests, read_artifact
from test_budgets_at_limit import FIXED_GRID, newest_run, pytest_run

from greentrack.store.sqlite import Store


def test_marker_limits_none_inf_and_a_failing_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills: a ``None`` limit ending the marker's parsing (``break``), an infinite limit accepted
    (``<= inf``), a failing test's energy not recorded (``_end`` skipped when the test raises), finished
    measurements kept for the rest of the session (a malformed marker's too), and the fixture reading before
    its call began."""
    pytester.makepyfile(test_edges="""
        import time
        import pytest

        @pytest.fixture
        def early(greentrack_energy):
            assert greentrack_energy.enabled and greentrack_energy.energy_j is None  # its call has not begun
            assert greentrack_energy.energy_kwh is None and greentrack_energy.co2e_g is None
            return greentrack_energy

        @pytest.mark.energy_budget(kwh=None, joules=360)
        def test_none_then_joules(early):
            time.sleep(0.2)

        @pytest.mark.energy_budget(joules=float("inf"))
        def test_infinite(greentrack_energy):  # the fixture's measurement is dropped with the malformed marker
            pass

        def test_raises():
            time.sleep(0.05)
            raise RuntimeError("the test's own failure")

        def test_nothing_left_over(request):
            plugin = request.config.pluginmanager.get_plugin("greentrack-energy")
            assert set(plugin._measurements) <= {request.node.nodeid}  # the other tests' were dropped
    """)
    res = pytest_run(pytester, monkeypatch, "--greentrack", "--greentrack-json=gt.json", watts=3600)
    res.assert_outcomes(passed=1, failed=3)
    out = res.stdout.str()
    assert re.search(r"energy budget exceeded: [\d.]+ J > 360 J \(joules=360\)", out), out
    assert "energy_budget: joules=inf is not a finite number >= 0" in out
    tests = artifact_tests(pytester.path / "gt.json")
    # the malformed marker fails its test before the call: nothing measured for it
    assert set(tests) == {"test_none_then_joules", "test_raises", "test_nothing_left_over"}
    assert tests["test_none_then_joules"]["budget"] == {"joules": 360.0}
    assert tests["test_none_then_joules"]["over_budget"] is True
    raised = tests["test_raises"]
    assert raised["outcome"] == "failed"
    assert raised["energy_j"] == pytest.approx(3600 * raised["duration_s"], rel=1e-6)
    assert raised["energy_j"] >= 3600 * 0.05


FAULTS = """
import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    plugin = session.config.pluginmanager.get_plugin("greentrack-energy")

    def broken(*args, **kwargs):
        raise RuntimeError("{what} failed")

    setattr(plugin.gsession, "{attr}", broken)
"""


@pytest.mark.parametrize("attr, what, message", [
    ("energy_between", "sensor", "greentrack: cannot read the energy of test_f.py::test_one: sensor failed"),
    ("stop", "store", "greentrack: cannot finish the measurement: store failed"),
])
def test_a_failing_measurement_is_said_once_and_never_fails_the_build(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, attr: str, what: str, message: str) -> None:
    """Kills the failure message deleted and an unfinished measurement counted as a budget failure."""
    pytester.makeconftest(FIXED_GRID + FAULTS.replace("{attr}", attr).replace("{what}", what))
    pytester.makepyfile(test_f="""
        import pytest

        @pytest.mark.energy_budget(joules=1e9)
        def test_one():
            pass

        def test_two():
            pass
    """)
    res = pytest_run(pytester, monkeypatch, "--energy-budget-kwh", "1", watts=100)
    res.assert_outcomes(passed=2)
    assert res.ret == 0
    assert message in res.stderr.str()


def test_unchecked_budgets_are_each_said_and_only_an_exceeded_one_is_red(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills ``break`` after the first unchecked budget (the second is not said) and the failure flag of the
    summary lines swapped (the exceeded budget in red, the unchecked ones not)."""
    pytester.makepyfile(test_s="def test_one():\n    pass\n")
    monkeypatch.setenv("GREENTRACK_BACKEND", "none")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--color=yes", "--energy-budget-kwh", "1",
                                        "--energy-budget-co2e-g", "1")
    out = res.stdout.str()
    for key in ("energy_budget_kwh", "energy_budget_co2e_g"):
        line = next(ln for ln in out.splitlines() if f"{key} not checked: no power was measured" in ln)
        assert "\x1b[31m" not in line, line
    res = pytest_run(pytester, monkeypatch, "--color=yes", "--energy-budget-kwh", "1e-12", watts=1000)
    line = next(ln for ln in res.stdout.str().splitlines() if "session over its energy budget" in ln)
    assert "\x1b[31m" in line and res.ret == 1


# ---- the regression check on stored runs (check_regression, called directly) --------------------------

def _store_run(store: Any, rid: str, started: float, powers: list[float], phases: list[tuple[str, float, float]],
               status: str = "finished") -> None:
    """A pytest run of suite 'suite' as the plugin stores it: a 10 Hz series from started+0.1 s, one phase per test."""
    from greentrack.store.records import PhaseRow, RunEnd, RunRow, SeriesChunk

    store.begin_run(RunRow(id=rid, name="suite", started_at=started, backend="mock", tags={"runner": "pytest"}), [])
    times = [started + 0.1 * (i + 1) for i in range(len(powers))]
    store.progress(rid, None, [], [SeriesChunk.encode("gpu0", 0, times, powers, started)])
    store.finish_run(rid, RunEnd(status=status, ended_at=started + 10.0), [], [
        PhaseRow(seq=i, name=n, started_at=a, ended_at=b, energy_j=None, steps=0)
        for i, (n, a, b) in enumerate(phases)])


def _check(store: Any, new_w: Any, phases: list[tuple[str, float, float]], pct: float = 10.0) -> tuple[str, Any]:
    """check_regression for a new run whose devices drew *new_w* watts (or ``new_w(t0)`` W for the test at t0)."""
    from greentrack.pytest_plugin.report import check_regression

    watts = new_w if callable(new_w) else (lambda t0: new_w)
    gs = SimpleNamespace(store=store, name="suite", id="new", backend="mock",
                         energy_between=lambda a, b: (b - a) * watts(a))
    result = SimpleNamespace(energy_j=1.0, phases=[SimpleNamespace(name=n, started_at=a, ended_at=b)
                                                   for n, a, b in phases])
    return check_regression(gs, result, pct)


def test_regression_reads_the_stored_series_with_its_edge_powers_held(db_path: Path) -> None:
    """Kills the stored series' first power taken from its second point, its last from another point, and a
    test's phases not added up when the same name appears twice."""
    from greentrack.store.sqlite import Store

    store = Store(db_path)
    t = 1_790_000_000.0
    # samples from t+0.1 to t+3.0: 50 W, then 100 W to t+0.5, then 300 W, and 600 W in the last interval
    _store_run(store, "old", t, [50.0] + [100.0] * 4 + [300.0] * 24 + [600.0],
               [("a", t, t + 0.1), ("b", t + 3.0, t + 3.5), ("b", t + 1.0, t + 2.0)])
    # old: a = 0.1 s before the first sample, at its 50 W: 5 J; b = 0.5 s after the last, at its 600 W, plus
    # 1 s at 300 W: 600 J; together 605 J. New, at 500 W: a = 50 J, b = 750 J: 800 J, +32.2 %
    line, exceeded = _check(store, 500.0, [("a", t + 20, t + 20.1), ("b", t + 21, t + 22), ("b", t + 23, t + 23.5)])
    assert "used 800.0 J against 605.0 J: +32.2% (limit +10%)" in line, line
    assert exceeded["usage"] == pytest.approx(800 / 605 * 100 - 100) and exceeded["against"] == "old"


def test_regression_against_a_run_that_used_nothing_is_not_checked(db_path: Path) -> None:
    """Kills ``a < 0`` / ``a <= 1`` for ``a <= 0``: a previous run at 0 J gives no percentage; at 0.5 J, one."""
    from greentrack.store.sqlite import Store

    store = Store(db_path)
    t = 1_790_000_000.0
    _store_run(store, "idle", t, [0.0] * 30, [("a", t + 1, t + 2)])
    line, exceeded = _check(store, 500.0, [("a", t + 20, t + 21)])
    assert line == "the tests in common with run idle used no energy then; regression not checked"
    assert exceeded is None
    _store_run(store, "tiny", t + 50, [1.0] * 30, [("a", t + 51, t + 51.5)])  # half a joule is energy
    line, exceeded = _check(store, 1.0, [("a", t + 60, t + 61)])
    assert "used 1.0 J against 0.5 J: +100.0% (limit +10%)" in line and exceeded["against"] == "tiny"


def test_regression_looks_back_fifty_runs_of_the_suite(db_path: Path) -> None:
    """Kills a look-back other than 50: the last finished run is found among the 50 newest, not beyond."""
    from greentrack.store.sqlite import Store

    store = Store(db_path)
    t = 1_790_000_000.0
    _store_run(store, "finished-long-ago", t, [100.0] * 30, [("a", t + 1, t + 2)])
    for i in range(49):
        _store_run(store, f"broken{i:02d}", t + 100 + i, [100.0] * 3, [("a", t + 101 + i, t + 101.2 + i)],
                   status="interrupted")
    line, _ = _check(store, 100.0, [("a", t + 500, t + 501)])
    assert "the 1 test in common with run finished-long-ago (" in line  # the 50th newest
    _store_run(store, "broken49", t + 149, [100.0] * 3, [("a", t + 150, t + 150.2)], status="interrupted")
    line, _ = _check(store, 100.0, [("a", t + 500, t + 501)])
    assert line == "no earlier run of suite 'suite' to compare with; regression not checked"


def test_regression_exactly_at_the_limit_holds_and_names_the_largest_increase(db_path: Path) -> None:
    """Kills ``change >= pct`` (+25 % against a 25 % limit holds) and the largest increase picked by the sum
    of old and new energy instead of their difference."""
    from greentrack.store.sqlite import Store

    store = Store(db_path)
    t = 1_790_000_000.0
    _store_run(store, "old", t, [100.0] * 100, [("big", t + 1, t + 9), ("small", t + 0.1, t + 1)])  # 800 J, 90 J
    new = {t + 20: 100.0, t + 30: 450.0}  # big: 800 J (+0), small: 405 J (+315 J): 1205 J against 890 J
    line, exceeded = _check(store, lambda t0: new[t0], [("big", t + 20, t + 28), ("small", t + 30, t + 30.9)],
                            pct=10.0)
    assert line.endswith("largest increase: small (90.0 J -> 405.0 J)"), line
    _store_run(store, "older", t - 100, [100.0] * 50, [("a", t - 99.5, t - 95.5)])  # 400 J
    store.conn.execute("DELETE FROM runs WHERE id = 'old'")
    line, exceeded = _check(store, 125.0, [("a", t + 40, t + 44)], pct=25.0)  # 500 J: +25 % exactly
    assert "used 500.0 J against 400.0 J: +25.0% (limit +25%)" in line and exceeded is None


# a store that fails for real: once the session's run exists, SQLite itself refuses to set its budget
# column (a trigger), so Store.update_run raises from the database as on a full or read-only disk
REFUSE_BUDGET = """
import os
import sqlite3

import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    con = sqlite3.connect(os.environ["GREENTRACK_DB"])
    con.execute("CREATE TRIGGER refuse_budget BEFORE UPDATE OF budget ON runs WHEN NEW.budget IS NOT NULL "
                "BEGIN SELECT RAISE(ABORT, 'budget refused by the test'); END")
    con.commit()
    con.close()
"""


def test_an_exceeded_budget_that_cannot_be_recorded_is_said_once_on_stderr_and_still_fails_the_build(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    """The store refuses the budget outcome: one ``greentrack: cannot record ...`` line on stderr (as the
    plugin's other failures), none on stdout, and exit 1 all the same; the rest of the run is stored.
    Kills the message deleted."""
    pytester.makeconftest(FIXED_GRID + REFUSE_BUDGET)
    pytester.makepyfile(test_f="def test_one():\n    pass\n")
    res = pytest_run(pytester, monkeypatch, "--energy-budget-kwh", "1e-12", watts=1000)
    assert res.ret == 1
    out, err = res.stdout.str(), res.stderr.str()
    said = re.findall(r"^greentrack: cannot record the budget outcome in run ([0-9a-f]{12}): (.*)$", err, re.M)
    assert len(said) == 1, err
    (run_id, why), = said
    assert "budget refused by the test" in why, why
    assert "cannot record" not in out, out
    assert "session over its energy budget" in out
    run = newest_run(db_path)
    assert run["id"] == run_id and run["status"] == "finished" and run["budget"] is None


CPU_MODEL_EDGE = """
import json
import os
import time

import pytest


@pytest.fixture
def idle():
    time.sleep(1.2)  # no CPU: the model's own 1 s poll falls in here, somewhere


def test_busy_after_idle(idle):
    c0 = time.process_time()
    while time.process_time() - c0 < 0.3:
        pass
    with open("cpu.json", "w") as fh:
        json.dump({"cpu_s": time.process_time() - c0}, fh)
"""


def test_a_modelled_test_starts_at_a_sample_of_the_cpu_model(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """The CPU model derives power at each read (one read a second in the background): a test's call must
    start with a read, or the energy of its busy call is spread back over the idle fixture before it
    (kills ``gs.poll_edges()`` deleted). Modelled: CPU seconds x 4 W per thread."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "auto")
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(tmp_path / "no-powercap"))
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.nvml")
    monkeypatch.setenv("GREENTRACK_CPU_WATTS_PER_THREAD", "4")
    pytester.makepyfile(test_model=CPU_MODEL_EDGE)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--greentrack", "--greentrack-json=gt.json")
    res.assert_outcomes(passed=1)
    doc = read_artifact(pytester.path / "gt.json")
    assert doc["energy_method"] == "model"
    (t,) = artifact_tests(pytester.path / "gt.json").values()
    cpu_s = json.loads((pytester.path / "cpu.json").read_text())["cpu_s"]
    # the call's CPU is the busy loop plus a few ms of pytest around it
    assert t["energy_j"] == pytest.approx(4.0 * cpu_s, rel=0.1), (t, cpu_s)


def busy_suite(*ms: int) -> str:
    """A test module: one test per figure, each busy for that many ms of the process's CPU time."""
    return ("import time\nimport pytest\n\n\n"
            f"@pytest.mark.parametrize('ms', {list(ms)!r})\n"
            "def test_busy(ms):\n"
            "    t = time.process_time()\n"
            "    while time.process_time() - t < ms / 1000:\n"
            "        pass\n")


def test_modelled_tests_are_read_at_their_edges_and_stored_as_reported(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Where the CPU model is the one source, each test's call is dated by two reads of the model
    (Session.edge), not by polling and integrating the series (energy_between is never called: the
    cheaper path is the one taken); the stored phases give the same figures as the report."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "auto")
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(tmp_path / "no-powercap"))
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.nvml")
    monkeypatch.setenv("GREENTRACK_CPU_WATTS_PER_THREAD", "4")
    pytester.makeconftest("""
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_sessionstart(session):
            gs = session.config.pluginmanager.get_plugin("greentrack-energy").gsession

            def counted(*args, **kwargs):
                raise AssertionError("energy_between called")

            gs.energy_between = counted
    """)
    pytester.makepyfile(test_busy=busy_suite(5, 10, 20, 40))
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--greentrack", "--greentrack-json=gt.json")
    res.assert_outcomes(passed=4)
    assert "energy_between" not in res.stdout.str() + res.stderr.str()
    reported = {k: v["energy_j"] for k, v in artifact_tests(pytester.path / "gt.json").items()}
    assert len(reported) == 4
    for name, e in reported.items():
        ms = int(name.split("[")[1].rstrip("]"))
        assert e == pytest.approx(4.0 * ms / 1000, rel=0.3), (name, e)
    run = newest_run(Path(os.environ["GREENTRACK_DB"]))
    phases = {p["name"].split("::")[-1]: p["energy_j"] for p in Store(Path(os.environ["GREENTRACK_DB"]),
                                                                         create=False).get_run(run["id"])["phases"]}
    for name, e in reported.items():
        assert phases[name] == pytest.approx(e, abs=2e-4), (name, phases, reported)


def test_each_test_keeps_its_edges_figure_while_the_series_stays_at_ten_points_a_second(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CPU model on 300 short tests: each stored phase holds exactly the figure the report gives (read
    at the call's edges, not attributed from the series); the stored power series keeps at most one
    reading per 0.1 s (EDGE_SERIES_S) from the edges, not two per test, and still adds up to the run's
    total. The fixture's live figure is an edge reading too: after a test that only sleeps, a test's live
    figure at its end is its own CPU time's (the series, whose last reading is from before that sleep,
    would spread the test's CPU time over the sleep too, and read about half of it)."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "cpu-model")
    monkeypatch.setenv("GREENTRACK_CPU_WATTS_PER_THREAD", "4")
    pytester.makepyfile(test_many="""
        import json, time
        import pytest

        @pytest.mark.parametrize("i", range(300))
        def test_short(i):
            assert i >= 0

        def test_sleeps():  # its end is read 0.15 s after its start: that reading joins the series
            time.sleep(0.15)

        def test_gap():  # its edges, and test_live's first, are within 0.1 s of it: none joins the series
            time.sleep(0.05)

        def test_live(greentrack_energy):
            t = time.process_time()
            while time.process_time() - t < 0.05:
                pass
            with open("live.json", "w") as fh:
                json.dump(greentrack_energy.energy_j, fh)
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--greentrack", "--greentrack-json=gt.json")
    res.assert_outcomes(passed=303)
    reported = {k: v["energy_j"] for k, v in artifact_tests(pytester.path / "gt.json").items()}
    db = Path(os.environ["GREENTRACK_DB"])
    run = Store(db, create=False).get_run(newest_run(db)["id"])
    phases = {p["name"].split("::")[-1]: p["energy_j"] for p in run["phases"]}
    assert len(phases) == len(reported) == 303
    for name, e in reported.items():
        assert phases[name] == e, name  # the edges' figure itself
    live = json.loads((pytester.path / "live.json").read_text())
    final = reported["test_live"]
    assert 4.0 * 0.05 * 0.9 < live <= final < live + 4.0 * 0.01, (live, final)
    (device,) = run["devices"]
    span = run["ended_at"] - run["started_at"]
    # the samples the series was built from: the edges' readings thinned; the start's and the stop's kept
    assert 2 <= device["n_samples"] <= span / 0.1 + 3, (device["n_samples"], span)
    (t, p), = Store(db, create=False).read_series(run["id"]).values()
    # rectangles: each stored point is the mean power since the previous one (the first: since the start)
    integral = p[0] * (t[0] - run["started_at"]) + sum(pw * (b - a) for a, b, pw in zip(t, t[1:], p[1:]))
    assert integral == pytest.approx(run["energy_j"], rel=0.02, abs=1e-3)


def test_a_failing_read_at_a_tests_end_falls_back_to_the_series_said_once(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CPU model's read at a call's end fails (every second read): the test's energy comes from the
    power series instead (poll and energy_between), the failure is one line for the whole run, and every
    test passes with its figure (kills the fallback taken only when both edges failed)."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "cpu-model")
    monkeypatch.setenv("GREENTRACK_CPU_WATTS_PER_THREAD", "4")
    pytester.makeconftest("""
        from greentrack.measure.sources.cpu_model import CPUModelSource

        real = CPUModelSource.edge_reader

        def flaky_reader(self, device):  # the function the plugin reads each edge through
            read, calls = real(self, device), [0]

            def flaky():
                calls[0] += 1
                if calls[0] % 2 == 0:
                    raise OSError("no clock")
                return read()

            return flaky

        CPUModelSource.edge_reader = flaky_reader
    """)
    pytester.makepyfile(test_busy=busy_suite(20, 40, 60))
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--greentrack", "--greentrack-json=gt.json")
    res.assert_outcomes(passed=3)
    assert res.stderr.str().count("OSError: no clock") == 1, res.stderr.str()
    for name, t in artifact_tests(pytester.path / "gt.json").items():
        ms = int(name.split("[")[1].rstrip("]"))
        assert t["energy_j"] == pytest.approx(4.0 * ms / 1000, rel=0.3), (name, t)


def test_a_measured_source_read_at_the_edges_starts_a_tests_window_at_a_sample(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """RAPL (a fake powercap tree) is polled as each call starts, not read by marks: the energy its
    fixture used just before is not spread into the call (kills ``gs.poll_edges()`` deleted on that path).
    The sampler thread polls every 5 s here, so no background read falls in between."""
    from test_rapl import make_tree

    root = make_tree(tmp_path / "powercap", dram=False, core=False)
    monkeypatch.setenv("GREENTRACK_BACKEND", "auto")
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(root))
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.nvml")
    monkeypatch.setenv("GREENTRACK_SAMPLE_INTERVAL", "5")
    pytester.makepyfile(test_rapl_edges=f"""
        import time
        import pytest

        COUNTER = {str(root / "intel-rapl:0" / "energy_uj")!r}


        def bump(joules):
            with open(COUNTER) as fh:
                uj = int(fh.read())
            with open(COUNTER, "w") as fh:
                fh.write(f"{{uj + int(joules * 1e6)}}\\n")


        @pytest.fixture
        def heavy_setup():
            time.sleep(0.05)
            bump(50.0)  # 50 J in the fixture, before the call
            time.sleep(0.05)


        def test_light(heavy_setup):
            bump(1.0)  # 1 J in the call
            time.sleep(0.05)
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--greentrack", "--greentrack-json=gt.json")
    res.assert_outcomes(passed=1)
    (t,) = artifact_tests(pytester.path / "gt.json").values()
    assert t["energy_j"] == pytest.approx(1.0, rel=0.05), t


def test_the_plugin_lets_go_of_the_run_once_pytest_is_done(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """At unconfigure the database connection is closed (no -wal file left beside the database while the
    interpreter still runs) and the run's objects are released, so pytest's last garbage collections do
    not walk them again."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "cpu-model")
    pytester.makeconftest("""
        import json, os
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):
            plugin = config.pluginmanager.get_plugin("greentrack-energy")
            db = os.environ["GREENTRACK_DB"]
            with open("released.json", "w") as fh:
                json.dump({"session": plugin.gsession is None, "tests": plugin.tests,
                           "wal": os.path.exists(db + "-wal")}, fh)
    """)
    pytester.makepyfile(test_two="def test_a():\n    pass\n\n\ndef test_b():\n    pass\n")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--greentrack")
    res.assert_outcomes(passed=2)
    assert json.loads((pytester.path / "released.json").read_text()) == {"session": True, "tests": [], "wal": False}
    assert newest_run(Path(os.environ["GREENTRACK_DB"]))["status"] == "finished"


def test_strict_fails_an_unchecked_marker_with_one_line_and_no_traceback(pytester: pytest.Pytester,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing measured under --energy-budget-strict: the marked test fails with the plugin's one line and no
    traceback into greentrack (kills the failure deleted and ``pytrace=True``); the unmarked one passes."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "none")
    pytester.makepyfile(test_none="""
        import pytest

        @pytest.mark.energy_budget(joules=1)
        def test_budgeted():
            pass

        def test_other():
            pass
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--energy-budget-strict", "--greentrack-json=gt.json")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    section = out[out.index("_ test_budgeted _"):out.index("greentrack energy")]
    assert "energy budget not checked: no power was measured or modelled (--energy-budget-strict)" in section
    assert "pytest_plugin" not in section and "pytest.fail(" not in section, section
    tests = artifact_tests(pytester.path / "gt.json")
    assert tests["test_budgeted"]["budget_checked"] is False and tests["test_budgeted"]["energy_j"] is None
    assert tests["test_budgeted"]["outcome"] == "failed" and tests["test_other"]["outcome"] == "passed"


def test_the_closest_budget_marker_is_found_as_pytest_finds_it(pytester: pytest.Pytester) -> None:
    """``closest_marker`` (the plugin's walk over each node's own markers) gives what pytest's
    ``get_closest_marker`` gives, for markers on the function, its parametrization, its class, its module
    (``pytestmark``), markers added by a fixture during the run, and none; and the nearest one wins."""
    pytester.makeconftest("""
        import pytest
        from greentrack.pytest_plugin import closest_marker

        SEEN = []

        @pytest.fixture
        def tagged(request):
            request.node.add_marker(pytest.mark.energy_budget(joules=7))

        @pytest.fixture
        def tagged_parent(request):
            request.node.parent.add_marker(pytest.mark.energy_budget(joules=8))

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(item):
            for name in ("energy_budget", "other", "parametrize"):
                mine, theirs = closest_marker(item, name), item.get_closest_marker(name)
                assert mine is theirs, (item.nodeid, name, mine, theirs)
            mark = closest_marker(item, "energy_budget")
            SEEN.append((item.name, mark.kwargs.get("joules") if mark else None))
            return (yield)

        def pytest_sessionfinish(session):
            print("SEEN", sorted(SEEN))
    """)
    pytester.makepyfile(test_marks="""
        import pytest

        pytestmark = pytest.mark.energy_budget(joules=1)

        def test_module_level():
            pass

        @pytest.mark.energy_budget(joules=2)
        def test_own_marker_wins():
            pass

        @pytest.mark.parametrize("x", [pytest.param(1, marks=pytest.mark.energy_budget(joules=3)), 2])
        def test_param(x):
            pass

        @pytest.mark.energy_budget(joules=4)
        class TestClass:
            def test_class_level(self):
                pass

            @pytest.mark.other
            def test_other_marker_too(self):
                pass

        def test_added_by_a_fixture(tagged):
            pass

        class TestParent:
            def test_added_to_the_parent(self, tagged_parent):
                pass
    """)
    pytester.makepyfile(test_plain="""
        def test_no_marker():
            pass
    """)
    res = pytester.runpytest_subprocess("-s", "-p", "no:greentrack")
    res.assert_outcomes(passed=9)
    res.stdout.fnmatch_lines(["*SEEN [[]('test_added_by_a_fixture', 7), ('test_added_to_the_parent', 8), "
                              "('test_class_level', 4), ('test_module_level', 1), ('test_no_marker', None), "
                              "('test_other_marker_too', 4), ('test_own_marker_wins', 2), ('test_param[[]1]', 3), "
                              "('test_param[[]2]', 1)]*"])
