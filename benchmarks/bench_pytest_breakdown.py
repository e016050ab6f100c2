"""Where the enabled pytest plugin's fixed and per-test costs come from, on the CPU model.

Prints the figures that ``docs/pytest-ci.md`` ("What it costs") quotes:

1. the CPU model's read at each edge of a test's call (``Session.edge``, twice per test), timed
   inside a real pytest run of N trivial tests (or, with ``--edge-work-ms``, tests doing that much
   pure-Python work first), and in a tight loop outside pytest (whose 100,000
   edges include their folding into the power series every 8192, which a pytest run of fewer tests
   leaves to its end), where the general path it replaces for this source (``Session.poll_edges`` at
   the start, ``Session.energy_between`` at the end) is timed too (medians);
2. the CPU model's inputs (``resolve_inputs``: /proc/cpuinfo and codecarbon's CPU table), in a
   fresh process each time, after the imports every session makes anyway (median);
3. what importing greentrack's modules adds to the interpreter's exit, in a ``python -c`` that
   has imported pytest and does nothing else (median of paired differences);
4. the pieces of a session's start, each timed in a fresh process that has imported pytest, with
   Python's garbage collector off (its full collections land wherever a threshold is crossed):
   importing the session, the store, and the rest of what the plugin imports by its end (and how
   much of all that is the creation of dataclasses), the plugin manager (built-in plugins, entry
   points), ``Session.start()`` on a new SQLite file as the plugin starts it (medians);
5. importing the modules the measuring plugin needs inside a pytest run, garbage collector off,
   with greentrack marked for pytest's assertion rewriting (as pytest marks every package of an
   installed distribution with a ``pytest11`` entry point; reproduced here by a wheel-like
   dist-info folder) and with the mark taken back, as the plugin does once enabled (medians of
   interleaved runs);
6. the check a strict start (the pytest plugin, ``greentrack run``) makes of a database that
   already holds N pytest runs of 500 tests (``--runs``, default 200: 100,000 phases): opening it
   with ``verify`` as the plugin does, and, for comparison, ``PRAGMA quick_check`` of its phases
   table, which that check no longer reads (medians);
7. the end of a real pytest run of 500 tests doing 5 ms of CPU work each (``--exit-tests``), with
   ``-p no:greentrack`` and with ``--greentrack``, interleaved: from the last ``pytest_unconfigure``
   hook to ``pytest.main`` returning (pytest's cleanup, whose full garbage collections are counted
   and timed), and from there to the process's end (the interpreter's exit); medians of paired
   differences;
8. the per-test cost taken apart, end to end: a pytest run of N trivial tests (``--per-test-tests``)
   with ``-p no:greentrack``, and with ``--greentrack`` as it is and with its call hook cut down to a
   bare wrapper (no test measured), to the two edge reads with their readings dropped at once, and
   to the two edge reads with their readings kept for the series (as the plugin keeps them), in
   interleaved rounds; each variant's paired difference against ``-p no:greentrack``, and, per
   test, what each step adds over the previous one (medians). The variants replace the plugin's
   hook in a generated plugin module (``gt_per_test_variant``): a benchmark's cut, not a mode of
   greentrack's;
9. a session's stop after N phases marked as the pytest plugin marks each test's call
   (``--stop-phases``, default 500), in a fresh process each time, garbage collector off: its time,
   how many more objects Python's collector tracks after it than before (what the next full
   collections walk), and its net allocations of tracked objects (what sets collections off)
   (medians).

Usage::

    python benchmarks/bench_pytest_breakdown.py [--tests 2000] [--reps 9] [--only 4] [--only 5] [--runs 200]
    python benchmarks/bench_pytest_breakdown.py --only 1 --tests 500 --edge-work-ms 5   # edges after each test's work
    python benchmarks/bench_pytest_breakdown.py --only 7 --reps 10 [--exit-tests 500]
    python benchmarks/bench_pytest_breakdown.py --only 8 --reps 16 [--per-test-tests 3000]
    python benchmarks/bench_pytest_breakdown.py --only 9 --reps 9 [--stop-phases 500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TIMING_PLUGIN = textwrap.dedent("""
    import json, os, time
    import pytest

    T = {"edge": []}

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(session):
        plugin = session.config.pluginmanager.get_plugin("greentrack-energy")
        # the function the plugin reads each edge through (Session.edge_function); Session.edge before it
        owner, attr = (plugin, "_edge") if hasattr(plugin, "_edge") else (plugin.gsession, "edge")
        orig = getattr(owner, attr)

        def timed(*a, **k):
            t = time.perf_counter_ns()
            r = orig(*a, **k)
            T["edge"].append(time.perf_counter_ns() - t)
            return r

        setattr(owner, attr, timed)

    def pytest_unconfigure(config):
        with open(os.environ["BREAKDOWN_OUT"], "w") as fh:
            json.dump(T, fh)
