"""The pytest plugin's session-level checks (``greentrack/pytest_plugin/checks.py``) at their edges.

:func:`run_checks`, :func:`_record` and :func:`call_energies` are called directly on a stand-in for the
measuring plugin (its options, its result, its per-test records), so each outcome is exact and fast;
the last-run regression check runs in real pytest sessions (pytester) on the mock GPU. The session
budgets at 0.5x and 2x their limits are in tests/test_budgets_at_limit.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from greentrack.pytest_plugin.checks import Check, _record, call_energies, run_checks


class Recorder:
    """A store that keeps what ``update_run`` was asked to write."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        self.calls.append((run_id, fields))


def plugin(tests: list[dict[str, Any]] | None = None, result: Any = None, store: Any = None,
           **opts: Any) -> Any:
    """What the checks read of the measuring plugin."""
    return SimpleNamespace(opts=opts, result=result, energy_method="measured", tests=list(tests or []),
                           gsession=SimpleNamespace(store=store), hardware={}, test_method="buffer")


def result(kwh: float | None, g: float | None) -> Any:
    return SimpleNamespace(run_id="run1", energy_kwh=kwh, co2e_g=g, energy_j=None if kwh is None else kwh * 3.6e6)


# ---- the session budgets ------------------------------------------------------------------------

def test_a_session_exactly_at_its_limits_holds_and_the_outcome_is_recorded() -> None:
    """``used == limit`` holds (kills ``>=``); the held kWh budget is stored, not marked exceeded."""
    store = Recorder()
    checks = run_checks(plugin(result=result(0.5, 200.0), store=store, energy_budget_kwh=0.5,
                               energy_budget_co2e_g=200.0))
    assert [(c.name, c.status, c.failed) for c in checks] == [("energy_budget_kwh", "ok", False),
                                                             ("energy_budget_co2e_g", "ok", False)]
    assert [c.data for c in checks] == [{"limit": 0.5, "usage": 0.5}, {"limit": 200.0, "usage": 200.0}]
    assert store.calls == [("run1", {"budget": {"budget": "energy_budget_kwh", "limit": 0.5, "usage": 0.5,
                                                "exceeded": False}})]


def test_the_exceeded_budget_is_recorded_rather_than_one_that_held() -> None:
    store = Recorder()
    checks = run_checks(plugin(result=result(0.5, 400.0), store=store, energy_budget_kwh=1.0,
                               energy_budget_co2e_g=200.0))
    assert [(c.status, c.failed) for c in checks] == [("ok", False), ("exceeded", True)]
    assert checks[1].data == {"limit": 200.0, "usage": 400.0, "unit": "gCO2e"}
    assert store.calls == [("run1", {"budget": {"budget": "energy_budget_co2e_g", "limit": 200.0, "usage": 400.0,
                                                "exceeded": True}})]


# ---- _record: which outcome is kept with the run ------------------------------------------------------

def record(*checks: Check) -> list[tuple[str, dict[str, Any]]]:
    store = Recorder()
    _record(SimpleNamespace(gsession=SimpleNamespace(store=store), result=SimpleNamespace(run_id="run1")),
            list(checks))
    return store.calls


def test_a_budget_that_could_not_be_checked_is_not_recorded_as_an_outcome() -> None:
    """Kills ``c.failed or c.status in (...)``: a check failed only by --energy-budget-strict (unchecked) is no
    budget outcome, and ``c.status == 'ok' or limit`` : an unchecked baseline with a limit is none either."""
    assert record(Check("energy_budget_kwh", "unchecked", "not checked", True)) == []
    assert record(Check("energy_baseline", "unchecked", "no baseline yet", False,
                        data={"limit": 60.0, "baseline": "b.json"})) == []
    assert record(Check("energy_budget_marker", "ok", "fine", False)) == []  # no limit: nothing to record


