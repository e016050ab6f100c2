"""Each test's share of its call's CPU time on other threads, from ``--greentrack-json`` artifacts.

The figures behind the pytest baseline's threads rule (``THREADED_SHARE`` in
greentrack/pytest_plugin/baseline.py, docs/pytest-ci.md): for each artifact, the tests whose call
ran 5 % or more of the process's CPU time on threads other than the test's own (greentrack's
sampler thread left out), with those threads' CPU seconds, the test's energy and its part of the
suite's; then the highest share among the tests whose other threads used 1 ms or more and stayed
under the threshold.

    cd /tmp/sdists/boltons-26.2.0 && python -m pytest -q -p no:cacheprovider --greentrack \\
        --greentrack-json /tmp/bolt1.json tests
    python benchmarks/thread_shares.py /tmp/bolt1.json [more.json ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+", type=Path, help="--greentrack-json files")
    ap.add_argument("--min-share", type=float, default=0.05, help="list the tests at or above this share")
    args = ap.parse_args(argv)
    for path in args.artifacts:
        doc = json.loads(path.read_text())
        tests = [t for t in doc["tests"] if t.get("energy_j") is not None and t.get("other_threads") is not None]
        total = sum(t["energy_j"] for t in tests) or 1.0
        rows = sorted(tests, key=lambda t: (-t["other_threads"], -t["energy_j"]))
        print(f"{path} (suite {doc['suite']}, {len(tests)} tests, {total:.3f} J in the calls): "
              f"tests with {args.min_share:.2f} or more of their CPU on other threads")
        print("   share   other threads   energy     of the suite  test")
        for t in rows:
            if t["other_threads"] < args.min_share:
                break
            print(f"   {t['other_threads']:.2f}  {t['other_threads_cpu_s'] * 1e3:10.2f} ms  "
                  f"{t['energy_j'] * 1e3:9.1f} mJ  {t['energy_j'] / total * 100:6.2f} %    {t['nodeid']}")
        below = [t for t in rows if t["other_threads_cpu_s"] >= 0.001 and t["other_threads"] < 0.2]
        print("   highest share below 0.20 with 1 ms or more on other threads: "
              + (f"{below[0]['other_threads']:.2f} ({below[0]['nodeid']})" if below else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
