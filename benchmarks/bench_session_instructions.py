"""A session's start, in pieces, and its stop per phase, in instructions executed (valgrind's cachegrind).

The start as the pytest plugin makes it, in a fresh process that has imported pytest: each piece is
counted as the difference between a run that stops (``os._exit``) right after it and one that stops
right before it, so the interpreter's exit is never counted. The pieces:

- importing the session (``greentrack.measure.tracker``), the store, and the rest of what the plugin
  imports by the end of a run;
- the plugin manager in its parts: the hook specifications, importing the built-in plugins, their
  registration, and the scan of the installed distributions' entry points;
- the settings, the grid's intensity, the sources (the CPU model on a machine without GPU or
  RAPL), and opening a new SQLite database.

The start runs in a project folder whose ``pyproject.toml`` names greentrack among its dependencies and
configures other tools, as a user's does (:data:`PYPROJECT`); ``--pyproject PATH`` takes another.

The stop: a session that marks N phases as the pytest plugin marks each test's call (after two edge
readings each), then stops, against one that stops before its stop, at two values of N: the stop's
instructions per phase. Python's hash seed is fixed (``PYTHONHASHSEED=0``): the counts repeat to the
instruction. ``--against REF`` counts a git commit's package too (a copy of each package alone on
``sys.path``, as ``bench_pytest_instructions.py`` does).

    python benchmarks/bench_session_instructions.py [--phases 100 500] [--against 5dcd1e1] [--pyproject PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pytest_instructions import package_alone, summary_count  # noqa: E402
from bench_pytest_plugin import ROOT  # noqa: E402

START = textwrap.dedent("""
    import importlib, os, sys
    import pytest, _pytest.junitxml, _pytest.python
    upto = int(os.environ["UPTO"])

    def done(k):
        if upto == k:
            os._exit(0)

    done(0)
    import greentrack.measure.tracker
    done(1)
    import greentrack.store.writer, greentrack.store.sqlite
    done(2)
    import greentrack.pytest_plugin.energy, greentrack.pytest_plugin.checks, greentrack.pytest_plugin.ci
    import greentrack.pytest_plugin.report, greentrack.measure.attribution
    done(3)
    from greentrack import hookspecs, plugins as P
    pm = P.PluginManager("greentrack")
    pm.add_hookspecs(hookspecs)
    done(4)
    mods = []
    for name in P.BUILTIN_PLUGINS:
        target, _, attr = P.BUILTIN_SHIMS.get(name, name).partition(":")
        mod = importlib.import_module(target)
        mods.append((name, getattr(mod, attr) if attr else mod))
    done(5)
    for name, mod in mods:
        pm.register(mod, name=name)
    done(6)
    P._entry_points(P.ENTRY_POINT_GROUP)
    done(7)
    P._pm = pm
    from greentrack import settings as config
    st = config.resolve()
    done(8)
    from greentrack.carbon import grid
    grid.lookup(st.region)
    done(9)
    from greentrack.measure.sources import build_sources
    build_sources(st)
    done(10)
    from greentrack.store.writer import RunWriter
    RunWriter(st.db_path, strict=True).open()
    done(11)
