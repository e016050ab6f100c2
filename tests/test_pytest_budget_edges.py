"""The pytest plugin's budget code at its edges: limits of None and infinity, a test that raises, a sensor or a
store that fails, budgets that cannot be checked. Real pytest subprocesses (pytester), the mock GPU at a
constant power, the TEST-400 grid of tests/test_budgets_at_limit.py.
"""

from __future__ import annotations

import re

import pytest
from test_budgets_at_limit import FIXED_GRID, junit_properties, pytest_run


def test_marker_limits_none_inf_and_a_failing_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills: a ``None`` limit ending the marker's parsing (``break``), an infinite limit accepted
    (``<= inf``), a failing test's energy not recorded (``_end`` skipped when the test raises), finished
    measurements kept for the rest of the session, and the fixture reading before its call began."""
    pytester.makepyfile(test_edges="""
        import time
        import pytest

        @pytest.fixture
        def early(greentrack_energy):
            assert greentrack_energy.enabled and greentrack_energy.energy_j is None  # its call has not begun
            return greentrack_energy

        @pytest.mark.energy_budget(kwh=None, joules=360)
        def test_none_then_joules(early):
            time.sleep(0.2)

        @pytest.mark.energy_budget(joules=float("inf"))
        def test_infinite():
            pass

        def test_raises():
            time.sleep(0.05)
            raise RuntimeError("the test's own failure")

        def test_nothing_left_over(request):
            plugin = request.config.pluginmanager.get_plugin("greentrack-energy")
            assert list(plugin._measurements) == [request.node.nodeid]
    """)
    res = pytest_run(pytester, monkeypatch, "--greentrack", "--junitxml=junit.xml", watts=3600)
    res.assert_outcomes(passed=1, failed=3)
    out = res.stdout.str()
    assert re.search(r"energy budget exceeded: [\d.]+ J > 360 J \(joules=360\)", out), out
    assert "energy_budget: joules=inf is not a finite number >= 0" in out
    props = junit_properties(pytester.path / "junit.xml")
    assert props["test_raises"]["energy_j"] == pytest.approx(3600 * (props["test_raises"]["t1"]
                                                                     - props["test_raises"]["t0"]), rel=1e-6)
    assert props["test_raises"]["energy_j"] >= 3600 * 0.05


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