""")

TIGHT_LOOP = textwrap.dedent("""
    import json, statistics, time, timeit
    from greentrack.measure.tracker import Session
    gs = Session("tight-loop", store=False, background=False)  # as the pytest plugin does
    gs.start()
    n = 20000
    out = {}
    edge = gs.edge_function() if hasattr(gs, "edge_function") else gs.edge  # as the plugin reads it
    for name, fn in (("edge", edge), ("poll_edges", gs.poll_edges),
                     ("energy_between", lambda: gs.energy_between(time.time() - 0.001))):
        out[name] = statistics.median(timeit.timeit(fn, number=n) / n * 1e9 for _ in range(5))
    gs.stop()
    print(json.dumps(out))
""")

RESOLVE = textwrap.dedent("""
    import time
    import greentrack.carbon.grid  # imported by every session's plugin manager anyway
    from greentrack.measure.sources import cpu_model
    t = time.perf_counter()
    inputs = cpu_model.resolve_inputs()
    print(time.perf_counter() - t)
""")

START_PIECES = textwrap.dedent("""
    import gc, json, os, sys, time
    import pytest, _pytest.junitxml, _pytest.python
    gc.disable()
    import dataclasses
    made = []  # (seconds, class) of each dataclass created by these imports
    _orig = dataclasses._process_class

    def _timed(cls, *args, **kw):
        a = time.perf_counter()
        try:
            return _orig(cls, *args, **kw)
        finally:
            made.append((time.perf_counter() - a, cls.__qualname__))

    dataclasses._process_class = _timed
    t = {}
    a = time.perf_counter(); import greentrack.measure.tracker; t["import the session"] = time.perf_counter() - a
    a = time.perf_counter(); import greentrack.store.writer, greentrack.store.sqlite
    t["import the store"] = time.perf_counter() - a
    a = time.perf_counter(); import greentrack.pytest_plugin.energy, greentrack.pytest_plugin.checks
    import greentrack.pytest_plugin.ci, greentrack.measure.attribution
    t["import the plugin's measuring half, its checks and attribution"] = time.perf_counter() - a
    dataclasses._process_class = _orig
    t["  of which: dataclasses created (%d)" % len(made)] = sum(x for x, _ in made)
    a = time.perf_counter(); from greentrack import plugins; plugins.get_plugin_manager()
    t["plugin manager (built-in plugins, entry points)"] = time.perf_counter() - a
    from greentrack.measure.tracker import Session
    import inspect
    # as the plugin starts it (an older checkout's Session has no background option)
    kw = {"background": False} if "background" in inspect.signature(Session).parameters else {}
    gs = Session("breakdown", tags={"runner": "pytest"}, strict=True, **kw)
    a = time.perf_counter(); gs.start()
    t["Session.start() (sources, CPU model, new database)"] = time.perf_counter() - a
    gs.stop()
    print(json.dumps(t))
