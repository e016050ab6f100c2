"""``Accumulator.add`` and ``Accumulator.add_mean`` per sample: this checkout against another commit.

Each of the two methods is fed 1e6 samples at 1 kHz (a power that wobbles, so the swinging door
archives a point now and then); the two versions of ``greentrack/measure/energy.py`` run in
interleaved repetitions and the script prints the medians in ns per call and their ratio.

    python benchmarks/bench_accumulator.py --against e665c9e [--reps 11]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
N = 1_000_000


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, metavar="REF", help="the other commit")
    ap.add_argument("--reps", type=int, default=11, help="interleaved repetitions")
    args = ap.parse_args()
    old_src = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.against}:greentrack/measure/energy.py"],
                             capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory(prefix="gt-acc-") as tmp:
        old_path = Path(tmp) / "energy_old.py"
        old_path.write_text(old_src)
        versions = {"this checkout": load(ROOT / "greentrack" / "measure" / "energy.py", "energy_new"),
                    args.against: load(old_path, "energy_old")}
        ts = [i * 0.001 for i in range(N + 1)]
        ps = [300.0 + (i % 97) * 0.5 + (50.0 if (i // 500) % 2 else 0.0) for i in range(N + 1)]

        def run(mod: ModuleType, meth: str) -> float:
            acc = mod.Accumulator()
            f = getattr(acc, meth)
            f(ts[0], ps[0])

            def body() -> None:
                for t, p in zip(ts[1:], ps[1:]):
                    f(t, p)

            return timeit.timeit(body, number=1) / N * 1e9

        print(f"python {sys.version.split()[0]}; {N:,} samples per call series, {args.reps} interleaved repetitions")
        for meth in ("add", "add_mean"):
            times: dict[str, list[float]] = {k: [] for k in versions}
            for r in range(args.reps):
                order = list(versions.items())
                for label, mod in (order if r % 2 == 0 else order[::-1]):
                    times[label].append(run(mod, meth))
            new, old = (statistics.median(times[k]) for k in versions)
            print(f"  {meth:9s} this checkout {new:6.1f} ns, {args.against} {old:6.1f} ns: ratio {new / old:.3f}")


if __name__ == "__main__":
    main()
