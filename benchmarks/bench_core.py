"""Core performance figures (issue: core). Prints one line per figure.

    python benchmarks/bench_core.py            # all figures
    python benchmarks/bench_core.py --quick    # fewer repetitions

Figures, each the median of interleaved repetitions measured side by side in this run:
- `import greentrack` over bare Python (fresh interpreters), and which heavy modules it pulls in;
  peers (codecarbon, zeus) the same way when installed;
- cost of `session.step()` (ns per call, timeit) and the whole process's CPU per step in a 2 M-step loop
  (the sampler thread's folding of the marks included); ``--only step --against PATH --rounds 5``
  measures another checkout interleaved;
- session start + stop on the mock backend, first in a process (cold) and later (warm);
  CodeCarbon's OfflineEmissionsTracker start + stop the same way when installed;
- stored time series per GPU-hour at 10 Hz (a real session's sampler path, fed a noisy trace).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def _time_cmd(code: str, env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run([PY, "-c", code], check=True, env=env, capture_output=True)
    return time.perf_counter() - t


def import_times(reps: int) -> None:
    cands = {"bare": "pass", "greentrack": "import greentrack"}
    for peer, stmt in (("codecarbon", "import codecarbon"), ("zeus", "from zeus.monitor import ZeusMonitor")):
        try:
            subprocess.run([PY, "-c", stmt], check=True, capture_output=True, timeout=120)
            cands[peer] = stmt
        except Exception:
            print(f"import {peer}: not installed here, skipped")
    res: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(reps):
        for k, stmt in cands.items():  # interleaved
            res[k].append(_time_cmd(stmt))
    bare = statistics.median(res["bare"])
    for k, v in res.items():
        if k != "bare":
            print(f"import {k}: {1000 * (statistics.median(v) - bare):.1f} ms over bare Python "
                  f"(median of {reps}, bare = {1000 * bare:.1f} ms)")
    out = subprocess.run([PY, "-c", "import sys, greentrack; print(' '.join(m for m in ('pandas','numpy',"
                          "'pynvml','codecarbon','sqlite_utils','click','pluggy') if m in sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    print(f"heavy modules loaded by `import greentrack`: {out or 'none'}")


STEP_COST = """
import os, statistics, sys, time, timeit
import greentrack
reps, n = int(sys.argv[1]), 200_000
with greentrack.session("bench-step", store=False) as s:
    times = [timeit.timeit(lambda: s.step(), number=n) / n for _ in range(reps)]
    times_args = [timeit.timeit(lambda: s.step(samples=32, tokens=4096), number=n) / n for _ in range(reps)]
    empty = [timeit.timeit(lambda: None, number=n) / n for _ in range(reps)]
    step = s.step
    c, m = time.process_time(), 2_000_000
    for _ in range(m):
        step(samples=32)
    cpu = (time.process_time() - c) / m
print(statistics.median(times), statistics.median(times_args), statistics.median(empty), cpu)
"""


def step_cost(reps: int, against: str | None = None, rounds: int = 1) -> None:
    """``session.step()`` per call (timeit, wall clock) and the whole process's CPU per step over a
    2 M-step loop (the sampler thread's folding of the marks included), in a fresh interpreter per
    checkout; with *against*, the other checkout is measured interleaved, *rounds* times each."""
    paths = {"this checkout": str(Path(__file__).resolve().parent.parent)}
    if against:
        paths["against " + against] = against
    res: dict[str, list[list[float]]] = {k: [] for k in paths}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(rounds):
            for label, path in paths.items():  # interleaved
                env = dict(os.environ, PYTHONPATH=path, GREENTRACK_BACKEND="mock")
                out = subprocess.run([PY, "-c", STEP_COST, str(reps)], env=env, cwd=d, capture_output=True,
                                     text=True, check=True).stdout.split()
                res[label].append([float(x) for x in out])
    for label, rows in res.items():
        plain, args, empty, cpu = (statistics.median(r[i] for r in rows) for i in range(4))
        print(f"session.step() [{label}]: {1e9 * plain:.0f} ns per call; with samples/tokens {1e9 * args:.0f} ns "
              f"(a bare lambda call costs {1e9 * empty:.0f} ns); whole-process CPU per step(samples=32) in a "
              f"2 M-step loop, folding included: {1e9 * cpu:.0f} ns (median of {len(rows)})")
    if against:
        a, b = (statistics.median(r[0] for r in rows) for rows in res.values())
        ca, cb = (statistics.median(r[3] for r in rows) for rows in res.values())
        print(f"ratio this/against: step() {a / b:.2f}x, CPU per step {ca / cb:.2f}x")


START_STOP = """
import os, time, statistics, sys
t = time.perf_counter()
import greentrack
s = greentrack.session("cold", exact_edges=False); s.start(); s.stop()
cold = time.perf_counter() - t
warm, exact = [], []
for i in range(int(sys.argv[1])):
    t = time.perf_counter(); s = greentrack.session("warm", exact_edges=False); s.start(); s.stop()
    warm.append(time.perf_counter() - t)
    t = time.perf_counter(); s = greentrack.session("exact"); s.start(); s.stop(); exact.append(time.perf_counter() - t)
print(cold, statistics.median(warm), statistics.median(exact))
"""

CC_START_STOP = """
import time, statistics, sys, logging
logging.disable(logging.CRITICAL)
t = time.perf_counter()
from codecarbon import OfflineEmissionsTracker
tr = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, log_level="error"); tr.start(); tr.stop()
cold = time.perf_counter() - t
warm = []
for i in range(int(sys.argv[1])):
    t = time.perf_counter()
    tr = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, log_level="error"); tr.start(); tr.stop()
    warm.append(time.perf_counter() - t)