""")

STOP_PIECES = textwrap.dedent("""
    import gc, json, os, sys, time
    import pytest
    from greentrack.measure.tracker import Session
    import inspect
    kw = {"background": False} if "background" in inspect.signature(Session).parameters else {}
    gs = Session("breakdown", tags={"runner": "pytest"}, strict=True, **kw)
    gs.start()
    edge = gs.edge_function() if hasattr(gs, "edge_function") else None
    for i in range(int(os.environ["BREAKDOWN_PHASES"])):  # as the pytest plugin marks each test's call
        a, b = (edge(), edge()) if edge is not None else ((time.time(), 0.0), (time.time(), 0.0))
        gs.mark_phase(f"tests/test_gen_{i // 50}.py::test_{i}", a[0], b[0], b[1] - a[1])
    gc.collect()
    gc.disable()
    before = len(gc.get_objects())
    counts = gc.get_count()[0]
    a = time.perf_counter(); gs.stop(); s = time.perf_counter() - a
    print(json.dumps({"s": s, "alive": len(gc.get_objects()) - before, "net": gc.get_count()[0] - counts}))
""")

REWRITE_PLUGIN = textwrap.dedent("""
    import gc, importlib, json, os, time
    import pytest

    @pytest.hookimpl(trylast=True)
    def pytest_configure(config):
        marks = config.pluginmanager.rewrite_hook._must_rewrite
        marked = "greentrack" in marks
        if os.environ["BREAKDOWN_UNMARK"] == "1":
            marks.discard("greentrack")
        gc.disable()
        a = time.perf_counter()
        for m in os.environ["BREAKDOWN_MODULES"].split(","):
            importlib.import_module(m)
        dt = time.perf_counter() - a
        gc.enable()
        with open(os.environ["BREAKDOWN_OUT"], "w") as fh:
            json.dump({"marked": marked, "s": dt}, fh)
""")

MODULES = [
    "greentrack.measure.tracker", "greentrack.measure.sampler", "greentrack.measure.attribution",
    "greentrack.measure.sources.cpu_model", "greentrack.measure.sources.rapl", "greentrack.measure.sources.nvml",
    "greentrack.store.writer", "greentrack.store.sqlite",
    "greentrack.store.spool", "greentrack.store.queries", "greentrack.store.redact", "greentrack.carbon.grid",
    "greentrack.pytest_plugin.energy", "greentrack.pytest_plugin.checks",
    "greentrack.pytest_plugin.ci", "greentrack.pytest_plugin.report",
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREENTRACK_", "PYTEST_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["GREENTRACK_BACKEND"] = "cpu-model"
    return env


def _work_loops(work_ms: float) -> int:
    """Iterations of the generated tests' pure-Python loop that take about *work_ms* of CPU here."""
    n, spent = 20_000, 0.0
    while spent < 0.02:
        n *= 2
        t = time.process_time()
        s = 0
        for i in range(n):
            s += i * i % 7
        spent = time.process_time() - t
    return max(1, int(n * work_ms / 1000 / spent))


def edges(tests: int, tmp: Path, work_ms: float = 0.0) -> None:
    suite = tmp / "suite"
    suite.mkdir()
    if work_ms:  # each test does some Python work first: the edges then run after other code, as in a real suite
        head = (f"def work():\n    s = 0\n    for i in range({_work_loops(work_ms)}):\n        s += i * i % 7\n"
                f"    return s\n\n\n")
        body = "".join(f"def test_{i}():\n    work()\n" for i in range(tests))
    else:
        head, body = "", "".join(f"def test_{i}():\n    pass\n" for i in range(tests))
    (suite / "test_many.py").write_text(head + body)
    (suite / "gt_breakdown_timing.py").write_text(TIMING_PLUGIN)
    env = dict(_env(), BREAKDOWN_OUT=str(tmp / "edges.json"), GREENTRACK_DB=str(tmp / "edges.db"))
    env["PYTHONPATH"] = os.pathsep.join([str(suite), env["PYTHONPATH"]])
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "gt_breakdown_timing",
                    "--greentrack", "test_many.py"], cwd=suite, env=env, capture_output=True, check=True)
    inside = json.loads((tmp / "edges.json").read_text())
    loop = json.loads(subprocess.run([sys.executable, "-c", TIGHT_LOOP], env=env, capture_output=True, text=True,
                                     check=True).stdout)
    what = f"{tests} tests doing {work_ms:g} ms of Python work each" if work_ms else f"{tests} trivial tests"
    print(f"1. the CPU model's reads per test, median (inside pytest, {what} / tight loop):")
    print(f"   {'edge (x2)':15s} {statistics.median(inside['edge']) / 1e3:6.2f} us / {loop['edge'] / 1e3:6.2f} us")
    print("   the general path, where the CPU model is not the one source (tight loop):")
    for name in ("poll_edges", "energy_between"):
        print(f"   {name:15s} {'':>9s}    {loop[name] / 1e3:6.2f} us")