""")
PIECES = ["import the session", "import the store", "import the rest of the plugin's modules",
          "plugin manager: hook specifications", "plugin manager: import the built-in plugins",
          "plugin manager: register them", "plugin manager: scan the entry points", "settings",
          "grid intensity", "sources (the CPU model here)", "open a new SQLite database"]

PYPROJECT = textwrap.dedent("""
    [build-system]
    requires = ["setuptools>=68", "wheel"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "llama-finetune"
    version = "0.3.0"
    description = "Fine-tuning scripts"
    requires-python = ">=3.10"
    dependencies = [
        "torch>=2.3",
        "transformers>=4.44",
        "peft>=0.12",
        "datasets>=2.20",
        "greentrack>=0.1",
    ]

    [project.optional-dependencies]
    dev = ["pytest>=8", "ruff>=0.5", "mypy>=1.10", "greentrack[pytest]"]

    [tool.setuptools.packages.find]
    where = ["src"]

    [tool.pytest.ini_options]
    testpaths = ["tests"]
    addopts = "-ra --strict-markers"
    markers = ["slow: long tests", "gpu: needs a GPU"]

    [tool.ruff]
    line-length = 110
    target-version = "py310"

    [tool.ruff.lint]
    select = ["E", "F", "I", "B", "UP"]
    ignore = ["E501"]

    [tool.mypy]
    strict = true
    warn_unused_ignores = true
    exclude = ["build/", "notebooks/"]

    [tool.coverage.run]
    branch = true
    source = ["src"]
""")

STOP = textwrap.dedent("""
    import os, sys
    import pytest
    from greentrack.measure.tracker import Session
    gs = Session("bench", tags={"runner": "pytest"}, strict=True, background=False)
    gs.start()
    edge = gs.edge_function()
    for i in range(int(os.environ["PHASES"])):
        a, b = edge(), edge()
        gs.mark_phase(f"tests/test_gen_{i // 50}.py::test_{i}", a[0], b[0], b[1] - a[1])
    if os.environ["STOP"] == "1":
        gs.stop()
    os._exit(0)
""")


def count(script: Path, env: dict[str, str], out: Path, cwd: Path) -> int:
    python = os.path.realpath(sys.executable)
    for suffix in ("", "-wal", "-shm"):
        Path(env["GREENTRACK_DB"] + suffix).unlink(missing_ok=True)
    subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}", python,
                    str(script)], env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return summary_count(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", type=int, nargs=2, default=[100, 500], metavar=("SMALL", "LARGE"),
                    help="the two phase counts of the stop's runs")
    ap.add_argument("--against", metavar="REF", help="also count the package of this git commit")
    ap.add_argument("--pyproject", type=Path, help="the project's pyproject.toml (default: a typical one, PYPROJECT)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GREENTRACK_", "PYTEST_"))}
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    base.update(PYTHONHASHSEED="0", GREENTRACK_BACKEND="auto")
    with tempfile.TemporaryDirectory(prefix="gt-session-instr-") as tmp:
        t = Path(tmp)
        (t / "start.py").write_text(START)
        (t / "stop.py").write_text(STOP)
        project = t / "project"
        project.mkdir()
        (project / "pyproject.toml").write_text(args.pyproject.read_text() if args.pyproject else PYPROJECT)
        trees = {"this checkout": ROOT}
        if args.against:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(t / "against"),
                            args.against], check=True)
            trees[f"at {args.against}"] = t / "against"
        try:
            rows: dict[str, list[int]] = {}
            per_phase: dict[str, float] = {}
            for i, (label, tree) in enumerate(trees.items()):
                alone = package_alone(tree, t / f"package-{i}")
                env = dict(base, PYTHONPATH=str(alone), GREENTRACK_DB=str(t / "bench.db"))
                marks = [count(t / "start.py", dict(env, UPTO=str(k)), t / "cg.out", project)
                         for k in range(len(PIECES) + 1)]
                rows[label] = [b - a for a, b in zip(marks, marks[1:])]
                stop = {}
                for n in args.phases:
                    for s in ("0", "1"):
                        stop[(n, s)] = count(t / "stop.py", dict(env, PHASES=str(n), STOP=s), t / "cg.out", project)
                small, large = args.phases
                per_phase[label] = ((stop[(large, "1")] - stop[(large, "0")]) - (stop[(small, "1")]
                                    - stop[(small, "0")])) / (large - small)
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(t / "against")],
                               check=False)
    labels = list(trees)
    print(f"instructions of a session's start, in pieces, and of its stop per phase (valgrind cachegrind, "
          f"PYTHONHASHSEED=0), python {sys.version.split()[0]}, in a project whose pyproject.toml is "
          f"{args.pyproject or 'PYPROJECT (greentrack among its dependencies)'}; columns: {', '.join(labels)}")
    for j, piece in enumerate(PIECES):
        cells = " ".join(f"{rows[k][j] / 1e6:9.2f} M" for k in labels)
        print(f"  {piece:<48} {cells}")
    total = " ".join(f"{sum(rows[k]) / 1e6:9.2f} M" for k in labels)
    print(f"  {'the start, in all':<48} {total}")
    stops = " ".join(f"{per_phase[k]:9,.0f}  " for k in labels)
    print(f"  {'the stop, per phase':<48} {stops}")


if __name__ == "__main__":
    main()
