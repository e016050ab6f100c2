"""The cost benchmark's verdict against issue 12's targets (benchmarks/bench_pytest_plugin.py)."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_pytest_plugin as bench  # noqa: E402


def _walls(enabled_s: float, spread_s: float, idle_s: float = 0.002, rounds: int = 16) -> dict[str, list[float]]:
    rng = random.Random(7)
    base = [3.0 + rng.gauss(0, 0.01) for _ in range(rounds)]
    return {"-p no:greentrack": base,
            "installed, idle": [b + idle_s + rng.gauss(0, 0.001) for b in base],
            "--greentrack (auto)": [b + enabled_s + rng.gauss(0, spread_s) for b in base]}


@pytest.mark.parametrize(("enabled_s", "spread_s", "word"), [
    (0.030, 0.001, "target under 2 %: met"),           # 1 %, tight
    (0.090, 0.001, "target under 2 %: NOT met"),       # 3 %, tight
    (0.060, 0.030, "within this machine's noise"),     # 2 %, noisy: the interval spans the target
])
def test_the_verdict_follows_the_interval_not_the_median_alone(enabled_s: float, spread_s: float, word: str) -> None:
    walls = _walls(enabled_s, spread_s)
    out = bench.verdict(walls)
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("--greentrack"))
    assert word in line, out
    assert re.search(r"installed, idle: \+\d\.\d ms \[\+\d\.\d, \+\d\.\d\], target under 20 ms: met", out), out


def test_the_interval_holds_the_median_and_narrows_with_rounds() -> None:
    rng = random.Random(3)
    few = [rng.gauss(0.05, 0.02) for _ in range(8)]
    many = few + [rng.gauss(0.05, 0.02) for _ in range(120)]
    lo_few, hi_few = bench.median_interval(few)
    lo_many, hi_many = bench.median_interval(many)
    assert lo_few <= sorted(few)[4] and sorted(few)[3] <= hi_few
    assert hi_many - lo_many < hi_few - lo_few
    assert bench.median_interval(few) == (lo_few, hi_few)  # seeded: the same answer for the same rounds


def test_the_instruction_benchmark_reads_cachegrind_and_splits_the_cost() -> None:
    """benchmarks/bench_pytest_instructions.py: the count is the ``summary:`` line's (not a file's first
    number), and a cost at two suite sizes becomes the fixed part and the part per test of the line
    through both (kills the sizes swapped, and the fixed part taken from the larger size)."""
    import bench_pytest_instructions as instr

    out = ("desc: --cache-sim=no\ncmd: python3 -m pytest\nevents: Ir\nfl=/x.c\nfn=f\n12 900\n"
           "summary: 2605625911\n")
    assert instr.summary_count(out) == 2_605_625_911
    with pytest.raises(RuntimeError, match="no summary line"):
        instr.summary_count("events: Ir\n")
    fixed, per_test = instr.fixed_and_per_test(117.1e6 + 100 * 140e3, 117.1e6 + 500 * 140e3, 100, 500)
    assert fixed == pytest.approx(117.1e6) and per_test == pytest.approx(140e3)


def test_the_cost_benchmark_blocks_every_other_installed_pytest_plugin_and_runs_with_them_blocked(
        pytester: pytest.Pytester) -> None:
    """Other distributions' pytest plugins (hypothesis's imports for about 200 ms) are the same in every
    configuration, so the benchmark blocks them: the names are the installed ``pytest11`` entry points but
    greentrack's, and pytest accepts a run with all of them blocked."""
    from importlib import metadata

    names = bench.other_plugins()
    installed = {ep.name for d in metadata.distributions() for ep in d.entry_points if ep.group == "pytest11"}
    assert names == sorted(installed - {"greentrack"})
    assert "xdist" in names  # pytest-xdist: a test dependency
    pytester.makepyfile("def test_one():\n    assert True\n")
    res = pytester.runpytest_subprocess("-p", "no:greentrack", *[a for n in names for a in ("-p", f"no:{n}")],
                                        "-n", "2")
    assert res.ret != 0  # xdist's -n is gone with its plugin: blocked, not loaded
    res = pytester.runpytest_subprocess("-p", "no:greentrack", *[a for n in names for a in ("-p", f"no:{n}")])
    res.assert_outcomes(passed=1)