def resolve(reps: int) -> None:
    env = _env()
    vals = [float(subprocess.run([sys.executable, "-c", RESOLVE], env=env, capture_output=True, text=True,
                                 check=True).stdout) for _ in range(reps)]
    print(f"2. the CPU model's inputs (resolve_inputs, after the imports a session makes anyway), fresh process, "
          f"median of {reps}: {statistics.median(vals) * 1e3:.2f} ms")


def exit_cost(reps: int) -> None:
    env = _env()

    def run(mods: list[str]) -> float:
        code = "import sys, time\nimport pytest\n" + "".join(f"import {m}\n" for m in mods)
        code += "sys.stdout.write(repr(time.time()))\nsys.stdout.flush()\n"
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return time.time() - float(p.stdout)

    diffs = []
    for r in range(reps):
        a, b = (run([]), run(MODULES)) if r % 2 == 0 else tuple(reversed((run(MODULES), run([]))))
        diffs.append(b - a)
    print(f"3. interpreter exit, importing {len(MODULES)} greentrack modules (and what they import) vs pytest alone, "
          f"median of {reps} paired differences: {statistics.median(diffs) * 1e3:+.1f} ms")


def start_pieces(reps: int, tmp: Path) -> None:
    rows: dict[str, list[float]] = {}
    for i in range(reps):
        env = dict(_env(), GREENTRACK_DB=str(tmp / f"start{i}.db"))
        out = subprocess.run([sys.executable, "-c", START_PIECES], env=env, capture_output=True, text=True,
                             check=True).stdout
        for k, v in json.loads(out.strip().splitlines()[-1]).items():
            rows.setdefault(k, []).append(v)
    print(f"4. a session's start, in pieces, fresh process with pytest imported, garbage collector off, "
          f"median of {reps}:")
    for k, v in rows.items():
        print(f"   {k:<66} {statistics.median(v) * 1e3:6.2f} ms")


def stop_pieces(phases: int, reps: int, tmp: Path) -> None:
    """Part 9: a session's stop with one phase per test, as a pytest session ends."""
    rows: dict[str, list[float]] = {"s": [], "alive": [], "net": []}
    for i in range(reps):
        env = dict(_env(), GREENTRACK_DB=str(tmp / f"stop{i}.db"), BREAKDOWN_PHASES=str(phases))
        out = subprocess.run([sys.executable, "-c", STOP_PIECES], env=env, capture_output=True, text=True,
                             check=True).stdout
        for k, v in json.loads(out.strip().splitlines()[-1]).items():
            rows[k].append(v)
    print(f"9. a session's stop with {phases} phases (one per test), fresh process, garbage collector off, "
          f"median of {reps}:")
    print(f"   {'time':<66} {statistics.median(rows['s']) * 1e3:6.2f} ms")
    print(f"   {'objects tracked by the collector, more after the stop than before':<66} "
          f"{statistics.median(rows['alive']):+6.0f}")
    print(f"   {'net allocations of tracked objects (what sets off collections)':<66} "
          f"{statistics.median(rows['net']):+6.0f}")


