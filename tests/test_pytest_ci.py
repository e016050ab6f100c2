"""Energy budgets on a CI runner: real pytest subprocesses (pytester), the CPU model, real files.

The machine running these tests has no GPU and no readable RAPL, like most CI runners: here
the CPU model gives every figure (method ``model``, shown with ``~``).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import artifact_tests, read_artifact

from greentrack.store.sqlite import Store

BUSY = """
import os
import time
import pytest


def busy(seconds):
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass
"""

SUITE = BUSY + """

def test_heavy():
    busy(0.15 * float(os.environ.get("HEAVY_FACTOR", "1")))


def test_medium():
    busy(0.15)


@pytest.mark.parametrize("i", range(3))
def test_light(i):
    busy(0.002)
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def final_line(res: pytest.RunResult) -> str:
    return [ln for ln in res.stdout.lines if ln.strip()][-1]


# a budget is never silently ignored ----------------------------------------------------------------
def test_marker_alone_enables_measuring_with_the_cpu_model(pytester: pytest.Pytester, ci_runner: None,
                                                          db_path: Path) -> None:
    pytester.makepyfile(test_marked="""
        import time
        import pytest

        @pytest.mark.energy_budget(joules=1e-6)
        def test_sleepy():
            time.sleep(0.3)

        def test_plain():
            pass
    """)
    res = run(pytester)  # plain pytest: no --greentrack, no budget option, no ini key
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert re.search(r"energy budget exceeded: ~[\d.e-]+ J > 1e-06 J \(joules=1e-06\)", out)
    assert "greentrack: enabled by 1 energy_budget marker(s)" in out
    assert "backend cpu-model" in out and "~ modelled, not measured: CPU time of pytest and its children x 4 W" in out
    assert "greentrack: nothing here measures power" in res.stderr.str()
    (row,) = Store(db_path, create=False).list_runs(last=None)
    assert row["backend"] == "cpu-model" and row["energy_method"] == "model"


def test_fixture_gives_a_number_without_any_option(pytester: pytest.Pytester, ci_runner: None) -> None:
    pytester.makepyfile(test_fix=BUSY + """

def test_readme_example(greentrack_energy):
    busy(0.05)
    assert greentrack_energy.energy_j < 2_000  # the README's example, as written
    assert greentrack_energy.method == "model" and greentrack_energy.modelled
    assert 0.05 * 4 * 0.8 < greentrack_energy.energy_j < 0.05 * 4 * 3
""")
    res = run(pytester)
    res.assert_outcomes(passed=1)
    assert "enabled by 1 test(s) using the greentrack_energy fixture" in res.stdout.str()


def test_the_cpu_model_runs_without_a_sampler_thread(pytester: pytest.Pytester, ci_runner: None,
                                                      db_path: Path) -> None:
    """On a CPU runner the model is read at each test's edges: greentrack starts no thread beside the tests
    (a GPU keeps its sampler thread), and the figures and the stored run are those of any other run."""
    pytester.makepyfile(test_threads=BUSY + """
import threading


def test_no_sampler_thread(greentrack_energy):
    busy(0.05)
    assert [t.name for t in threading.enumerate() if t.name.startswith("greentrack")] == []
    assert 0.05 * 4 * 0.8 < greentrack_energy.energy_j < 0.05 * 4 * 3
""")
    res = run(pytester, "--greentrack", "--greentrack-json", "gt.json")
    res.assert_outcomes(passed=1)
    (row,) = Store(db_path, create=False).list_runs(last=None)
    assert row["status"] == "finished" and row["backend"] == "cpu-model"
    test = artifact_tests(pytester.path / "gt.json")["test_no_sampler_thread"]
    assert 0.05 * 4 * 0.8 < test["energy_j"] < 0.05 * 4 * 3 and row["energy_j"] >= test["energy_j"]


