"""Soak: memory and stop() time of a session after millions of steps (issue 10).

    python benchmarks/bench_soak.py                       # 1 M steps (a laptop: ~10 s)
    python benchmarks/bench_soak.py --steps 1e6,1e7,5e7   # the issue's series (50 M: ~1 min)
    python benchmarks/bench_soak.py --against /path/to/old/checkout --steps 1e6,1e7

Each count runs in a fresh interpreter: a session on the mock GPU (stored in a temporary
database, as a real run is), a tight loop of ``step(samples=32)``, then ``stop()``. Printed per
run: the loop's cost per step (wall clock, and CPU time of the whole process: the sampler
thread's folding included), the resident memory (VmRSS) before the loop, at each tenth of it
and at its peak (VmHWM), and how long ``stop()`` took. Targets: RSS flat beyond the power
series (it must not grow with the number of steps), ``stop()`` under 1 s.

``--against PATH`` runs the same child with ``PYTHONPATH=PATH`` (another checkout, such as
the commit before the change) interleaved with this one, so the two are measured side by side;
``--max-against`` caps its step counts (the old code kept ~100 bytes per step: 50 M steps
needed 5 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys, time, threading
t_import = time.perf_counter()
import greentrack

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0  # MiB
    return float("nan")

n = int(sys.argv[1])
marks = []
with greentrack.session("soak", region="FR") as s:
    step = s.step
    time.sleep(1.2)  # the sampler has polled: numpy and the series are in memory before the loop
    rss0 = status("VmRSS")
    tenth = max(1, n // 10)
    w0, c0 = time.perf_counter(), time.process_time()
    done = 0
    while done < n:
        for _ in range(min(tenth, n - done)):
            step(samples=32)
        done += min(tenth, n - done)
        marks.append([done, round(status("VmRSS"), 1)])
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    t_stop = time.perf_counter()
r = s.result
stop_s = time.perf_counter() - t_stop
print(json.dumps({"module": greentrack.__file__, "steps": n, "wall_ns": wall / n * 1e9, "cpu_ns": cpu / n * 1e9,
                  "rss0": rss0, "rss": marks, "rss_end": status("VmRSS"), "hwm": status("VmHWM"), "stop_s": stop_s,
                  "result_steps": r.steps, "p95_j": (r.step_stats or {}).get("p95_j"), "duration_s": r.duration_s}))
"""


def run_child(n: int, path: Path) -> dict:
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PYTHONPATH=str(path), GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="load:70,600",
                   GREENTRACK_DB=str(Path(d) / "soak.db"))
        out = subprocess.run([sys.executable, "-c", CHILD, str(n)], env=env, capture_output=True, text=True,
                             timeout=3600, cwd=d)  # not the checkout: '' on sys.path would import it first
    if out.returncode != 0:
        raise SystemExit(f"child failed ({path}, {n} steps): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(label: str, r: dict) -> None:
    series = " ".join(f"{int(k / 1e6) if k >= 1e6 else k / 1e6:g}M:{v:.0f}" for k, v in r["rss"])
    print(f"{label} ({Path(r['module']).parent.parent}): {r['steps']:,} steps: loop {r['wall_ns']:.0f} ns/step wall, "
          f"{r['cpu_ns']:.0f} ns/step CPU (both threads); RSS before loop {r['rss0']:.0f} MiB, during [{series}] MiB, "
          f"after stop {r['rss_end']:.0f} MiB, peak {r['hwm']:.0f} MiB; stop() {r['stop_s'] * 1000:.0f} ms "
          f"(run {r['duration_s']:.1f} s, {r['result_steps']:,} steps counted)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1e6", help="comma-separated step counts (default 1e6)")
    ap.add_argument("--against", type=Path, default=None, help="another checkout to measure side by side")
    ap.add_argument("--max-against", type=float, default=1e7, help="largest step count run with --against")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions (interleaved); medians are printed")
    a = ap.parse_args()
    counts = [int(float(x)) for x in a.steps.split(",") if x.strip()]
    for n in counts:
        mine, theirs = [], []
        for _ in range(a.repeat):
            mine.append(run_child(n, ROOT))
            if a.against is not None and n <= a.max_against:
                theirs.append(run_child(n, a.against))
        for label, rs in (("this checkout", mine), (f"against {a.against}", theirs)):
            if not rs:
                continue
            rs.sort(key=lambda r: r["stop_s"])
            show(label + (f" (median of {len(rs)})" if len(rs) > 1 else ""), rs[len(rs) // 2])
        if theirs:
            m = sorted(mine, key=lambda r: r["hwm"])[len(mine) // 2]
            t = sorted(theirs, key=lambda r: r["hwm"])[len(theirs) // 2]
            print(f"  ratio against/this: peak RSS {t['hwm'] / m['hwm']:.2f}x, stop() {t['stop_s'] / m['stop_s']:.1f}x,"
                  f" CPU per step {t['cpu_ns'] / m['cpu_ns']:.2f}x")


if __name__ == "__main__":
    main()