def rewrite_cost(reps: int, tmp: Path) -> None:
    suite = tmp / "suite"
    suite.mkdir()
    (suite / "test_one.py").write_text("def test_one():\n    pass\n")
    (suite / "gt_breakdown_rewrite.py").write_text(REWRITE_PLUGIN)
    dist = suite / "greentrack_wheel_like-0.1.dist-info"  # greentrack/ in a RECORD: pytest marks it
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greentrack-wheel-like\nVersion: 0.1\n")
    (dist / "RECORD").write_text("greentrack/__init__.py,,\n")
    (dist / "entry_points.txt").write_text("[pytest11]\ngreentrack_wheel_like = gt_breakdown_rewrite\n")
    rows: dict[str, list[float]] = {"0": [], "1": []}
    for r in range(reps):
        for unmark in (("0", "1") if r % 2 == 0 else ("1", "0")):
            out = tmp / "rewrite.json"
            env = dict(_env(), BREAKDOWN_OUT=str(out), BREAKDOWN_UNMARK=unmark, BREAKDOWN_MODULES=",".join(MODULES))
            env["PYTHONPATH"] = os.pathsep.join([str(suite), env["PYTHONPATH"]])
            subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_one.py"],
                           cwd=suite, env=env, capture_output=True, check=True)
            got = json.loads(out.read_text())
            if not got["marked"]:
                raise SystemExit("pytest did not mark greentrack for rewriting: nothing to compare")
            rows[unmark].append(got["s"])
    a, b = statistics.median(rows["0"]), statistics.median(rows["1"])
    print(f"5. importing the plugin's {len(MODULES)} modules inside pytest, garbage collector off, median of {reps}:")
    print(f"   {'through pytest assertion rewriting (greentrack marked)':<66} {a * 1e3:6.2f} ms")
    print(f"   {'through Python own loader (mark taken back, as the plugin does)':<66} {b * 1e3:6.2f} ms")


def verify_cost(runs: int, reps: int, tmp: Path) -> None:
    import sqlite3

    sys.path.insert(0, str(ROOT))  # this checkout's store

    from greentrack.store.records import PhaseRow, RunEnd, RunRow
    from greentrack.store.sqlite import CHECKED_TABLES, SQLiteStore

    db = tmp / "grown.db"
    store = SQLiteStore(db)
    t0 = 1_790_000_000.0
    for r in range(runs):
        rid = f"run{r:06d}"
        store.begin_run(RunRow(id=rid, name="suite", started_at=t0 + r * 10, backend="cpu-model",
                               tags={"runner": "pytest"}), [])
        store.finish_run(rid, RunEnd(status="finished", ended_at=t0 + r * 10 + 5), [], [
            PhaseRow(seq=i, name=f"tests/test_gen_{i // 10}.py::test_{i}", started_at=t0 + r * 10 + i * 0.01,
                     ended_at=t0 + r * 10 + i * 0.01 + 0.005, energy_j=0.02, steps=0) for i in range(500)])
    store.close()
    opened, phases = [], []
    for _ in range(reps):
        a = time.perf_counter()
        SQLiteStore(db, verify=True).close()
        opened.append(time.perf_counter() - a)
        con = sqlite3.connect(db)
        a = time.perf_counter()
        con.execute("PRAGMA quick_check([phases])").fetchall()
        phases.append(time.perf_counter() - a)
        con.close()
    print(f"6. a strict start's check of a database holding {runs} pytest runs of 500 tests "
          f"({runs * 500:,} phases), median of {reps}:")
    print(f"   {'open with verify (quick_check of ' + ', '.join(CHECKED_TABLES) + ')':<66} "
          f"{statistics.median(opened) * 1e3:6.2f} ms")
    print(f"   {'quick_check of the phases table (no longer part of it)':<66} "
          f"{statistics.median(phases) * 1e3:6.2f} ms")


EXIT_MARK = """
import gc, json, os, time
import pytest

G = {"on": False, "n": 0, "s": 0.0, "t0": 0.0}


def _gc(phase, info):
    if G["on"] and info["generation"] == 2:
        if phase == "start":
            G["t0"] = time.perf_counter()
        else:
            G["n"] += 1
            G["s"] += time.perf_counter() - G["t0"]


gc.callbacks.append(_gc)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    G["on"] = True
    G["unconfigure"] = time.time()
    G["objects"] = len(gc.get_objects())
"""

EXIT_RUNNER = """
import json, os, sys, time
import pytest
import gt_exit_mark
pytest.main(sys.argv[1:])
G = gt_exit_mark.G
G["main_returned"] = time.time()
G["on"] = False
with open(os.environ["BREAKDOWN_OUT"], "w") as fh:
    json.dump(G, fh)
"""


