"""The baseline comparison (``--energy-baseline``) as numbers: each test and the total at 0.5x, 1x and 2x
the allowed increase, and the floor below which an increase is not worth a red build.

:func:`greentrack.pytest_plugin.baseline.compare` is called directly on hand-made baseline entries,
so every figure is exact; the end-to-end runs (the CPU model, real pytest sessions) are in
tests/test_pytest_ci.py. The rules, as docs/pytest-ci.md gives them:

    a test regresses when   after > median saved x (1 + pct / 100)
                            (the highest saved for a scheduling-dependent test: tests/test_pytest_baseline_threads.py)
                      and   after - median saved > floor
    the total regresses when (sum after / sum median - 1) x 100 > pct
                      and   sum after - sum median > floor
    floor = 1 % of the sum of the medians of the tests in common
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from greentrack.pytest_plugin.baseline import SCHEMA, compare, hardware_key

HW = {"energy_method": "measured", "devices": ["Mock GPU"]}
KEY = hardware_key(HW)


def doc(tests: dict[str, list[float]], saves: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"tests": tests}
    if saves is not None:
        entry["saves"] = saves
    return {"schema": SCHEMA, "version": 1, "baselines": {KEY: entry}}


def cmp_(saved: dict[str, list[float]], now: dict[str, float], pct: float, saves: int | None = None) -> Any:
    return compare(doc(saved, saves), "b.json", HW, now, pct, "buffer")


def test_a_test_at_half_and_twice_the_allowed_increase() -> None:
    """+10 % against a 20 % limit holds, +40 % fails, and the figures are the hand calculation's. Kills the
    limit computed as ``1 - pct/100``, ``hi / limit``, and the change in per-mille or off by 0.1."""
    saved = {"a": [90.0, 100.0, 100.0], "b": [200.0]}  # a: median 100, highest 100
    half = cmp_(saved, {"a": 110.0, "b": 200.0}, 20.0)
    assert half.regressions == [] and not half.failed
    twice = cmp_(saved, {"a": 140.0, "b": 200.0}, 20.0)
    (rg,) = twice.regressions
    assert (rg.nodeid, rg.before_j, rg.highest_j, rg.after_j) == ("a", 100.0, 100.0, 140.0)
    assert rg.change_pct == pytest.approx(40.0, rel=1e-12)
    assert twice.failed
    assert (twice.total_before_j, twice.total_after_j) == (300.0, 340.0)
    assert twice.total_change_pct == pytest.approx(40.0 / 3.0, rel=1e-12)
    assert not twice.total_regressed  # +13.3 % in total: within 20 %
    assert twice.floor_j == pytest.approx(3.0, rel=1e-12)


def test_exactly_at_the_allowed_increase_holds_and_just_over_fails() -> None:
    """+25 % against 25 % holds (kills ``>=``), +25.5 % fails (kills a limit of ``1.1 + pct/100``, 35 %), for
    the test and for the total."""
    saved = {"a": [100.0], "b": [100.0]}
    at = cmp_(saved, {"a": 125.0, "b": 125.0}, 25.0)
    assert at.regressions == [] and at.total_change_pct == pytest.approx(25.0, rel=1e-12)
    assert not at.total_regressed and not at.failed
    over = cmp_(saved, {"a": 125.5, "b": 125.0}, 25.0)
    assert [r.nodeid for r in over.regressions] == ["a"]
    assert over.total_change_pct == pytest.approx(25.25, rel=1e-12) and over.total_regressed


def test_the_median_saved_figure_is_the_reference_of_a_test() -> None:
    """One slow save does not hide a regression: the reference is the median of the saved figures, not
    the highest (kills ``med`` read as ``hi``), and the change is told against it."""
    c = cmp_({"a": [100.0, 150.0, 110.0], "b": [1_000.0]}, {"a": 131.0, "b": 1_000.0}, 20.0)
    assert c.regressions == []  # 131 < 110 x 1.2 (and +21 J over the median, above the 11.1 J floor)
    c = cmp_({"a": [100.0, 150.0, 110.0], "b": [1_000.0]}, {"a": 133.0, "b": 1_000.0}, 20.0)
    (rg,) = c.regressions  # 133 > 132: a regression, though below the slow save's 150
    assert (rg.before_j, rg.highest_j, rg.after_j) == (110.0, 150.0, 133.0)
    assert rg.change_pct == pytest.approx((133.0 / 110.0 - 1) * 100, rel=1e-12)
    # a test doing twice the work against a baseline whose one save in three was a third slow
    c = cmp_({"a": [100.0, 135.0, 100.0], "b": [1_000.0]}, {"a": 200.0, "b": 1_000.0}, 60.0)
    assert [r.nodeid for r in c.regressions] == ["a"]


def test_an_increase_below_the_floor_is_not_a_regression() -> None:
    """The floor is 1 % of the suite's baseline: +100 % of a 100 J test in a 10 kJ suite is +100 J, exactly
    the floor: holds; +101 J fails. Kills the floor as ``FLOOR_SHARE / total``, ``>=`` and ``e + median``."""
    saved = {"small": [100.0], "big": [9_900.0]}
    c = cmp_(saved, {"small": 200.0, "big": 9_900.0}, 20.0)
    assert c.floor_j == pytest.approx(100.0, rel=1e-12)
    assert c.regressions == [] and not c.failed
    c = cmp_(saved, {"small": 150.0, "big": 9_900.0}, 20.0)  # +50 % but +50 J: under the floor
    assert c.regressions == []
    c = cmp_(saved, {"small": 201.0, "big": 9_900.0}, 20.0)
    assert [r.nodeid for r in c.regressions] == ["small"]


def test_the_total_needs_both_the_percentage_and_the_floor() -> None:
    """The total at +1 % against a 0.5 % limit is +100 J in a 10 kJ suite: exactly the floor, holds (kills
    ``>=``); +0.6 % is over the limit but under the floor, holds (kills ``after + before > floor``);
    +1.01 % fails."""
    saved = {"t": [10_000.0]}
    c = cmp_(saved, {"t": 10_100.0}, 0.5)
    assert c.total_change_pct == pytest.approx(1.0, rel=1e-9) and c.regressions == []
    assert not c.total_regressed and not c.failed
    c = cmp_(saved, {"t": 10_060.0}, 0.5)
    assert not c.total_regressed
    c = cmp_(saved, {"t": 10_101.0}, 0.5)
    assert c.total_regressed and c.failed


def test_the_total_change_of_a_suite_that_used_half_a_joule() -> None:
    """A baseline total of 0.5 J is energy: its change is a number (kills ``<= 1`` for ``<= 0``); 0 J gives
    none."""
    c = cmp_({"a": [0.25], "b": [0.25]}, {"a": 0.5, "b": 0.25}, 60.0)
    assert c.total_change_pct == pytest.approx(50.0, rel=1e-12)
    zero = cmp_({"a": [0.0]}, {"a": 0.0}, 60.0)
    assert zero.total_change_pct is None and not zero.total_regressed


def test_regressions_are_listed_largest_increase_first() -> None:
    """Kills the sort dropped or reversed, and ordered by ``after + before``: the largest increase in joules
    (not in percent, not the largest test) comes first."""
    saved = {"big": [1_000.0], "mid": [10.0], "small": [1.0]}
    c = cmp_(saved, {"big": 1_300.0, "mid": 500.0, "small": 200.0}, 10.0)
    assert [r.nodeid for r in c.regressions] == ["mid", "big", "small"]  # +490 J, +300 J, +199 J


def test_saved_runs_are_counted_from_the_entry() -> None:
    """Kills ``saves or 2`` and ``saves and 1``: the count the summary shows."""
    assert cmp_({"a": [1.0]}, {"a": 1.0}, 10.0, saves=3).saves == 3
    assert cmp_({"a": [1.0]}, {"a": 1.0}, 10.0).saves == 1


def test_a_test_saved_at_zero_joules_regresses_without_limit_and_stays_json() -> None:
    """A test that used 0 J when saved and some energy now: an infinite increase, a regression, never a
    division by zero (kills ``before_j >= 0``); the comparison stays valid JSON (the ``--greentrack-json``
    artifact), its change given as null."""
    c = cmp_({"a": [0.0], "b": [100.0]}, {"a": 5.0, "b": 100.0}, 60.0)
    (rg,) = c.regressions
    assert rg.nodeid == "a" and rg.change_pct == math.inf
    d = json.loads(json.dumps(c.as_dict(), allow_nan=False))
    assert d["regressions"][0]["change_pct"] is None and d["regressions"][0]["after_j"] == 5.0


BASE_ZERO = """
import time


