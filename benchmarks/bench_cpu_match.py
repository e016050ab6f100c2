"""How long the CPU model takes to find a brand string in codecarbon's CPU table.

Every session on a machine without measured power looks its CPU up once (``match_cpu``), and the
pytest plugin does so at the start of every enabled run. A VM's generic name is the slow case
("Intel Xeon" starts 1,319 of codecarbon 3.3.2's names). For each brand string, in a fresh process
per checkout (the table read and lower-cased once first, as a session does), prints the first
call and the best of ``--reps`` calls, and the entry found; with ``--against REF`` the same for
that commit (a temporary git worktree), the processes interleaved.

    python benchmarks/bench_cpu_match.py
    python benchmarks/bench_cpu_match.py --against 292f504 --rounds 5
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

ROOT = Path(__file__).resolve().parent.parent

BRANDS = [
    "Intel(R) Xeon(R) CPU @ 2.20GHz",  # Google Cloud's generic name (many CI runners there)
    "Intel(R) Xeon(R) Processor",  # another VM's generic name
    "AMD EPYC",  # this project's development VM
    "AMD EPYC 7763 64-Core Processor",  # GitHub's hosted runners
    "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz",  # Azure's (GitHub's larger runners)
    "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz",  # a desktop
    "Quantum Abacus 9000",  # in no table
]

PROBE = """
import json, sys, time
from greentrack.measure.sources.cpu_model import codecarbon_cpu_table, match_cpu
table, _ = codecarbon_cpu_table()
table.low
out = {}
for brand in json.loads(sys.argv[1]):
    times = []
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter()
        hit = match_cpu(brand, table)
        times.append(time.perf_counter() - t)
    out[brand] = [times[0], min(times), hit]
print(json.dumps(out))
"""


def probe(checkout: Path, reps: int) -> dict[str, list]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")])))
    # run in the checkout: ``python -c`` puts the working directory first on sys.path
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(BRANDS), str(reps)], env=env, cwd=checkout,
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="calls per brand in one process (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per checkout, interleaved (default 3)")
    ap.add_argument("--against", metavar="REF", help="also time the lookup of this git commit")
    args = ap.parse_args()
    checkouts = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory(prefix="gt-match-") as tmp:
        if args.against:
            other = Path(tmp) / "against"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.against],
                           check=True)
            checkouts[f"at {args.against}"] = other
        try:
            runs: dict[str, list[dict[str, list]]] = {k: [] for k in checkouts}
            for _ in range(args.rounds):
                for label, path in checkouts.items():
                    runs[label].append(probe(path, args.reps))
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / "against")],
                               check=False)
    print(f"match_cpu against codecarbon's CPU table, python {sys.version.split()[0]}; per brand and checkout: "
          f"median over {args.rounds} processes of the first call and of the best of {args.reps} calls")
    labels = list(checkouts)
    print(f"{'brand':<48}" + "".join(f" {label + ': first / best':>34}" for label in labels) + "   entry")
    for brand in BRANDS:
        cells = []
        for label in labels:
            first = statistics.median(r[brand][0] for r in runs[label]) * 1000
            best = statistics.median(r[brand][1] for r in runs[label]) * 1000
            cells.append(f" {first:>19.2f} / {best:6.2f} ms")
        hits = {runs[label][0][brand][2] for label in labels}
        entry = " / ".join(str(h) for h in hits) if len(hits) > 1 else str(hits.pop())
        print(f"{brand:<48}" + "".join(f"{c:>34}" for c in cells) + f"   {entry}")


if __name__ == "__main__":
    main()
