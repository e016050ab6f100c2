"""Cost of the live figures (``Session.snapshot()``, what the status line and a logger read) and of the live
status line itself on a training loop.

    python benchmarks/bench_progress.py [--calls 2000] [--reps 7]

Prints the median microseconds per ``snapshot()`` call over interleaved repetitions, and the ratio of
``step()`` loop time with ``progress=True`` against without (run it in a terminal: the line is off
without one, and the ratio is then ~1 by construction). Runs on the mock backend: no GPU needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--steps", type=int, default=200_000)
    a = ap.parse_args()
    os.environ.setdefault("GREENTRACK_BACKEND", "mock")
    os.environ.setdefault("GREENTRACK_DB", os.path.join(tempfile.mkdtemp(prefix="greentrack-bench-"), "b.db"))
    import greentrack

    s = greentrack.Session("bench-live", region="FR").start()
    time.sleep(1.2)  # a first poll of the sample buffer
    per_call = []
    for _ in range(a.reps):
        t = time.perf_counter()
        for _ in range(a.calls):
            s.snapshot()
        per_call.append((time.perf_counter() - t) / a.calls * 1e6)
    s.stop()
    print(f"Session.snapshot(): median {statistics.median(per_call):.1f} us per call "
          f"({a.reps} reps x {a.calls} calls; min {min(per_call):.1f}, max {max(per_call):.1f})")

    def loop(progress: bool) -> float:
        with greentrack.session("bench-loop", region="FR", progress=progress, store=False) as s:
            t = time.perf_counter()
            for _ in range(a.steps):
                s.step()
            return time.perf_counter() - t

    on, off = [], []
    for _ in range(a.reps):  # interleaved, so drift hits both sides alike
        off.append(loop(False))
        on.append(loop(True))
    tty = sys.stderr.isatty()
    ratio = statistics.median(on) / statistics.median(off)
    print(f"step() loop of {a.steps:,} steps: progress=True / off = {ratio:.3f} "
          f"(medians {statistics.median(on) * 1e3:.1f} ms / {statistics.median(off) * 1e3:.1f} ms; "
          f"stderr {'is' if tty else 'is not'} a terminal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