def end_of_run(tests: int, reps: int, tmp: Path) -> None:
    suite = tmp / "suite"
    suite.mkdir()
    (suite / "test_work.py").write_text(
        "import time\nimport pytest\n\n\n"
        f"@pytest.mark.parametrize('i', range({tests}))\n"
        "def test_work(i):\n    t = time.process_time()\n    while time.process_time() - t < 0.005:\n        pass\n")
    (suite / "gt_exit_mark.py").write_text(EXIT_MARK)
    (suite / "gt_exit_runner.py").write_text(EXIT_RUNNER)
    out = tmp / "exit.json"
    env = dict(_env(), BREAKDOWN_OUT=str(out))
    env["PYTHONPATH"] = os.pathsep.join([str(suite), env["PYTHONPATH"]])
    rows: dict[str, list[tuple[float, float, int, float, int]]] = {"off": [], "on": []}
    for r in range(reps):
        order = [("off", ["-p", "no:greentrack"]), ("on", ["--greentrack"])]
        for key, extra in (order if r % 2 == 0 else order[::-1]):
            db = tmp / f"exit-{r}-{key}.db"
            cmd = [sys.executable, "gt_exit_runner.py", "-q", "-p", "no:cacheprovider", "-p", "gt_exit_mark", *extra,
                   "test_work.py"]
            subprocess.run(cmd, cwd=suite, env=dict(env, GREENTRACK_DB=str(db)), capture_output=True, check=False)
            t_end = time.time()
            g = json.loads(out.read_text())
            rows[key].append((g["main_returned"] - g["unconfigure"], t_end - g["main_returned"], g["n"], g["s"],
                              g["objects"]))
    print(f"7. the end of a pytest run of {tests} tests x 5 ms of CPU, medians of {reps} interleaved runs "
          "(-p no:greentrack / --greentrack / paired difference):")
    labels = ("last unconfigure hook -> pytest.main returns", "pytest.main returns -> process gone",
              "  full garbage collections in pytest's cleanup", "  their time", "  objects at the last unconfigure")
    for i, label in enumerate(labels):
        off = statistics.median(x[i] for x in rows["off"])
        on = statistics.median(x[i] for x in rows["on"])
        diff = statistics.median(b[i] - a[i] for a, b in zip(rows["off"], rows["on"]))
        if i in (0, 1, 3):
            print(f"   {label:48s} {off * 1e3:7.1f} / {on * 1e3:7.1f} ms / {diff * 1e3:+6.1f} ms")
        else:
            print(f"   {label:48s} {off:7g} / {on:7g} / {diff:+g}")


PER_TEST_VARIANT = """
import os
import pytest
from greentrack.pytest_plugin.energy import EnergyPlugin

VARIANT = os.environ.get("GT_VARIANT", "")


def _bare(self, item):
    return (yield)


def _edges_dropped(self, item):
    self._edge()
    res = yield
    self._edge()
    del self.gsession.sources[0]._marks[:]  # the readings are not kept for the series
    return res


def _edges_kept(self, item):
    self._edge()
    res = yield
    self._edge()
    return res


_HOOK = {"bare": _bare, "edges, dropped": _edges_dropped, "edges, kept": _edges_kept}.get(VARIANT)
if _HOOK is not None:
    _HOOK.__name__ = "pytest_runtest_call"
    EnergyPlugin.pytest_runtest_call = pytest.hookimpl(wrapper=True)(_HOOK)
"""


