"""Scheduling-dependent tests against ``--energy-baseline``: a test whose call ran much of its CPU on
other threads is listed as not compared until the baseline holds enough of its figures.

Real pytest subprocesses (pytester) on the CPU model, as on a CI runner with no GPU and no RAPL
(tests/test_pytest_ci.py), and :func:`greentrack.pytest_plugin.baseline.compare` /
:func:`~greentrack.pytest_plugin.baseline.save` on hand-built documents.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from greentrack.pytest_plugin import baseline as B
from greentrack.pytest_plugin.checks import thread_shares

SUITE = """
import os
import threading
import time


def busy(seconds):
    t = time.thread_time()  # this thread's own CPU time
    while time.thread_time() - t < seconds:
        pass


def test_stable():
    busy(0.4)


def test_single():
    busy(0.1 * float(os.environ.get("SINGLE_FACTOR", "1")))


def test_threaded():
    th = threading.Thread(target=busy, args=(0.03 * float(os.environ.get("THREAD_FACTOR", "1")),))
    th.start()
    th.join()
"""

SINGLE, THREADED = "test_suite.py::test_single", "test_suite.py::test_threaded"


@pytest.fixture
def ci_runner(ci_runner: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest's CI runner, without the factors a test of this file may have set."""
    for var in ("SINGLE_FACTOR", "THREAD_FACTOR"):
        monkeypatch.delenv(var, raising=False)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def comparison(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    (c,) = [c for c in doc["checks"] if c["check"] in ("energy_baseline", "energy_regression")]
    return dict(c["data"]["comparison"])


def entry_of(base: Path) -> dict[str, Any]:
    (entry,) = json.loads(base.read_text())["baselines"].values()
    return dict(entry)


# real sessions ---------------------------------------------------------------------------------------
def test_threaded_test_is_not_compared_on_one_save_and_compared_on_three(
        pytester: pytest.Pytester, ci_runner: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_suite=SUITE)
    base = pytester.path / "energy-baseline.json"
    run(pytester, "--energy-baseline-save", str(base)).assert_outcomes(passed=3)
    entry = entry_of(base)
    assert list(entry["threaded"]) == [THREADED] and entry["threaded"][THREADED] >= 0.9  # its work: another thread
    assert re.search(rf'\n    "{re.escape(THREADED)}": [01]\.\d+\n', base.read_text())  # one test per line

    # the single-threaded test does twice the work, the threaded one five times: only the first is judged
    # (the total, 2.1 J -> 3.0 J, stays within +60 %)
    monkeypatch.setenv("SINGLE_FACTOR", "2")
    monkeypatch.setenv("THREAD_FACTOR", "5")
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = run(pytester, "--energy-baseline", str(base), "--greentrack-json", "out.json")
    res.assert_outcomes(passed=3, errors=1)
    assert res.ret == 1
    out = res.stdout.str()
    assert f"ERROR {SINGLE} - energy regression: +" in out and f"ERROR {THREADED}" not in out
    assert "without the 1 not compared; limit +60% per test and in total" in out
    res.stdout.re_match_lines([
        r"  1 test\(s\) not compared: 20% or more of their CPU ran on other threads, whose CPU time varies with "
        r"scheduling \(measured up to 6x apart in identical runs\); compared once the baseline holds 3 saves "
        r"\(--energy-baseline-save on more runs\): test_suite.py::test_threaded \(\d+% on other threads, "
        r"1 save\(s\), ~[\d.]+ mJ -> ~[\d.]+ (mJ|J)\)"])
    cmp = comparison(pytester.path / "out.json")
    assert [r["nodeid"] for r in cmp["regressions"]] == [SINGLE]
    (nc,) = cmp["not_compared"]
    assert nc["nodeid"] == THREADED and nc["saves"] == 1 and nc["other_threads"] >= 0.9
    assert nc["saved_other_threads"] >= 0.9 and nc["after_j"] > 3 * nc["before_j"]  # 5x, not judged
    assert cmp["tests_compared"] == 3 and cmp["tests_in_total"] == 2  # in common, but not in the total
    assert cmp["total_after_j"] == pytest.approx(sum(t["energy_j"] for t in json.loads(
        (pytester.path / "out.json").read_text())["tests"] if t["nodeid"] != THREADED))
    md = summary.read_text()
    assert "**Energy checks failed**" in md and "  - 1 test(s) not compared: 20% or more of their CPU" in md

    # two more saves: three figures of the threaded test, which is now compared like any other
    monkeypatch.delenv("SINGLE_FACTOR")
    monkeypatch.delenv("THREAD_FACTOR")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    for _ in range(2):
        run(pytester, "--energy-baseline-save", str(base)).assert_outcomes(passed=3)
    assert entry_of(base)["saves"] == 3 and len(entry_of(base)["tests"][THREADED]) == 3
    monkeypatch.setenv("THREAD_FACTOR", "5")
    res = run(pytester, "--energy-baseline", str(base), "--greentrack-json", "out3.json")
    res.assert_outcomes(passed=3, errors=1)
    assert f"ERROR {THREADED} - energy regression: +" in res.stdout.str()
    cmp = comparison(pytester.path / "out3.json")
    assert [r["nodeid"] for r in cmp["regressions"]] == [THREADED] and cmp["not_compared"] == []
    assert "not compared: 20%" not in res.stdout.str()


def test_old_baseline_without_the_map_loads_and_this_runs_threads_count(
        pytester: pytest.Pytester, ci_runner: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written before ``threaded`` existed: loaded as it is; the threaded test is recognised from
    this run; a save adds the map."""
    pytester.makepyfile(test_suite=SUITE)
    base = pytester.path / "b.json"
    run(pytester, "--energy-baseline-save", str(base)).assert_outcomes(passed=3)
    doc = json.loads(base.read_text())
    for entry in doc["baselines"].values():
        del entry["threaded"]
    base.write_text(json.dumps(doc, indent=1, sort_keys=True))
    monkeypatch.setenv("THREAD_FACTOR", "5")
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = run(pytester, "--energy-baseline", str(base), "--greentrack-json", "out.json")
    res.assert_outcomes(passed=3)
    assert res.ret == 0  # listed, never failed
    assert "greentrack: no energy regression: 3 tests in common with baseline " in res.stdout.str()
    md = summary.read_text()  # listed under the check that held, too
    assert "**Energy checks failed**" not in md and "- no energy regression: 3 tests in common" in md
    assert "  - 1 test(s) not compared: 20% or more of their CPU ran on other threads" in md
    assert "test_suite.py::test_threaded (" in md
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    cmp = comparison(pytester.path / "out.json")
    (nc,) = cmp["not_compared"]
    assert nc["nodeid"] == THREADED and nc["other_threads"] >= 0.9 and nc["saved_other_threads"] is None
    monkeypatch.delenv("THREAD_FACTOR")
    run(pytester, "--energy-baseline-save", str(base)).assert_outcomes(passed=3)
    assert list(entry_of(base)["threaded"]) == [THREADED] and entry_of(base)["saves"] == 2


def test_share_in_the_json_artifact_through_xdist(pytester: pytest.Pytester, ci_runner: None) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE.replace("busy(0.4)", "busy(0.05)"))
    for args in ((), ("-n", "2")):  # in-process, and carried from the workers to the controller
        res = run(pytester, *args, "--greentrack", "--greentrack-json", "out.json")
        res.assert_outcomes(passed=3)
        tests = {t["nodeid"]: t for t in json.loads((pytester.path / "out.json").read_text())["tests"]}
        assert tests[THREADED]["other_threads"] >= 0.9, args
        assert tests[THREADED]["other_threads_cpu_s"] == pytest.approx(0.03, rel=0.5)
        assert tests[SINGLE]["other_threads"] < 0.2 and tests["test_suite.py::test_stable"]["other_threads"] < 0.2


HALF = """
import threading
import time


def busy(seconds):
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass


def test_half():  # about half of its CPU on a second thread: a share with more than two decimals
    th = threading.Thread(target=busy, args=(0.0371,))
    th.start()
    busy(0.0413)
    th.join()
"""


def test_share_and_seconds_are_rounded_in_the_artifact(pytester: pytest.Pytester, ci_runner: None) -> None:
    """The share to hundredths and the seconds to microseconds: the artifact stays readable, the share as
    precise as the 20 % threshold needs."""
    pytester.makepyfile(test_half=HALF)
    run(pytester, "--greentrack", "--greentrack-json", "out.json").assert_outcomes(passed=1)
    (t,) = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert 0.2 < t["other_threads"] < 0.8 and round(t["other_threads"], 2) == t["other_threads"], t
    assert t["other_threads_cpu_s"] > 0.03 and round(t["other_threads_cpu_s"], 6) == t["other_threads_cpu_s"], t


FROZEN_CLOCKS = """
import time

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)  # around greentrack's own wrapper
def pytest_runtest_call(item):
    real = time.process_time, time.thread_time
    time.process_time = time.thread_time = lambda: 1.0  # a call that used no CPU time at all
    try:
        return (yield)
    finally:
        time.process_time, time.thread_time = real
"""


def test_a_call_without_cpu_time_reads_as_on_no_other_thread(pytester: pytest.Pytester, ci_runner: None) -> None:
    """No CPU time in the call (the process's and the thread's clocks did not move): a share of 0, not a
    division by zero that would break the test, and not 1."""
    pytester.makeconftest(FROZEN_CLOCKS)
    pytester.makepyfile(test_idle="def test_idle():\n    pass\n")
    res = run(pytester, "--greentrack", "--greentrack-json", "out.json")
    res.assert_outcomes(passed=1)
    (t,) = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert t["other_threads"] == 0.0 and t["other_threads_cpu_s"] == 0.0, t


# compare and save on hand-built documents ----------------------------------------------------------
HW = {"energy_method": "model", "devices": ["CPU (modelled)"], "watts_per_thread": 4.0}


def doc(tests: dict[str, Any], threaded: dict[str, Any] | None = None, saves: int = 1) -> dict[str, Any]:
    entry: dict[str, Any] = {"hardware": HW, "saves": saves, "tests": tests}
    if threaded is not None:
        entry["threaded"] = threaded
    return {"schema": B.SCHEMA, "version": 1, "suite": "s", "baselines": {B.hardware_key(HW): entry}}


def compare(d: dict[str, Any], tests: dict[str, float], threads: dict[str, float] | None = None) -> B.Comparison:
    return B.compare(d, "b.json", HW, tests, 60.0, "model", threads)


STABLE = {"a": [10.0], "b": [10.0]}  # the bulk of the suite: the floor is 1 % of it


def test_a_test_not_compared_cannot_swing_the_total() -> None:
    # a threaded test five times its one saved figure: counted, the total would be +133 % (over 60 %)
    d = doc({**STABLE, "t": [10.0]}, threaded={"t": 0.5})
    cmp = compare(d, {"a": 10.0, "b": 11.0, "t": 50.0})
    assert [n.nodeid for n in cmp.not_compared] == ["t"] and cmp.regressions == []
    assert (cmp.total_before_j, cmp.total_after_j) == (20.0, 21.0) and not cmp.total_regressed
    assert cmp.floor_j == pytest.approx(0.3)  # 1 % of the suite's baseline, the test left out included
    assert cmp.as_dict()["tests_in_total"] == 2 and cmp.as_dict()["tests_compared"] == 3
    # with its three saves it is compared again, alone and in the total
    cmp = compare(doc({**STABLE, "t": [10.0, 10.0, 10.0]}, threaded={"t": 0.5}), {"a": 10.0, "b": 11.0, "t": 50.0})
    assert [r.nodeid for r in cmp.regressions] == ["t"] and cmp.total_regressed
    assert (cmp.total_before_j, cmp.total_after_j) == (30.0, 71.0)


def test_compare_threaded_in_the_baseline_or_in_this_run() -> None:
    d = doc({**STABLE, "t": [1.0], "s": [1.0]}, threaded={"t": 0.49})
    cmp = compare(d, {"a": 10.0, "b": 10.0, "t": 5.0, "s": 2.0})
    assert [r.nodeid for r in cmp.regressions] == ["s"]
    (nc,) = cmp.not_compared
    assert (nc.nodeid, nc.other_threads, nc.saved_other_threads, nc.saves, nc.before_j, nc.after_j) == \
        ("t", None, 0.49, 1, 1.0, 5.0)
    assert cmp.total_after_j == 22.0 and cmp.common == 4  # in common, left out of the total
    d = doc({**STABLE, "t": [1.0]})  # an old file: no map; threaded in this run only
    cmp = compare(d, {"a": 10.0, "b": 10.0, "t": 5.0}, threads={"t": 0.8, "a": 0.0})
    assert cmp.regressions == [] and [(n.nodeid, n.other_threads, n.saved_other_threads)
                                      for n in cmp.not_compared] == [("t", 0.8, None)]
    assert cmp.as_dict()["not_compared"][0]["reason"] == ("80% of its CPU ran on other threads; compared once the "
                                                          "baseline holds 3 saves")
    assert cmp.as_dict()["threaded_share"] == 0.2 and not cmp.failed


@pytest.mark.parametrize("share, saves, judged", [
    (0.19, 1, True),  # below the threshold: single-threaded as far as the rule goes
    (0.2, 1, False),
    (1.0, 2, False),
    (1.0, 3, True),  # three saves: its spread is known
    (1.0, 5, True),
])
def test_compare_threshold_and_saves(share: float, saves: int, judged: bool) -> None:
    d = doc({**STABLE, "t": [1.0] * saves}, threaded={"t": share}, saves=saves)
    cmp = compare(d, {"a": 10.0, "b": 10.0, "t": 5.0})
    assert [r.nodeid for r in cmp.regressions] == (["t"] if judged else [])
    assert [n.nodeid for n in cmp.not_compared] == ([] if judged else ["t"])
    cmp = compare(doc({**STABLE, "t": [1.0] * saves}, saves=saves), {"a": 10.0, "b": 10.0, "t": 5.0},
                  threads={"t": share})  # the same from this run's share
    assert [n.nodeid for n in cmp.not_compared] == ([] if judged else ["t"])


def test_a_scheduling_dependent_test_is_compared_with_its_highest_save() -> None:
    """With three saves far apart, a threaded test is judged against the highest (its spread), a
    single-threaded one against the median (one slow save does not hide a regression)."""
    saves = [1.0, 4.0, 1.2]  # median 1.2, highest 4.0
    d = doc({**STABLE, "t": saves, "s": saves}, threaded={"t": 0.6}, saves=3)
    cmp = compare(d, {"a": 10.0, "b": 10.0, "t": 6.0, "s": 6.0})
    assert [r.nodeid for r in cmp.regressions] == ["s"]  # 6.0 > 1.2 x 1.6; t: 6.0 < 4.0 x 1.6
    cmp = compare(d, {"a": 10.0, "b": 10.0, "t": 6.5, "s": 1.9})
    assert [r.nodeid for r in cmp.regressions] == ["t"]  # t: 6.5 > 6.4; s: 1.9 < 1.92
    (rg,) = cmp.regressions
    assert (rg.before_j, rg.highest_j) == (1.2, 4.0)  # its change is still told against the median


def test_not_compared_is_per_test_saves_and_sorted_by_energy() -> None:
    """The figures a test has, not the entry's count: a test added after two saves has one."""
    d = doc({**STABLE, "old": [1.0, 1.0, 1.0], "new": [1.0], "zbig": [2.0]}, saves=3)
    cmp = compare(d, {"a": 10.0, "b": 10.0, "old": 5.0, "new": 5.0, "zbig": 6.0},
                  threads={"old": 0.9, "new": 0.9, "zbig": 0.9})
    assert [r.nodeid for r in cmp.regressions] == ["old"]
    assert [n.nodeid for n in cmp.not_compared] == ["zbig", "new"]  # the largest first, not by name


def test_bad_threaded_values_are_ignored() -> None:
    d = doc({**STABLE, "t": [1.0]}, threaded={"t": "lots"})
    assert [r.nodeid for r in compare(d, {"a": 10.0, "b": 10.0, "t": 5.0}).regressions] == ["t"]
    d = doc({**STABLE, "t": [1.0]}, threaded=[0.5])  # type: ignore[arg-type]
    assert [r.nodeid for r in compare(d, {"a": 10.0, "b": 10.0, "t": 5.0}).regressions] == ["t"]


def test_save_keeps_the_highest_share_of_the_tests_still_there(tmp_path: Path) -> None:
    p = tmp_path / "b.json"
    B.save(p, "s", HW, {"a": 1.0, "t": 1.0, "u": 1.0}, "0", threads={"a": 0.1, "t": 0.5, "u": 0.3})
    assert entry_of(p)["threaded"] == {"t": 0.5, "u": 0.3}  # "a" is below the threshold
    B.save(p, "s", HW, {"a": 1.0, "t": 1.0}, "0", threads={"a": 0.0, "t": 0.25})  # "u" removed
    assert entry_of(p)["threaded"] == {"t": 0.5}
    B.save(p, "s", HW, {"a": 1.0, "t": 1.0}, "0")  # no shares given (a caller of the old signature)
    assert entry_of(p)["threaded"] == {"t": 0.5} and entry_of(p)["saves"] == 3
    text = p.read_text()
    assert '\n    "t": 0.5\n' in text  # one test per line, as the figures are
    assert B.load(p) is not None


def test_an_old_file_without_the_map_loads_and_saves(tmp_path: Path) -> None:
    p = tmp_path / "b.json"
    p.write_text(json.dumps(doc({"a": [1.0, 1.1], "t": 2.0}, saves=2)))  # a bare number: older still
    assert B.load(p) is not None
    B.save(p, "s", HW, {"a": 1.0, "t": 2.0}, "0", threads={"t": 0.7})
    entry = entry_of(p)
    assert entry["threaded"] == {"t": 0.7} and entry["tests"] == {"a": [1.0, 1.1, 1.0], "t": [2.0, 2.0]}


def test_threaded_share_ignores_a_sampler_wake_up_in_a_short_call() -> None:
    assert B.threaded_share({"other_threads": 0.33, "other_threads_cpu_s": 0.0004}) == 0.0
    assert B.threaded_share({"other_threads": 0.33, "other_threads_cpu_s": 0.001}) == 0.33
    assert B.threaded_share({"other_threads": 0.5}) == 0.5  # no seconds recorded: the share alone
    assert B.threaded_share({}) == 0.0 and B.threaded_share({"other_threads": None}) == 0.0
    plugin = SimpleNamespace(tests=[
        {"nodeid": "t", "energy_j": 1.0, "outcome": "passed", "other_threads": 0.4, "other_threads_cpu_s": 0.01},
        {"nodeid": "t", "energy_j": 1.0, "outcome": "passed", "other_threads": 0.6, "other_threads_cpu_s": 0.01},
        {"nodeid": "f", "energy_j": 1.0, "outcome": "failed", "other_threads": 0.9, "other_threads_cpu_s": 0.01},
        {"nodeid": "w", "energy_j": 1.0, "outcome": "passed", "other_threads": 0.3, "other_threads_cpu_s": 1e-4},
        {"nodeid": "n", "energy_j": None, "outcome": "passed", "other_threads": 0.9, "other_threads_cpu_s": 0.01},
        {"nodeid": "old", "energy_j": 1.0, "outcome": "passed"},
    ])
    assert thread_shares(plugin) == {"t": 0.6, "f": 0.9, "w": 0.0}  # a test run twice: the higher
    assert thread_shares(plugin, passed_only=True) == {"t": 0.6, "w": 0.0}


def test_the_samplers_own_cpu_is_not_a_tests_threads(pytester: pytest.Pytester,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that sleeps while greentrack's sampler polls every millisecond: the only other thread
    working is the sampler, whose CPU time is left out (a fresh database: its first write too); the
    next test's own second thread is counted, and only it (kills the sampler's CPU at the call's start
    added instead of subtracted)."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "mock")
    monkeypatch.setenv("GREENTRACK_SAMPLE_INTERVAL", "0.001")
    pytester.makepyfile(test_sleepy="import time\n\n\ndef test_sleepy():\n    time.sleep(0.3)\n")
    pytester.makepyfile(test_z_half=HALF)  # after it: the sampler has used CPU by then, all of it left out
    res = run(pytester, "--greentrack", "--greentrack-json", "out.json")
    res.assert_outcomes(passed=2)
    t, half = json.loads((pytester.path / "out.json").read_text())["tests"]
    assert t["other_threads_cpu_s"] < B.THREADED_MIN_CPU_S and B.threaded_share(t) == 0.0
    # the second thread's 37 ms, not less for the sampler's CPU counted twice, nor more for it counted once
    assert half["other_threads_cpu_s"] == pytest.approx(0.0371, abs=0.012), half


def test_sampler_cpu_time_reader() -> None:
    from greentrack.measure.sampler import Sampler

    s = Sampler([], 60.0, lambda *a: None)
    assert s.cpu_time_reader() is None  # not started
    s.start()
    try:
        read = s.cpu_time_reader()
        if read is None:
            pytest.skip("this platform cannot read another thread's CPU clock")
        assert 0.0 <= read() <= read() < 10.0
    finally:
        s.stop(sync=False)
