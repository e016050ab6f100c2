"""Each test's share of its call's CPU time on other threads, from ``--greentrack-json`` artifacts.

The figures behind the pytest baseline's threads rule (``THREADED_SHARE`` and ``THREADED_MIN_CPU_S``
in greentrack/pytest_plugin/baseline.py, docs/pytest-ci.md). For each suite among the artifacts
(several runs of one suite are taken together): every test that ran ``--min-share`` (5 %) or more
of its call's process CPU time on threads other than its own in at least one run (greentrack's
sampler thread left out), with the range of its share and of those threads' CPU seconds over the
runs, its median energy and its part of the suite's; then the highest share of the tests whose
other threads stayed under 1 ms in every run, and of those that did not.

    cd /tmp/sdists/boltons-26.2.0 && python -m pytest -q -p no:cacheprovider --greentrack \\
        --greentrack-json /tmp/bolt1.json tests
    python benchmarks/thread_shares.py /tmp/bolt1.json [more runs, more suites ...]

The artifacts of ``benchmarks/bench_pytest_ci.py`` (``base*.json``, ``cmp*.json`` in its work
folder) serve as they are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+", type=Path, help="--greentrack-json files")
    ap.add_argument("--min-share", type=float, default=0.05, help="list the tests at or above this share in a run")
    args = ap.parse_args(argv)
    suites: dict[str, list[dict]] = {}
    for path in args.artifacts:
        doc = json.loads(path.read_text())
        suites.setdefault(doc["suite"], []).append(doc)
    for suite, docs in suites.items():
        per: dict[str, list[tuple[float, float, float, float]]] = {}  # share, CPU s, energy, part of the suite
        for doc in docs:
            tests = [t for t in doc["tests"] if t.get("energy_j") is not None and t.get("other_threads") is not None]
            total = sum(t["energy_j"] for t in tests) or 1.0
            for t in tests:
                per.setdefault(t["nodeid"], []).append((t["other_threads"], t["other_threads_cpu_s"], t["energy_j"],
                                                        t["energy_j"] / total))
        print(f"{suite}: {len(docs)} run(s), {len(per)} tests; the tests with {args.min_share:.2f} or more of "
              "their CPU on other threads in a run")
        print("   share min-max   other threads, ms   median energy  of the suite  test")
        rows = sorted(per.items(), key=lambda kv: -max(v[0] for v in kv[1]))
        for nodeid, v in rows:
            shares, cpu = [x[0] for x in v], [x[1] * 1e3 for x in v]
            if max(shares) < args.min_share:
                break
            energy, part = statistics.median(x[2] for x in v), statistics.median(x[3] for x in v)
            print(f"   {min(shares):.2f}-{max(shares):.2f}     {min(cpu):7.2f}-{max(cpu):<8.2f}  "
                  f"{energy * 1e3:9.1f} mJ  {part * 100:7.2f} %    {nodeid}")
        small = [max(x[0] for x in v) for v in per.values() if max(x[1] for x in v) < 0.001]
        big = [(min(x[0] for x in v if x[1] >= 0.001), n) for n, v in per.items() if max(x[1] for x in v) >= 0.001]
        print(f"   tests whose other threads used under 1 ms in every run: {len(small)}, highest share "
              f"{max(small, default=0.0):.2f}")
        print(f"   tests whose other threads used 1 ms or more in a run: {len(big)}, lowest share in such a run "
              + (f"{min(big)[0]:.2f} ({min(big)[1]})" if big else "none"))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
