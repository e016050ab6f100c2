"""Cost of one live-figures read (greentrack.live(session).read()) on the training thread.

    PYTHONPATH=. python3 benchmarks/bench_live.py [--gpus 1] [--reads 20000] [--reps 7]

A session on the mock GPU (the sampler thread polling as it does on a real GPU), a meter read
repeatedly; prints the median and the spread over interleaved repetitions of: a read, a read plus
its ``metrics()`` dict, and ``session.step()`` for scale. Target: under 50 µs a read.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit

import greentrack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    import os

    os.environ["GREENTRACK_MOCK_GPUS"] = str(args.gpus)
    with greentrack.session("bench-live", backend="mock", region="FR", store=False) as s:
        meter = greentrack.live(s)
        for _ in range(1000):
            s.step(samples=8, tokens=2048)
        time.sleep(0.5)  # the sampler has polled: every device has a newest sample
        cases = {"read": meter.read, "read+metrics": lambda: meter.read().metrics(),
                 "session.step": lambda: s.step(samples=8, tokens=2048)}
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.reps):  # interleaved
            for k, fn in cases.items():
                times[k].append(timeit.timeit(fn, number=args.reads) / args.reads * 1e6)
    print(f"live figures, {args.gpus} mock GPU(s), {args.reads} calls x {args.reps} interleaved repetitions (µs/call)")
    for k, v in times.items():
        print(f"  {k:14s} median {statistics.median(v):7.2f}   min {min(v):7.2f}   max {max(v):7.2f}")


if __name__ == "__main__":
    main()