def test_a():
    time.sleep(0.1)
"""


def test_json_artifact_is_written_when_a_test_was_saved_at_zero_joules(pytester: pytest.Pytester,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved on an idle mock GPU (0 W: the test at 0 J), compared at 100 W: the regression is reported and the
    ``--greentrack-json`` artifact still written (it was not: +inf % is not JSON)."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "mock")
    pytester.makepyfile(test_x=BASE_ZERO)
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:0")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--energy-baseline-save", "b.json")
    res.assert_outcomes(passed=1)
    saved = json.loads((pytester.path / "b.json").read_text())
    assert [e["tests"] for e in saved["baselines"].values()] == [{"test_x.py::test_a": [0.0]}]
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--energy-baseline", "b.json",
                                        "--greentrack-json", "out.json")
    assert res.ret == 1
    assert "cannot write --greentrack-json" not in res.stdout.str()
    out = json.loads((pytester.path / "out.json").read_text())
    assert out["failed"] is True
    (check,) = [c for c in out["checks"] if c["check"] == "energy_regression"]
    (rg,) = check["data"]["comparison"]["regressions"]
    assert rg["nodeid"] == "test_x.py::test_a" and rg["before_j"] == 0.0 and rg["change_pct"] is None
    (t,) = out["tests"]
    assert rg["after_j"] == t["energy_j"] == pytest.approx(100.0 * t["duration_s"], rel=1e-6)
