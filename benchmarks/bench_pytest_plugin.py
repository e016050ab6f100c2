"""What the installed greentrack pytest plugin costs a pytest run.

Runs a small generated suite in fresh pytest processes, interleaving three configurations
(``-p no:greentrack``, installed but idle, and optionally enabled on the mock backend), and
prints the median wall time of each and the median of the paired differences against
``-p no:greentrack``. The target is < 20 ms for installed-but-idle.

    python benchmarks/bench_pytest_plugin.py               # 30 rounds, 50 tests
    python benchmarks/bench_pytest_plugin.py --rounds 60 --tests 200 --enabled
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


def make_suite(root: Path, n_tests: int) -> None:
    per_file = 10
    for f in range(0, n_tests, per_file):
        body = "\n\n".join(f"def test_{i}():\n    assert {i} + 1 == {i + 1}" for i in range(f, min(f + per_file, n_tests)))
        (root / f"test_gen_{f // per_file}.py").write_text(body + "\n")


def run_once(root: Path, extra: list[str], env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, str(root)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(extra)}):\n{proc.stdout[-2000:]}")
    return dt


def import_cost_ms(env: dict[str, str], reps: int = 10) -> float:
    """Median cumulative ``-X importtime`` of ``greentrack.pytest_plugin`` (pytest already loaded)."""
    vals = []
    for _ in range(reps):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import pytest, greentrack.pytest_plugin"],
                              env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, check=True)
        for line in proc.stderr.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == "greentrack.pytest_plugin":
                vals.append(int(parts[1]) / 1000)
    return statistics.median(vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="interleaved repetitions of each configuration")
    ap.add_argument("--tests", type=int, default=50, help="tests in the generated suite")
    ap.add_argument("--enabled", action="store_true", help="also time --greentrack on the mock backend")
    args = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREENTRACK_", "PYTEST_"))}
    with tempfile.TemporaryDirectory(prefix="gt-bench-") as tmp:
        root = Path(tmp) / "suite"
        root.mkdir()
        make_suite(root, args.tests)
        env["GREENTRACK_DB"] = str(Path(tmp) / "bench.db")
        configs = {"-p no:greentrack": ["-p", "no:greentrack"], "installed, idle": []}
        if args.enabled:
            configs["--greentrack (mock)"] = ["--greentrack"]
        times: dict[str, list[float]] = {k: [] for k in configs}
        run_env = dict(env, GREENTRACK_BACKEND="mock")
        for extra in configs.values():  # warm-up: page cache, .pyc files
            run_once(root, extra, run_env)
        for r in range(args.rounds):
            order = list(configs.items())
            if r % 2:
                order.reverse()
            for label, extra in order:
                times[label].append(run_once(root, extra, run_env))

        imp = import_cost_ms(env)

    base = times["-p no:greentrack"]
    print(f"pytest {args.tests} tests, {args.rounds} interleaved rounds, python {sys.version.split()[0]}")
    print(f"{'configuration':<22} {'median':>9} {'min':>9} {'paired median diff':>19}")
    for label, ts in times.items():
        diff = statistics.median(t - b for t, b in zip(ts, base))
        print(f"{label:<22} {statistics.median(ts) * 1000:8.1f}ms {min(ts) * 1000:8.1f}ms {diff * 1000:+18.1f}ms")
    print(f"import greentrack.pytest_plugin (with greentrack/__init__), median of 10: {imp:.2f}ms")


if __name__ == "__main__":
    main()
