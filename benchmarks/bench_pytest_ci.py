"""Energy budgets on a CPU-only CI machine, checked on a real third-party test suite.

Takes a pure-Python package's sdist (default: boltons 26.2.0, 519 tests, about 5 s), and on
this machine (no GPU, no RAPL: the CPU model gives every figure):

1. runs its suite with ``-p no:greentrack`` and with ``--greentrack``: the same outcome for every
   test (from the JUnit XML of both runs), a modelled energy for every test, one stored run;
2. saves a baseline from the first run (``--energy-baseline-save``), then runs the suite N times
   (default 10) against it: how many runs see a regression at the default tolerance, and the
   run-to-run spread of per-test and total energy (which sets that default);
3. runs it N times with one test doing twice the CPU work (its body called twice by a small
   plugin, ``-p gt_double``; the same plugin is loaded, idle, in every other run too): how many
   runs flag that test, by name.

Each run against the baseline also lists the tests it did not compare (scheduling-dependent: much
of their CPU on other threads, and too few saved figures), with their share of CPU on other
threads and their energy against the baseline's median.

    python benchmarks/bench_pytest_ci.py                       # downloads the sdist with pip
    python benchmarks/bench_pytest_ci.py --sdist-dir /tmp/boltons-26.2.0 --runs 10
    python benchmarks/bench_pytest_ci.py --baseline-runs 3      # a baseline saved from 3 runs

Prints every figure; exits 1 when a check of the issue's "done when" list does not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout whose greentrack the suite runs with

DOUBLE_PLUGIN = '''
import os
import pytest

TARGET = os.environ.get("GT_DOUBLE")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """Run the target test once more, inside its call (so greentrack measures both runs); a plain
    function or a unittest method alike."""
    if TARGET and item.nodeid == TARGET:
        item.runtest()
'''


def fetch_sdist(package: str, dest: Path) -> Path:
    """``pip download --no-binary :all: --no-deps`` the package and unpack it; returns the source folder."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", package,
                    "-d", str(dest)], check=True)
    (archive,) = [p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip"))]
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")
    return next(p for p in dest.iterdir() if p.is_dir())


def outcomes(junit: Path) -> dict[str, str]:
    """``{classname::name: outcome}`` from a JUnit XML report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind = child.tag
        out[f"{case.get('classname')}::{case.get('name')}"] = kind
    return out


def pytest_run(src: Path, tests: str, env: dict[str, str], *args: str) -> tuple[int, float, str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "gt_double", *args, tests]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, time.perf_counter() - t0, p.stdout


def energies(path: Path) -> dict[str, float]:
    doc = json.loads(path.read_text())
    return {t["nodeid"]: t["energy_j"] for t in doc["tests"] if t["energy_j"] is not None}


def regression_of(path: Path) -> dict | None:
    doc = json.loads(path.read_text())
    for c in doc["checks"]:
        if c["check"] in ("energy_regression", "energy_baseline"):
            return c
    return None


def not_compared(comp: dict) -> str:
    """The comparison's scheduling-dependent tests, not compared: node id (share on other threads, after / median)."""
    out = []
    for n in comp.get("not_compared", []):
        share = max(n.get("other_threads") or 0.0, n.get("saved_other_threads") or 0.0)
        ratio = f"{n['after_j'] / n['before_j']:.2f}x" if n["before_j"] > 0 else "inf"
        out.append(f"{n['nodeid']} ({share:.2f} on other threads, {ratio})")
    return "; ".join(out) or "none"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", default="boltons==26.2.0", help="sdist to download (pip requirement)")
    ap.add_argument("--sdist-dir", default=None, help="an unpacked sdist instead of downloading one")
    ap.add_argument("--tests", default="tests", help="the suite's test folder, relative to the sdist")
    ap.add_argument("--runs", type=int, default=10, help="back-to-back runs against the baseline, and doubled runs")
    ap.add_argument("--baseline-runs", type=int, default=1, help="runs saved into the baseline")
    ap.add_argument("--double", default="tests/test_gcutils.py::test_toggle_gc_postcollect",
                    help="node id of the test made to do twice the CPU work")
    ap.add_argument("--tolerance", type=float, default=None, help="--energy-budget-regression (default: the plugin's)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gt-ci-"))
    src = Path(args.sdist_dir) if args.sdist_dir else fetch_sdist(args.package, work / "sdist")
    (work / "gt_double.py").write_text(DOUBLE_PLUGIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREENTRACK_", "PYTEST_", "GITHUB_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed packages are: compiled once, not at every import
    # this checkout's greentrack, not an installed one: the suite runs in the sdist's folder, where a relative
    # PYTHONPATH entry (PYTHONPATH=.) would name the sdist, and an editable install another checkout
    paths = [str(work), str(ROOT)] + [str(Path(x).resolve()) for x in env.get("PYTHONPATH", "").split(os.pathsep) if x]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["GREENTRACK_DB"] = str(work / "parity.db")
    ok = True
    used = subprocess.run([sys.executable, "-c", "import greentrack; print(greentrack.__file__)"], cwd=src, env=env,
                          capture_output=True, text=True).stdout.strip()
    print(f"suite: {src.name}/{args.tests} (python {sys.version.split()[0]}); work folder {work}; greentrack {used}")

    # 1. outcomes with and without greentrack, per-test energy, one stored run
    rc0, t_off, _ = pytest_run(src, args.tests, env, "-p", "no:greentrack", "--junitxml", str(work / "off.xml"))
    rc1, t_on, out_on = pytest_run(src, args.tests, env, "--greentrack", "--junitxml", str(work / "on.xml"),
                                   "--greentrack-json", str(work / "on.json"))
    off, on = outcomes(work / "off.xml"), outcomes(work / "on.xml")
    same = off == on and rc0 == rc1
    doc = json.loads((work / "on.json").read_text())
    with_energy = sum(1 for t in doc["tests"] if t["energy_j"] is not None and t["method"] == "model")
    import sqlite3

    with sqlite3.connect(work / "parity.db") as con:
        stored = con.execute("select count(*) from runs").fetchone()[0]
    print(f"\n1. outcomes: {len(off)} tests; -p no:greentrack exit {rc0} in {t_off:.2f}s, --greentrack exit {rc1} in "
          f"{t_on:.2f}s; identical outcomes: {same}")
    print(f"   energy method {doc['energy_method']} (backend {doc['backend']}); tests with a modelled energy: "
          f"{with_energy} of {len(doc['tests'])} calls; session ~{doc['session']['energy_j']:.3f} J; "
          f"stored runs: {stored}")
    print(f"   model: {doc['model']['watts_per_thread']:g} W per thread ({doc['model']['basis']})")
    ok &= same and with_energy == len(doc["tests"]) and stored == 1 and doc["energy_method"] == "model"

    # 2. a baseline from the first run(s); N runs against it
    env["GREENTRACK_DB"] = str(work / "runs.db")
    base = work / "energy-baseline.json"
    tol = ["--energy-budget-regression", str(args.tolerance)] if args.tolerance is not None else []
    for i in range(args.baseline_runs):
        pytest_run(src, args.tests, env, "--energy-baseline-save", str(base), "--greentrack-json",
                   str(work / f"base{i}.json"))
    runs: list[dict[str, float]] = [energies(work / f"base{i}.json") for i in range(args.baseline_runs)]
    flagged_runs = 0
    threaded = json.loads(base.read_text())["baselines"]
    threaded = {n: v for e in threaded.values() for n, v in (e.get("threaded") or {}).items()}
    print(f"\n2. baseline saved from {args.baseline_runs} run(s); scheduling-dependent in it: "
          f"{threaded or 'none'}; {args.runs} runs against it:")
    for i in range(args.runs):
        rc, dt, out = pytest_run(src, args.tests, env, "--energy-baseline", str(base), *tol,
                                 "--greentrack-json", str(work / f"cmp{i}.json"))
        runs.append(energies(work / f"cmp{i}.json"))
        c = regression_of(work / f"cmp{i}.json")
        comp = (c or {}).get("data", {}).get("comparison", {})
        names = [r["nodeid"] for r in comp.get("regressions", [])]
        flagged_runs += bool(c and c["failed"])
        print(f"   run {i + 1:2d}: exit {rc}, {dt:5.2f}s, total {comp.get('total_change_pct', 0):+6.1f}%, "
              f"regressions: {names or 'none'}")
        print(f"           not compared: {not_compared(comp)}")
    print(f"   runs with a regression: {flagged_runs} of {args.runs} (tolerance "
          f"{comp.get('tolerance_pct')}%, floor {comp.get('floor_j', 0) * 1000:.1f} mJ)")
    ok &= flagged_runs == 0

    # the spread of the figures over all those runs
    common = sorted(set.intersection(*(set(r) for r in runs)))
    totals = [sum(r[n] for n in common) for r in runs]
    med_total = statistics.median(totals)
    print(f"\n   run-to-run spread over {len(runs)} runs, {len(common)} tests:")
    print(f"   total of the calls: median {med_total:.3f} J, min {min(totals):.3f}, max {max(totals):.3f} "
          f"(max/min {max(totals) / min(totals):.3f}, stdev {statistics.pstdev(totals) / med_total * 100:.1f}%)")
    first = runs[0]
    rows = []
    for n in common:
        vals = [r[n] for r in runs]
        med = statistics.median(vals)
        rows.append((med, n, max(vals) / min(vals) if min(vals) > 0 else float("inf"),
                     max(r[n] / first[n] for r in runs[1:]) if first[n] > 0 else float("inf"),
                     max(vals) - first[n]))
    floor = 0.01 * med_total
    for label, lo, hi in (("tests >= 1% of the suite", floor, float("inf")),
                          ("tests 0.1-1% of the suite", floor / 10, floor), ("tests < 0.1%", 0, floor / 10)):
        sel = [r for r in rows if lo <= r[0] < hi]
        if not sel:
            continue
        ratios = sorted(r[3] for r in sel)
        print(f"   {label:<26} {len(sel):4d} tests: max/min median {statistics.median(r[2] for r in sel):.2f}, "
              f"worst run / first run: median {statistics.median(ratios):.2f}, p95 "
              f"{ratios[max(0, int(0.95 * len(ratios)) - 1)]:.2f}, max {ratios[-1]:.2f}")
    print("   the tests of >= 1% of the suite, with the worst increase over the first run:")
    for med, n, mm, worst, inc in sorted(rows, key=lambda r: -r[0])[:12]:
        if med < floor:
            break
        print(f"     {med * 1000:8.1f} mJ  max/min {mm:5.2f}  worst/first {worst:5.2f}  +{inc * 1000:7.1f} mJ  {n}")

    # 3. one test doing twice the CPU work
    env_d = dict(env, GT_DOUBLE=args.double)
    hits = 0
    print(f"\n3. {args.double} doing twice the work, {args.runs} runs:")
    for i in range(args.runs):
        rc, dt, out = pytest_run(src, args.tests, env_d, "--energy-baseline", str(base), *tol,
                                 "--greentrack-json", str(work / f"dbl{i}.json"))
        c = regression_of(work / f"dbl{i}.json")
        comp = (c or {}).get("data", {}).get("comparison", {})
        regs = comp.get("regressions", [])
        named = any(r["nodeid"] == args.double for r in regs)
        in_summary = f"ERROR {args.double} - " in out  # pytest cuts the line's message at the terminal's width
        hits += named and rc == 1 and in_summary
        change = next((r["change_pct"] for r in regs if r["nodeid"] == args.double), None)
        print(f"   run {i + 1:2d}: exit {rc}, flagged {named}"
              + (f" ({change:+.0f}%)" if change is not None else "") + f", in the short summary {in_summary}, "
              f"others flagged: {[r['nodeid'] for r in regs if r['nodeid'] != args.double] or 'none'}")
        print(f"           not compared: {not_compared(comp)}")
    print(f"   flagged, by name, in {hits} of {args.runs} runs")
    ok &= hits == args.runs
    print("\nall checks hold" if ok else "\nSOME CHECKS DO NOT HOLD")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