print(cold, statistics.median(warm))
"""


def start_stop(reps: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, GREENTRACK_BACKEND="mock", GREENTRACK_DB=str(Path(d) / "b.db"))
        gt_cold, gt_warm, gt_exact, cc_cold, cc_warm = [], [], [], [], []
        for _ in range(reps):
            a, b, c = subprocess.run([PY, "-c", START_STOP, "5"], env=env, capture_output=True, text=True,
                                     check=True).stdout.split()
            gt_cold.append(float(a))
            gt_warm.append(float(b))
            gt_exact.append(float(c))
            try:
                r = subprocess.run([PY, "-c", CC_START_STOP, "2"], env=env, capture_output=True, text=True,
                                   timeout=300)
                a, b = r.stdout.split()[-2:]
                cc_cold.append(float(a))
                cc_warm.append(float(b))
            except Exception:
                pass
    print(f"greentrack session start+stop (mock, stored): first in process {1000 * statistics.median(gt_cold):.1f} ms "
          f"(imports included), then {1000 * statistics.median(gt_warm):.1f} ms (median of {reps} processes); "
          f"with the default exact edges of a short run (stop waits for the counter's next refresh) "
          f"{1000 * statistics.median(gt_exact):.1f} ms")
    if cc_cold:
        print(f"codecarbon OfflineEmissionsTracker start+stop: first {1000 * statistics.median(cc_cold):.0f} ms, "
              f"then {1000 * statistics.median(cc_warm):.0f} ms")
        print(f"ratio codecarbon/greentrack: first {statistics.median(cc_cold) / statistics.median(gt_cold):.1f}x, "
              f"then {statistics.median(cc_warm) / statistics.median(gt_warm):.1f}x")
    else:
        print("codecarbon start+stop: not measured (not installed or failed)")


def storage() -> None:
    """A real session's sampler + store path fed a noisy 50 Hz trace: stored bytes per GPU-hour at 10 Hz."""
    import random

    from greentrack.measure.sampler import Sampler
    from greentrack.measure.sources.mock import MockSource
    from greentrack.store.records import RunEnd, RunRow, SeriesChunk
    from greentrack.store.sqlite import Store

    rnd = random.Random(1)
    walk = {"p": 400.0}
    clock = {"t": 1_700_000_000.0}

    def power(t: float, active: bool) -> float:
        walk["p"] = min(700.0, max(80.0, walk["p"] + rnd.gauss(0, 6)))
        return walk["p"]

    with tempfile.TemporaryDirectory() as d:
        st = Store(Path(d) / "s.db")
        src = MockSource(trace="constant:1", clock=lambda: clock["t"])
        src.gpus[0].power = power
        t0 = clock["t"]
        st.begin_run(RunRow(id="r", name="storage", started_at=t0), [])

        def flush(chunks: list, states: list) -> None:
            st.progress("r", 0.0, [], [SeriesChunk.encode(k, seq, t, p, t0) for k, seq, _t0, t, p in chunks if t])

        sampler = Sampler([src], 2.0, flush)
        sampler.read_counters(first=True)
        hours = 0.25
        while clock["t"] - t0 < hours * 3600:  # virtual clock: poll every 1 s, flush every 2 s
            clock["t"] += 1.0
            sampler.poll(src)
            if int(clock["t"] - t0) % 2 == 0:
                sampler.flush()
        sampler.flush(final=True)
        st.finish_run("r", RunEnd(status="finished", ended_at=clock["t"]), [], [])
        data = st.conn.execute("SELECT sum(length(data)), sum(n), count(*) FROM series").fetchone()
        st.close()
        size = os.path.getsize(Path(d) / "s.db")
    per_hour = data[0] / hours
    print(f"stored series: {per_hour / 1000:.1f} KB per GPU-hour at 10 Hz, a noisy 80-700 W trace through the "
          f"sampler and store ({data[1]} points in {hours} h, {data[2]} chunk after compaction; whole database "
          f"file {size / 1000:.0f} KB, schema and indexes included)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["import", "step", "start", "storage"], default=None, help="one figure only")
    ap.add_argument("--against", default=None, help="step: another checkout measured interleaved (PYTHONPATH)")
    ap.add_argument("--rounds", type=int, default=1, help="step: interleaved rounds per checkout")
    a = ap.parse_args()
    reps = 5 if a.quick else 15
    if a.only in (None, "import"):
        import_times(reps)
    if a.only in (None, "step"):
        step_cost(5, a.against, a.rounds)
    if a.only in (None, "start"):
        start_stop(3 if a.quick else 7)
    if a.only in (None, "storage"):
        storage()


if __name__ == "__main__":
    main()
