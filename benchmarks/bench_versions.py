"""The core figures of this tree side by side with another commit (default: HEAD~1).

    python benchmarks/bench_versions.py                 # this tree against HEAD~1
    python benchmarks/bench_versions.py --against 049f2be --reps 15

Each repetition runs, in fresh interpreters and interleaved (this tree, then the other, then
the other way round), three measurements: ``import greentrack`` (timed inside the fresh
interpreter), ``session.step()`` (ns per call, timeit in the child) and session
start + stop on the mock backend (ms, second session of the process). Prints medians and the
ratio this/other: the figures are noisy on a shared machine, the ratio of interleaved medians
much less so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import time
t0 = time.perf_counter()
import greentrack
import_ms = (time.perf_counter() - t0) * 1e3
import json, os, sys, tempfile, timeit
os.environ["GREENTRACK_BACKEND"] = "mock"
db = os.path.join(tempfile.mkdtemp(), "b.db")
s = greentrack.Session("bench", db=db, exact_edges=False)
s.start()
n = 200_000
step = timeit.timeit(lambda: s.step(), number=n) / n
s.stop()
times = []
for _ in range(3):
    t = time.perf_counter()
    with greentrack.session("ss", db=db, exact_edges=False):
        pass
    times.append(time.perf_counter() - t)
print(json.dumps({"import_ms": import_ms, "step_ns": step * 1e9, "start_stop_ms": sorted(times)[1] * 1e3,
                  "where": os.path.dirname(greentrack.__file__)}))
"""


def _run(tree: Path, code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree), GREENTRACK_DB=os.path.join(tempfile.mkdtemp(), "x.db"))
    out = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir())
    return out.stdout


def measure(tree: Path) -> dict[str, float]:
    out = _run(tree, CHILD)
    rec = json.loads(out.strip().splitlines()[-1])
    if not rec["where"].startswith(str(tree)):
        raise SystemExit(f"measured {rec['where']}, not {tree}: is greentrack importable from PYTHONPATH?")
    return {"import_ms": rec["import_ms"], "step_ns": rec["step_ns"], "start_stop_ms": rec["start_stop_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="HEAD~1", help="commit to compare with (default HEAD~1)")
    ap.add_argument("--reps", type=int, default=9)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), a.against], check=True)
        try:
            rev = subprocess.run(["git", "-C", str(other), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, check=True).stdout.strip()
            res: dict[str, dict[str, list[float]]] = {"this": {}, "other": {}}
            for i in range(a.reps):
                order = [("this", ROOT), ("other", other)] if i % 2 == 0 else [("other", other), ("this", ROOT)]
                for label, tree in order:
                    for k, v in measure(tree).items():
                        res[label].setdefault(k, []).append(v)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    print(f"this tree vs {a.against} ({rev}), medians of {a.reps} interleaved repetitions")
    print(f"{'figure':<18} {'this':>10} {'other':>10} {'this/other':>11}")
    for k, unit in (("import_ms", "ms"), ("step_ns", "ns"), ("start_stop_ms", "ms")):
        m1, m2 = statistics.median(res["this"][k]), statistics.median(res["other"][k])
        print(f"{k:<18} {m1:>8.2f}{unit} {m2:>8.2f}{unit} {m1 / m2:>11.3f}")


if __name__ == "__main__":
    main()