def per_test(tests: int, reps: int, tmp: Path) -> None:
    from bench_pytest_plugin import make_suite  # the cost benchmark's generated suite (this folder)

    suite = tmp / "suite"
    suite.mkdir()
    make_suite(suite, tests)
    (suite / "gt_per_test_variant.py").write_text(PER_TEST_VARIANT)
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(suite), env["PYTHONPATH"]])
    configs = {"-p no:greentrack": (["-p", "no:greentrack"], ""), "call hook bare": (["--greentrack"], "bare"),
               "2 edge reads, readings dropped": (["--greentrack"], "edges, dropped"),
               "2 edge reads, readings kept": (["--greentrack"], "edges, kept"),
               "--greentrack as it is": (["--greentrack"], "")}
    wall: dict[str, list[float]] = {k: [] for k in configs}
    for r in range(reps + 1):  # the first round warms the page cache and the .pyc files; not counted
        order = list(configs.items())
        for label, (extra, variant) in (order if r % 2 == 0 else order[::-1]):
            db = tmp / "per-test.db"
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                                  "gt_per_test_variant", *extra], cwd=suite, capture_output=True, text=True,
                                 env=dict(env, GT_VARIANT=variant, GREENTRACK_DB=str(db)), check=False)
            dt = time.perf_counter() - t0
            if f"{tests} passed" not in res.stdout:
                raise SystemExit(f"part 8, {label}: the run failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            if r:
                wall[label].append(dt)
    base = wall["-p no:greentrack"]
    print(f"8. the per-test cost taken apart: pytest runs of {tests} trivial tests, wall time, medians of {reps} "
          "interleaved rounds (paired difference against -p no:greentrack; per test, over the line above):")
    prev = 0.0
    for label in configs:
        diff = statistics.median(t - b for t, b in zip(wall[label], base))
        step = f"{(diff - prev) / tests * 1e6:+7.1f} us per test" if label != "-p no:greentrack" and prev else ""
        print(f"   {label:34s} {statistics.median(wall[label]) * 1e3:8.1f} ms {diff * 1e3:+8.1f} ms   {step}")
        prev = diff if label != "-p no:greentrack" else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", type=int, default=2000, help="trivial tests in the timed pytest run")
    ap.add_argument("--edge-work-ms", type=float, default=0.0,
                    help="part 1: each test first does this many ms of pure-Python CPU work (default: none)")
    ap.add_argument("--reps", type=int, default=9, help="repetitions of the fresh-process timings")
    ap.add_argument("--runs", type=int, default=200, help="pytest runs of 500 tests in part 6's database")
    ap.add_argument("--exit-tests", type=int, default=500, help="tests of 5 ms in part 7's pytest run")
    ap.add_argument("--per-test-tests", type=int, default=3000, help="trivial tests in part 8's pytest runs")
    ap.add_argument("--stop-phases", type=int, default=500, help="phases (tests) of part 9's session")
    ap.add_argument("--only", type=int, choices=(1, 2, 3, 4, 5, 6, 7, 8, 9), action="append",
                    help="run only these parts (repeatable; e.g. --only 4 in an older checkout)")
    args = ap.parse_args()
    parts = set(args.only or (1, 2, 3, 4, 5, 6, 7, 8, 9))
    print(f"python {sys.version.split()[0]}, greentrack from {ROOT}")
    if 1 in parts:
        with tempfile.TemporaryDirectory(prefix="gt-breakdown-") as tmp:
            edges(args.tests, Path(tmp), args.edge_work_ms)
    if 2 in parts:
        resolve(args.reps)
    if 3 in parts:
        exit_cost(args.reps)
    if 4 in parts:
        with tempfile.TemporaryDirectory(prefix="gt-breakdown-") as tmp:
            start_pieces(args.reps, Path(tmp))
    if 5 in parts:
        with tempfile.TemporaryDirectory(prefix="gt-breakdown-") as tmp:
            rewrite_cost(args.reps, Path(tmp))
    if 6 in parts:
        with tempfile.TemporaryDirectory(prefix="gt-breakdown-") as tmp:
            verify_cost(args.runs, args.reps, Path(tmp))
    if 7 in parts:
        with tempfile.TemporaryDirectory(prefix="gt-breakdown-") as tmp:
            end_of_run(args.exit_tests, args.reps, Path(tmp))
    if 8 in parts:
        with tempfile.TemporaryDirectory(prefix="gt-breakdown-") as tmp:
            per_test(args.per_test_tests, args.reps, Path(tmp))
    if 9 in parts:
        with tempfile.TemporaryDirectory(prefix="gt-breakdown-") as tmp:
            stop_pieces(args.stop_phases, args.reps, Path(tmp))


if __name__ == "__main__":
    main()