def test_a_regression_is_recorded_with_the_run_it_was_measured_against() -> None:
    calls = record(Check("energy_budget_kwh", "ok", "within", data={"limit": 1.0, "usage": 0.5}),
                   Check("energy_regression", "regressed", "regression", True,
                         data={"budget": "energy_budget_regression", "limit": 10.0, "usage": 32.5,
                               "against": "old1"}))
    assert calls == [("run1", {"budget": {"budget": "energy_budget_regression", "limit": 10.0, "usage": 32.5,
                                          "exceeded": True, "against": "old1"}})]


# ---- call_energies: the per-test figures the baseline reads and saves ------------------------------------

TESTS = [
    {"nodeid": "t.py::a", "energy_j": 2.0, "outcome": "passed"},
    {"nodeid": "t.py::nothing", "energy_j": None, "outcome": "passed"},
    {"nodeid": "t.py::b", "energy_j": 5.0, "outcome": "failed"},
    {"nodeid": "t.py::a", "energy_j": 3.0, "outcome": "passed"},  # run again (e.g. a rerun): summed
    {"nodeid": "t.py::c", "energy_j": 0.0, "outcome": "passed"},
]


def test_call_energies_sums_reruns_and_keeps_failed_tests_unless_asked() -> None:
    """Kills ``passed_only=True`` by default (the comparison counts a failed test's energy too), ``and`` for
    ``or`` (a test without a figure), and ``break`` for ``continue`` (the tests after one left out)."""
    p = plugin(tests=TESTS)
    assert call_energies(p) == {"t.py::a": 5.0, "t.py::b": 5.0, "t.py::c": 0.0}
    assert call_energies(p, passed_only=True) == {"t.py::a": 5.0, "t.py::c": 0.0}


# ---- unchecked markers ------------------------------------------------------------------------------

def unchecked(n: int) -> list[dict[str, Any]]:
    return [{"nodeid": f"t.py::m{i:02d}", "energy_j": None, "unchecked": True, "budget": {"joules": 1.0}}
            for i in range(n)]


@pytest.mark.parametrize("strict", [False, True])
def test_unchecked_markers_are_listed_ten_at_most_and_strict_says_they_failed(strict: bool) -> None:
    """Kills the first ten of the unchecked markers cut at another count, and the strict sentence given (or
    not) the other way round."""
    (c,) = run_checks(plugin(tests=unchecked(12), result=result(None, None), strict=strict))
    assert (c.name, c.status, c.failed) == ("energy_budget_marker", "unchecked", False)
    assert c.detail == [f"t.py::m{i:02d}" for i in range(10)]
    text = "12 energy_budget marker(s) not checked: no power was measured or modelled"
    assert c.text == (text + " (--energy-budget-strict: those tests failed)" if strict else text)


# ---- the regression check against the last stored run, end to end ----------------------------------------

SUITE = """
import time


def test_a():
    time.sleep(0.2)
"""


def artifact_check(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    doc = json.loads((pytester.path / "gt.json").read_text(encoding="utf-8"))
    (c,) = [c for c in doc["checks"] if c["check"] == name]
    return c


def test_last_run_regression_unchecked_ok_and_strict(pytester: pytest.Pytester,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Under --energy-budget-strict, the first run has nothing to compare with: ``unchecked``, and failed;
    the next, at the same power, is ``ok``, not failed. Kills the status told from the
    message the other way round and the strict failure given to a check that was made."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "mock")
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:1000")
    pytester.makepyfile(test_suite=SUITE)
    args = ("-p", "no:cacheprovider", "--energy-budget-regression", "50", "--greentrack-json", "gt.json")
    res = pytester.runpytest_subprocess(*args, "--energy-budget-strict")
    assert res.ret == 1, res.stdout.str()
    c = artifact_check(pytester, "energy_regression")
    assert (c["status"], c["failed"]) == ("unchecked", True)
    assert c["text"] == f"no earlier run of suite {pytester.path.name!r} to compare with; regression not checked"
    res = pytester.runpytest_subprocess(*args, "--energy-budget-strict")
    assert res.ret == 0, res.stdout.str()
    c = artifact_check(pytester, "energy_regression")
    assert (c["status"], c["failed"]) == ("ok", False)
    assert "the 1 test in common with run " in c["text"] and "(limit +50%)" in c["text"]