def test_unchecked_budgets_are_said_and_fail_under_strict(pytester: pytest.Pytester, ci_runner: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENTRACK_BACKEND", "none")  # nothing measures, nothing models
    pytester.makepyfile(test_none="""
        import pytest

        @pytest.mark.energy_budget(joules=1)
        def test_budgeted():
            pass

        def test_other():
            pass
    """)
    res = run(pytester, "--energy-budget-kwh", "1")
    res.assert_outcomes(passed=2)
    assert res.ret == 0
    out = res.stdout.str()
    assert "greentrack: 1 energy_budget marker(s) not checked: no power was measured or modelled" in out
    assert "greentrack: energy_budget_kwh not checked: no power was measured or modelled" in out

    res = run(pytester, "--energy-budget-kwh", "1", "--energy-budget-strict")
    res.assert_outcomes(passed=1, failed=1, errors=1)
    assert res.ret == 1
    out = res.stdout.str()
    # (pytest shortens these lines to the terminal's width, except on CI where CI=true is set)
    assert "FAILED test_none.py::test_budgeted - Failed: energy budget not checked" in out
    assert "ERROR greentrack::energy_budget_kwh - not checked" in out
    assert "greentrack: energy_budget_kwh not checked: no power was measured or modelled" in out

    pytester.makeini("[pytest]\nenergy_budget_strict = true\n")  # the ini key does the same
    res = run(pytester)
    res.assert_outcomes(passed=1, failed=1)
    assert res.ret == 1


# the README's CI section, as written ---------------------------------------------------------------
def _readme_ci_section() -> tuple[str, list[list[str]], dict[str, str]]:
    """The README's "Energy budgets in CI": its Python example, the step's pytest command lines, its env."""
    import shlex

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("## Energy budgets in CI", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, re.S)
    (yaml,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    script = yaml.split("run: |", 1)[1].split("env:", 1)[0].replace("\\\n", " ")
    commands = [shlex.split(ln, comments=True)[3:] for ln in script.splitlines() if "python -m pytest" in ln]
    env = dict(re.findall(r"^\s+(GREENTRACK_\w+): (.+?)\s*(?:#.*)?$", yaml.split("env:", 1)[1], re.M))
    return example, commands, env


def test_readme_ci_section_works_as_written(pytester: pytest.Pytester, ci_runner: None, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    example, commands, env = _readme_ci_section()
    assert len(commands) == 1 and env == {"GREENTRACK_DB": "${{ runner.temp }}/greentrack.db"}
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    monkeypatch.setenv("GREENTRACK_DB", env["GREENTRACK_DB"].replace("${{ runner.temp }}", str(runner_temp)))
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_readme.py").write_text(
        BUSY + "\n\ndef run_inference():\n    busy(0.05)\n\n\n" + example, encoding="utf-8")
    (step,) = commands

    first = run(pytester, *step)  # no baseline committed yet: said, and the build passes
    first.assert_outcomes(passed=2)
    assert "greentrack: no baseline at tests/energy-baseline.json yet; regression not checked" in first.stdout.str()
    for _ in range(3):  # "three times or more", then the file is committed
        run(pytester, "--energy-baseline-save", "tests/energy-baseline.json").assert_outcomes(passed=2)
    res = run(pytester, *step)
    res.assert_outcomes(passed=2)
    assert "greentrack: no energy regression: 2 tests in common with baseline" in res.stdout.str()
    props = {p.get("name") for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    assert {"greentrack_energy_j", "greentrack_energy_method", "greentrack_energy_budget_status"} <= props
    assert len(read_artifact(pytester.path / "greentrack-energy.json")["tests"]) == 2
    assert "test_inference" in summary.read_text(encoding="utf-8")
    assert len(Store(Path(runner_temp / "greentrack.db"), create=False).list_runs(last=None)) == 5


# the baseline in the repository ---------------------------------------------------------------
def test_baseline_save_compare_and_a_test_doing_twice_the_work(pytester: pytest.Pytester, ci_runner: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_suite=SUITE)
    base = pytester.path / "energy-baseline.json"
    res = run(pytester, "--energy-baseline-save", str(base))
    res.assert_outcomes(passed=5)
    assert f"greentrack: baseline saved to {base}: 5 tests for model: " in res.stdout.str()
    doc = json.loads(base.read_text())
    assert doc["schema"] == "greentrack.pytest-baseline" and doc["version"] == 1
    (key,) = doc["baselines"]
    assert key.startswith("model: ") and key.endswith("@ 4 W/thread")
    entry = doc["baselines"][key]
    assert entry["hardware"]["energy_method"] == "model" and entry["saves"] == 1
    assert entry["tests"]["test_suite.py::test_heavy"][0] == pytest.approx(0.15 * 4, rel=0.25)
    assert '"test_suite.py::test_heavy": [' in base.read_text()  # one test per line: small diffs

    res = run(pytester, "--energy-baseline", str(base))
    res.assert_outcomes(passed=5)
    assert res.ret == 0
    res.stdout.re_match_lines([r"greentrack: no energy regression: 5 tests in common with baseline .* "
                               r"~[\d.]+ J against ~[\d.]+ J \([+-][\d.]+%\); limit \+60% per test and in total"])

    monkeypatch.setenv("HEAVY_FACTOR", "2")  # test_heavy now does twice the CPU work
    res = run(pytester, "--energy-baseline", str(base), "--junitxml", "junit.xml")
    res.assert_outcomes(passed=5, errors=1)
    assert res.ret == 1
    out = res.stdout.str()
    assert re.search(r"greentrack: energy regression: 1 test\(s\) over the baseline; largest: "
                     r"test_suite.py::test_heavy \(\+\d+%\)", out)  # the total (+~50%) stays within +60%
    m = re.search(r"test_suite.py::test_heavy: ~[\d.]+ m?J -> ~[\d.]+ m?J \(\+(\d+)%; highest saved .*\) \[model\]",
                  out)
    assert m and 60 < int(m.group(1)) < 200
    assert "ERROR test_suite.py::test_heavy - energy regression: +" in out  # named in the short summary
    assert re.match(r"=+ 5 passed, 1 error in ", final_line(res))
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["greentrack_energy_regression"] == "regressed" and props["greentrack_checks"] == "failed"


def test_baseline_lists_added_and_removed_tests_and_keeps_samples(pytester: pytest.Pytester, ci_runner: None) -> None:
    pytester.makepyfile(test_suite=SUITE)
    base = pytester.path / "b.json"
    run(pytester, "--energy-baseline-save", str(base)).assert_outcomes(passed=5)
    run(pytester, "--energy-baseline", str(base), "--energy-baseline-save", str(base)).assert_outcomes(passed=5)
    entry = next(iter(json.loads(base.read_text())["baselines"].values()))
    assert entry["saves"] == 2 and len(entry["tests"]["test_suite.py::test_medium"]) == 2

    pytester.makepyfile(test_suite=SUITE.replace("def test_medium", "def test_renamed"))
    res = run(pytester, "--energy-baseline", str(base))
    res.assert_outcomes(passed=5)
    assert res.ret == 0  # listed, not failed
    out = res.stdout.str()
    assert "1 test(s) new since the baseline (not compared): test_suite.py::test_renamed" in out
    assert "1 test(s) in the baseline, not run (removed or deselected): test_suite.py::test_medium" in out


def test_baseline_from_other_hardware_is_flagged_not_compared(pytester: pytest.Pytester, ci_runner: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_suite=SUITE)
    base = pytester.path / "b.json"
    run(pytester, "--energy-baseline-save", str(base)).assert_outcomes(passed=5)
    monkeypatch.setenv("GREENTRACK_CPU_WATTS_PER_THREAD", "9")  # another CPU, as the model sees it
    monkeypatch.setenv("HEAVY_FACTOR", "3")
    res = run(pytester, "--energy-baseline", str(base))
    res.assert_outcomes(passed=5)
    assert res.ret == 0
    out = res.stdout.str()
    assert "was made on other hardware or with another method; not compared (this run: model: " in out
    assert "@ 9 W/thread)" in out and "in the file: model: " in out and "@ 4 W/thread" in out
    res = run(pytester, "--energy-baseline", str(base), "--energy-budget-strict")
    res.assert_outcomes(passed=5, errors=1)
    assert res.ret == 1
    # saving adds this hardware's entry next to the other one
    run(pytester, "--energy-baseline-save", str(base)).assert_outcomes(passed=5)
    assert len(json.loads(base.read_text())["baselines"]) == 2


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ('{"schema": "something else"}', "is not a greentrack energy baseline"),
    ('{"schema": "greentrack.pytest-baseline", "version": 99, "baselines": {}}', "has baseline version 99"),
])
def test_broken_baseline_is_a_one_line_usage_error(pytester: pytest.Pytester, ci_runner: None,
                                                   content: str, message: str) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    (pytester.path / "b.json").write_text(content)
    res = run(pytester, "--energy-baseline", "b.json")
    assert res.ret == 4
    err = res.stderr.str()
    assert "greentrack: --energy-baseline: b.json " in err and message in err and "Traceback" not in err


# what CI systems show ------------------------------------------------------------------------------
def test_junit_step_summary_and_json_artifact(pytester: pytest.Pytester, ci_runner: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_suite=SUITE + """

@pytest.mark.energy_budget(joules=1e-6)
def test_over():
    busy(0.01)
""")
    summary = pytester.path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = run(pytester, "--greentrack", "--junitxml", "junit.xml", "--greentrack-json", "out/energy.json")
    res.assert_outcomes(passed=5, failed=1)

    root = ET.parse(pytester.path / "junit.xml").getroot()
    cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")} for c in root.iter("testcase")}
    heavy = cases["test_heavy"]
    assert heavy["greentrack_energy_method"] == "model"
    assert float(heavy["greentrack_energy_j"]) == pytest.approx(0.6, rel=0.25)
    assert cases["test_over"]["greentrack_energy_budget"] == "joules=1e-06"
    assert cases["test_over"]["greentrack_energy_budget_status"] == "exceeded"
    assert not any(v.startswith("{") for c in cases.values() for v in c.values())  # plain values only
    suite_props = {p.get("name"): p.get("value") for p in root.find("testsuite").find("properties")}
    assert suite_props["greentrack_energy_method"] == "model" and float(suite_props["greentrack_energy_j"]) > 0.6

    md = summary.read_text()
    assert md.startswith("earlier step\n### greentrack: energy of `")
    assert "| most energy-hungry tests | energy | time | budget |" in md
    assert re.search(r"\| `test_suite.py::test_heavy` \| ~[\d.]+ (J|mJ) \|", md)
    assert "**Energy checks failed**" in md and "`test_suite.py::test_over` over its `energy_budget` marker" in md
    assert "`~` modelled from CPU time, not measured: CPU seconds x 4 W per thread" in md

    doc = read_artifact(pytester.path / "out" / "energy.json")
    assert doc["energy_method"] == "model"
    assert doc["model"]["watts_per_thread"] == 4.0 and "Green Algorithms" in doc["model"]["method_ref"]
    by = artifact_tests(pytester.path / "out" / "energy.json")
    assert len(by) == 6 and by["test_over"]["over_budget"] is True
    assert by["test_heavy"]["method"] == "model" and by["test_heavy"]["energy_j"] > 0.4
    assert doc["session"]["energy_j"] >= sum(t["energy_j"] for t in doc["tests"])


def test_session_budget_in_short_summary_and_final_line(pytester: pytest.Pytester, ci_runner: None) -> None:
    pytester.makepyfile(test_suite=SUITE)
    res = run(pytester, "--energy-budget-kwh", "1e-9", "-rA")
    res.assert_outcomes(passed=5, errors=1)
    assert res.ret == 1
    out = res.stdout.str()
    summary = out[out.index("short test summary info"):]
    assert re.search(r"ERROR greentrack::energy_budget_kwh - session ~[\d.e-]+ kWh > 1e-09 kWh", summary)
    assert re.match(r"=+ 5 passed, 1 error in ", final_line(res))
