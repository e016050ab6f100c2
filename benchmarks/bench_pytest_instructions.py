"""The enabled pytest plugin's cost in instructions executed: a measure the neighbours cannot move.

On a shared machine the wall and CPU time of identical pytest runs move by tens of milliseconds
(other tenants, the page cache, the host), more than the plugin's own cost. The number of
instructions the pytest process executes does not: this script counts them with valgrind's
cachegrind (``--cache-sim=no``: instructions only, the program runs about 20 times slower) for
pytest runs of generated suites of trivial tests, with ``-p no:greentrack``, with ``--greentrack``
(the CPU model, as on a CPU-only CI runner), and with ``--greentrack`` at another commit
(``--against``), each ``--reps`` times (medians), at two suite sizes. It prints each
configuration's instructions, the difference against ``-p no:greentrack`` and, from the two
sizes, that difference as a fixed part and a part per test.

Instructions are not time: a test's code running with cold caches after greentrack's, and Python's
garbage collections, cost time without adding many instructions, and a system call counts as the
few instructions that enter the kernel. The wall-time benchmark (``bench_pytest_plugin.py``) says
what a run costs; this one says whether a change made greentrack's own work smaller.

Python's full garbage collections do add instructions, and where one falls depends on how many
objects have piled up: a change that leaves fewer objects behind can move one into or out of a
run, a jump of several million instructions that is not the change's own work. ``--gc-off``
turns the collector off in every configuration (a plugin loaded first that calls ``gc.disable()``),
so that the counts compare greentrack's own work alone.

    python benchmarks/bench_pytest_instructions.py [--tests 100 500] [--reps 2] [--against 81260b4] [--gc-off]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pytest_plugin import ROOT, make_suite, wheel_like  # noqa: E402


def instructions(root: Path, extra: list[str], env: dict[str, str], out: Path) -> int:
    """Instructions executed by one pytest run of the suite in *root* (the interpreter itself, not a shim)."""
    python = os.path.realpath(sys.executable)
    subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}", python,
                    "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return summary_count(out.read_text())


def package_alone(tree: Path, folder: Path) -> Path:
    """*folder* holding a compiled copy of *tree*'s ``greentrack`` package and nothing else, to put on
    ``sys.path``: what else a checkout's folder holds (an editable install's egg-info) is not counted, and
    the checkout's own compiled files keep their paths."""
    shutil.copytree(tree / "greentrack", folder / "greentrack", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(folder / "greentrack")], check=True)
    return folder


def summary_count(text: str) -> int:
    """The instruction count of a cachegrind output file (its ``summary:`` line, event ``Ir`` first)."""
    for line in text.splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError("no summary line in cachegrind's output")


def fixed_and_per_test(d_small: float, d_large: float, small: int, large: int) -> tuple[float, float]:
    """A cost measured at two suite sizes, as a fixed part and a part per test (the line through both)."""
    per_test = (d_large - d_small) / (large - small)
    return d_small - per_test * small, per_test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, nargs=2, default=[100, 500], metavar=("SMALL", "LARGE"),
                    help="the two suite sizes (trivial tests)")
    ap.add_argument("--reps", type=int, default=2, help="runs of each configuration at each size (medians)")
    ap.add_argument("--against", metavar="REF", help="also count the plugin of this git commit")
    ap.add_argument("--gc-off", action="store_true",
                    help="turn Python's garbage collector off in every configuration (greentrack's own work only)")
    args = ap.parse_args()
    if args.tests[0] >= args.tests[1]:
        sys.exit("--tests: the first size must be the smaller")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREENTRACK_", "PYTEST_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PYTHONHASHSEED="0", GREENTRACK_BACKEND="auto")
    shadow = tempfile.TemporaryDirectory(prefix="gt-bench-wheel-")
    marked = wheel_like(Path(shadow.name))
    first: list[str] = []
    if args.gc_off:  # a plugin module pytest imports before the others (-p): the collector off from there on
        Path(shadow.name, "gt_gc_off.py").write_text("import gc\n\ngc.disable()\n")
        first = ["-p", "gt_gc_off"]
    with tempfile.TemporaryDirectory(prefix="gt-instr-") as tmp:
        trees = {"this checkout": ROOT}
        if args.against:
            other = Path(tmp) / "against"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.against],
                           check=True)
            trees[f"at {args.against}"] = other
        # each tree's package alone on sys.path (the egg-info is read by pytest's entry-point scan and greentrack's)
        for i, (label, tree) in enumerate(list(trees.items())):
            trees[label] = package_alone(tree, Path(tmp) / f"package-{i}")
        configs = {"-p no:greentrack": ([*first, "-p", "no:greentrack"], trees["this checkout"])}
        configs.update({f"--greentrack, {label}": ([*first, "--greentrack"], tree) for label, tree in trees.items()})
        counts: dict[tuple[str, int], list[int]] = {}
        try:
            for n in args.tests:
                root = Path(tmp) / f"suite{n}"
                root.mkdir()
                make_suite(root, n)
                for extra, tree in configs.values():  # not counted: pytest writes the tests' .pyc files
                    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=root,
                                   env=dict(env, PYTHONPATH=f"{marked}{os.pathsep}{tree}",
                                            GREENTRACK_DB=str(Path(tmp) / "warm-up.db")),
                                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for rep in range(args.reps):
                    for label, (extra, tree) in configs.items():
                        run_env = dict(env, PYTHONPATH=f"{marked}{os.pathsep}{tree}",
                                       GREENTRACK_DB=str(Path(tmp) / f"{n}-{rep}-{len(counts)}.db"))
                        counts.setdefault((label, n), []).append(
                            instructions(root, extra, run_env, Path(tmp) / "cg.out"))
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / "against")],
                               check=False)
    small, large = args.tests
    print(f"instructions executed by pytest on N trivial tests (valgrind cachegrind, median of {args.reps}), "
          f"python {sys.version.split()[0]}, greentrack from {ROOT}"
          + ("; Python's garbage collector off in every configuration" if args.gc_off else ""))
    print(f"{'configuration':<34} {'N=' + str(small):>16} {'N=' + str(large):>16}   greentrack's: "
          f"{'N=' + str(small):>10} {'N=' + str(large):>10} {'fixed':>10} {'per test':>10}")
    base = {n: statistics.median(counts[("-p no:greentrack", n)]) for n in args.tests}
    for label in configs:
        med = {n: statistics.median(counts[(label, n)]) for n in args.tests}
        d = {n: med[n] - base[n] for n in args.tests}
        fixed, per_test = fixed_and_per_test(d[small], d[large], small, large)
        line = f"{label:<34} {med[small]:>16,.0f} {med[large]:>16,.0f}   "
        if label != "-p no:greentrack":
            line += f"{' ' * 14}{d[small] / 1e6:>9.1f}M {d[large] / 1e6:>9.1f}M {fixed / 1e6:>9.1f}M {per_test:>10,.0f}"
        print(line)
    spread = max((max(v) - min(v)) / statistics.median(v) for v in counts.values())
    print(f"largest spread between the runs of one configuration: {spread * 100:.3f} % of its count")


if __name__ == "__main__":
    main()
