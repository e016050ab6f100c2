"""What the installed greentrack pytest plugin costs a pytest run.

Runs a generated suite in fresh pytest processes, interleaving the configurations
(``-p no:greentrack``, installed but idle, and with ``--enabled`` the plugin measuring every
test, by default with the backend a CPU-only CI runner gets: the CPU model), and prints for
each the median wall time and CPU time (user + system of the pytest process and its children),
and the median of the paired differences against ``-p no:greentrack`` in milliseconds and in
percent of the suite's time. Targets: installed but idle < 20 ms; enabled < 2 % of the suite.
CPU time is printed next to wall time because on a shared machine other tenants' load moves
wall time by more than the effect measured. Every configuration sees greentrack as a wheel
install does (pytest marks its package for assertion rewriting; see :func:`wheel_like`).

    python benchmarks/bench_pytest_plugin.py               # 30 rounds, 50 tests
    python benchmarks/bench_pytest_plugin.py --rounds 30 --tests 500 --enabled
    python benchmarks/bench_pytest_plugin.py --tests 500 --enabled --work-ms 2   # tests doing 2 ms of work
    python benchmarks/bench_pytest_plugin.py --gpu      # a torch suite on a real GPU (NVML)
    python benchmarks/bench_pytest_plugin.py --enabled --suite /tmp/boltons-26.2.0/tests   # an existing suite
    python benchmarks/bench_pytest_plugin.py --enabled --tests 500 --against HEAD~3  # also that commit, enabled

``--gpu`` runs a small torch suite with ``--greentrack`` on the NVML backend: once, again with
``--energy-budget-regression``, once under pytest-xdist (``-n 2``), and times 300 trivial tests
with and without ``--greentrack`` (the cost of reading the GPU after every test).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_suite(root: Path, n_tests: int, work_ms: float = 0.0) -> None:
    per_file = 10
    head = ""
    if work_ms:
        head = (f"import time\n\n\ndef work():\n    t = time.process_time()\n"
                f"    while time.process_time() - t < {work_ms / 1000!r}:\n        pass\n\n\n")
    call = "    work()\n" if work_ms else ""
    for f in range(0, n_tests, per_file):
        body = "\n\n".join(f"def test_{i}():\n{call}    assert {i} + 1 == {i + 1}"
                           for i in range(f, min(f + per_file, n_tests)))
        (root / f"test_gen_{f // per_file}.py").write_text(head + body + "\n")


def wheel_like(folder: Path) -> str:
    """A folder to put first on PYTHONPATH: a dist-info whose RECORD lists greentrack/, as a wheel's does.

    pytest marks for assertion rewriting every top-level package that a distribution with a
    ``pytest11`` entry point lists among its files. An installed wheel lists greentrack/; an
    editable install lists only its finder, and a git worktree has no metadata at all, so without
    this folder the checkouts compared here would be imported in different ways, neither of them
    the way users' installs are. Its entry point has the real one's name, so pytest loads the
    plugin once (``-p no:greentrack`` blocks both).
    """
    dist = folder / "greentrack_wheel_like-0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greentrack-wheel-like\nVersion: 0.0\n")
    (dist / "RECORD").write_text("greentrack/__init__.py,,\n")
    (dist / "entry_points.txt").write_text("[pytest11]\ngreentrack = greentrack.pytest_plugin\n")
    return str(folder)


def other_plugins() -> list[str]:
    """The names of the pytest plugins other distributions here install (``pytest11`` entry points), greentrack's aside.

    What they cost is the same in every configuration, but not always the same from run to run:
    hypothesis's plugin alone imports for about 200 ms, and anyio's imports trio when it is
    installed. The benchmark blocks them (``-p no:NAME``) unless ``--other-plugins`` is given, so
    that the suite's time, the denominator of the percentages, is pytest's own and the one plugin
    measured, the conservative choice. pytest still scans every distribution's entry points.
    """
    from importlib import metadata

    names = {ep.name for dist in metadata.distributions() for ep in dist.entry_points if ep.group == "pytest11"}
    return sorted(names - {"greentrack"})


BLOCKED: list[str] = []  # -p no:NAME for each plugin in other_plugins(), unless --other-plugins


def run_once(root: Path, extra: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the pytest process and its children) of one run."""
    import resource

    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *BLOCKED, *extra, str(root)]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(extra)}):\n{proc.stdout[-2000:]}")
    return dt, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


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


ACCOUNT_PLUGIN = '''
"""Accounts the CPU time greentrack's pytest hooks spend on the main thread, and its sampler thread's."""
import json
import os
import threading
import time

import pytest

SPENT = {"hooks_s": 0.0, "sampler_s": 0.0, "tests": 0, "by_hook": {}}


def _add(name, dt):
    SPENT["hooks_s"] += dt
    SPENT["by_hook"][name] = SPENT["by_hook"].get(name, 0.0) + dt


def _timed(fn, wrapper, name):
    if not wrapper:
        def plain(*args):
            t = time.thread_time()
            try:
                return fn(*args)
            finally:
                _add(name, time.thread_time() - t)
        return plain

    def wrapped(*args):
        t = time.thread_time()
        gen = fn(*args)
        first = next(gen)
        _add(name, time.thread_time() - t)
        try:
            res = yield first
        except BaseException as exc:
            t = time.thread_time()
            try:
                gen.throw(exc)
            except StopIteration as stop:
                return stop.value
            finally:
                _add(name, time.thread_time() - t)
            raise
        t = time.thread_time()
        try:
            gen.send(res)
        except StopIteration as stop:
            return stop.value
        finally:
            _add(name, time.thread_time() - t)
        raise RuntimeError("yielded twice")
    return wrapped


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    pm = config.pluginmanager
    for name in ("greentrack-energy", "greentrack"):
        plugin = pm.get_plugin(name)
        for caller in pm.get_hookcallers(plugin) or [] if plugin is not None else []:
            if caller.name in ("pytest_addoption", "pytest_configure"):
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function = _timed(impl.function, impl.wrapper, caller.name)


def _sampler_cpu_s():
    for th in threading.enumerate():
        if th.name == "greentrack-sampler" and th.ident:
            return time.clock_gettime(time.pthread_getcpuclockid(th.ident))
    return 0.0


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtestloop(session):
    try:
        return (yield)
    finally:
        SPENT["sampler_s"] = _sampler_cpu_s()  # read before greentrack (an outer wrapper) stops it
        SPENT["tests"] = session.testscollected


def pytest_unconfigure(config):
    with open(os.environ["GT_ACCOUNT_OUT"], "w") as fh:
        json.dump(SPENT, fh)
'''


PHASES_PLUGIN = '''
"""Process CPU time at pytest's landmarks, written at unconfigure (the rest is the interpreter's exit),
and Python's full garbage collections (generation 2) from this plugin's import to unconfigure."""
import gc
import json
import os
import time

import pytest

T = {}
GC = {"n": 0, "s": 0.0, "t0": 0.0, "at": []}


def _gc(phase, info):
    if info["generation"] != 2:
        return
    if phase == "start":
        GC["t0"] = time.perf_counter()
        GC["at"].append(time.time())
    else:
        GC["n"] += 1
        GC["s"] += time.perf_counter() - GC["t0"]


gc.callbacks.append(_gc)


def _now():
    return [time.process_time(), time.time()]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    T["configure"] = _now()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    T["sessionstart"] = _now()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    T["collected"] = _now()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    T["finished"] = _now()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    T["unconfigure"] = _now()
    T["gc_full"] = [GC["n"], GC["s"]]
    T["gc_at"] = GC["at"]  # when each full collection started (wall clock)
    T["tracked"] = len(gc.get_objects())  # objects the collector tracks, as pytest is about to end
    with open(os.environ["GT_PHASES_OUT"], "w") as fh:
        json.dump(T, fh)
'''

PHASE_NAMES = [
    ("interpreter and pytest start-up", None, "configure"),
    ("configure -> session start (greentrack's start)", "configure", "sessionstart"),
    ("collection", "sessionstart", "collected"),
    ("the tests, then greentrack's stop and checks", "collected", "finished"),
    ("session finish, summary, unconfigure", "finished", "unconfigure"),
    ("the interpreter's exit", "unconfigure", None),
]


def _with_plugin_dir(env: dict[str, str], tmp: str, **extra: str) -> dict[str, str]:
    return dict(env, PYTHONPATH=os.pathsep.join(filter(None, [tmp, env.get("PYTHONPATH", "")])), **extra)


def phases(root: Path, envs: dict[str, dict[str, str]], rounds: int, enabled: list[str]) -> str:
    """Where the enabled plugin's CPU time goes: paired differences of each pytest phase's process CPU time,
    for each enabled configuration in *envs* (this checkout, and the ``--against`` one), interleaved."""
    import json

    with tempfile.TemporaryDirectory(prefix="gt-phases-") as tmp:
        Path(tmp, "gt_phases.py").write_text(PHASES_PLUGIN)
        out = Path(tmp) / "phases.json"
        first = next(iter(envs.values()))
        runs = [("off", ["-p", "no:greentrack"], first)] + [(label, enabled, e) for label, e in envs.items()]
        spans: dict[str, list[list[tuple[float, float]]]] = {key: [] for key, _x, _e in runs}
        gcs: dict[str, list[tuple[int, float]]] = {key: [] for key, _x, _e in runs}
        tracked: dict[str, list[int]] = {key: [] for key, _x, _e in runs}
        gc_phase: dict[str, dict[str, int]] = {key: {} for key, _x, _e in runs}  # full collections by phase
        for r in range(rounds):
            for key, extra, e in (runs if r % 2 == 0 else runs[::-1]):
                t_start = time.time()
                _w, cpu = run_once(root, ["-p", "gt_phases", *extra], _with_plugin_dir(e, tmp, GT_PHASES_OUT=str(out)))
                t_end = time.time()
                t = json.loads(out.read_text())
                row = []
                for _label, a, b in PHASE_NAMES:
                    start = t[a] if a else (0.0, t_start)
                    end = t[b] if b else (cpu, t_end)
                    row.append((end[0] - start[0], end[1] - start[1]))
                spans[key].append(row)
                gcs[key].append((int(t["gc_full"][0]), float(t["gc_full"][1])))
                tracked[key].append(int(t["tracked"]))
                for at in t["gc_at"]:
                    for label, a, b in PHASE_NAMES:
                        if (t[a][1] if a else t_start) <= at < (t[b][1] if b else t_end):
                            gc_phase[key][label] = gc_phase[key].get(label, 0) + 1
    labels = list(envs)
    head = ", ".join(labels)
    lines = [f"where the enabled plugin's time goes (paired differences of each pytest phase against "
             f"-p no:greentrack, median of {rounds}; process CPU, and wall time; columns: {head}):"]
    for i, (label, _a, _b) in enumerate(PHASE_NAMES):
        cells = []
        for j, what in ((0, "CPU"), (1, "wall")):
            off = statistics.median(r[i][j] for r in spans["off"])
            diffs = " ".join(
                f"{statistics.median(b[i][j] - a[i][j] for a, b in zip(spans['off'], spans[k])) * 1000:+7.1f}"
                for k in labels)
            cells.append(f"{what} {off * 1000:7.1f} ms {diffs} ms")
        lines.append(f"  {label:<50} {cells[0]}   {cells[1]}")
    n_s = {k: (statistics.median(n for n, _s in gcs[k]), statistics.median(s for _n, s in gcs[k]) * 1000) for k in gcs}
    taken = "; ".join(f"{k}: {n:g} taking {sec:.1f} ms" for k, (n, sec) in n_s.items())
    lines.append(f"  Python's full garbage collections (generation 2) up to unconfigure, median: {taken} "
                 "(greentrack's objects move when they fall, and can add one)")
    where = "; ".join(f"{k}: " + (", ".join(f"{n} in {ph!r}" for ph, n in gc_phase[k].items()) or "none")
                      for k in gc_phase)
    lines.append(f"  where they started, over all {rounds} runs of each: {where}")
    base = statistics.median(tracked["off"])
    more = ", ".join(f"{k} {statistics.median(tracked[k]) - base:+,.0f}" for k in labels)
    lines.append(f"  objects Python's collector tracks at unconfigure, median: off {base:,.0f}; {more}")
    return "\n".join(lines)


def account(root: Path, envs: dict[str, dict[str, str]], rounds: int) -> str:
    """Direct accounting: greentrack's own CPU time inside the enabled pytest process, for each configuration
    in *envs*, interleaved."""
    import json

    out_lines = []
    with tempfile.TemporaryDirectory(prefix="gt-account-") as tmp:
        Path(tmp, "gt_account.py").write_text(ACCOUNT_PLUGIN)
        out = Path(tmp) / "spent.json"
        rows: dict[str, list[tuple]] = {label: [] for label in envs}
        for _ in range(rounds):
            for label, env in envs.items():
                _w, cpu = run_once(root, ["-p", "gt_account", "--greentrack"],
                                   _with_plugin_dir(env, tmp, GT_ACCOUNT_OUT=str(out)))
                d = json.loads(out.read_text())
                rows[label].append((d["hooks_s"], d["sampler_s"], cpu, d["tests"], d["by_hook"]))
    for label, rs in rows.items():
        hooks = statistics.median(r[0] for r in rs)
        sampler = statistics.median(r[1] for r in rs)
        total = statistics.median(r[2] for r in rs)
        share = statistics.median((r[0] + r[1]) / r[2] for r in rs)
        by = {k: statistics.median(r[4].get(k, 0.0) for r in rs) for k in rs[0][4]}
        parts = ", ".join(f"{k.removeprefix('pytest_')} {v * 1000:.1f}"
                          for k, v in sorted(by.items(), key=lambda kv: -kv[1]))
        out_lines.append(
            f"greentrack's own CPU in the enabled run, {label} (median of {rounds}): hooks on the main thread "
            f"{hooks * 1000:.1f} ms (start, {rs[0][3]} tests, stop, checks, summary), sampler thread "
            f"{sampler * 1000:.1f} ms; {share * 100:.2f}% of the run's CPU ({total * 1000:.0f} ms)\n"
            f"  by hook (ms): {parts}")
    return "\n".join(out_lines)


GPU_SUITE = """
import time
import pytest
import torch


def _busy(seconds):
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    t0 = time.time()
    while time.time() - t0 < seconds:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()


def test_matmul_2s(greentrack_energy):
    _busy(2.0)
    print("live energy", greentrack_energy.energy_j, "J")
    assert greentrack_energy.energy_j > 0


def test_matmul_50ms():
    _busy(0.05)


def test_idle_1s():
    time.sleep(1.0)


def test_tiny():
    torch.ones(4, device="cuda").sum().item()


@pytest.mark.energy_budget(joules=50)
def test_over_budget():
    _busy(0.5)
"""


def gpu_mode(env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="gt-gpu-") as tmp:
        root = Path(tmp) / "gpu-suite"
        root.mkdir()
        (root / "test_gpu.py").write_text(GPU_SUITE)
        env = dict(env, GREENTRACK_BACKEND="nvml", GREENTRACK_DB=str(Path(tmp) / "gpu.db"))
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s"]
        for extra in (["--greentrack"], ["--energy-budget-regression", "10"], ["--greentrack", "-n", "2"]):
            print(f"\n$ GREENTRACK_BACKEND=nvml pytest -q -s {' '.join(extra)}", flush=True)
            subprocess.run([*base, *extra, str(root)], cwd=root, env=env)
        subprocess.run([sys.executable, "-m", "greentrack", "report", "--name", "gpu-suite"], env=env)
        # the cost per test of reading the GPU right after it
        trivial = Path(tmp) / "trivial"
        trivial.mkdir()
        make_suite(trivial, 300)
        for _ in range(2):
            for extra in ([], ["--greentrack"]):
                t0 = time.perf_counter()
                subprocess.run([*base, *extra, str(trivial)], cwd=trivial, env=env,
                               stdout=subprocess.DEVNULL, check=True)
                print(f"300 trivial tests {' '.join(extra) or '(idle)':>13}: {time.perf_counter() - t0:.3f} s")


IDLE_TARGET_MS, ENABLED_TARGET_PCT = 20.0, 2.0  # issue 12's targets


def median_interval(diffs: list[float], resamples: int = 2000, seed: int = 12) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median of *diffs* (the paired differences of one configuration)."""
    rng = random.Random(seed)
    n = len(diffs)
    meds = sorted(statistics.median(rng.choices(diffs, k=n)) for _ in range(resamples))
    return meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


def _judge(low: float, high: float, target: float) -> str:
    if high < target:
        return "met"
    if low >= target:
        return "NOT met"
    return "within this machine's noise of the target (the interval spans it)"


def verdict(wall: dict[str, list[float]]) -> str:
    """The targets, checked on the paired wall-time differences: idle under 20 ms, enabled under 2 %.

    Each verdict uses the 95 % bootstrap interval of the median paired difference, so a run whose
    rounds cannot tell the figure from the target says so instead of flipping between met and not.
    """
    base = wall["-p no:greentrack"]
    suite = statistics.median(base)
    out = ["targets (wall, median of the paired differences [95 % bootstrap interval]):"]
    for label, times in wall.items():
        if label == "-p no:greentrack":
            continue
        diffs = [t - b for t, b in zip(times, base)]
        med = statistics.median(diffs)
        low, high = median_interval(diffs)
        if label == "installed, idle":
            ms = [x * 1000 for x in (med, low, high)]
            out.append(f"  {label}: {ms[0]:+.1f} ms [{ms[1]:+.1f}, {ms[2]:+.1f}], target under {IDLE_TARGET_MS:g} ms: "
                       f"{_judge(ms[1], ms[2], IDLE_TARGET_MS)}")
        else:
            pct = [x / suite * 100 for x in (med, low, high)]
            out.append(f"  {label}: {pct[0]:+.2f} % [{pct[1]:+.2f}, {pct[2]:+.2f}] of the suite's {suite:.2f} s, "
                       f"target under {ENABLED_TARGET_PCT:g} %: {_judge(pct[1], pct[2], ENABLED_TARGET_PCT)}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="interleaved repetitions of each configuration")
    ap.add_argument("--tests", type=int, default=50, help="tests in the generated suite")
    ap.add_argument("--work-ms", type=float, default=0.0, help="CPU milliseconds each test spends (default: none)")
    ap.add_argument("--enabled", action="store_true", help="also time --greentrack (every test measured)")
    ap.add_argument("--backend", default="auto",
                    help="backend of the enabled runs (auto: the CPU model on a machine without GPU or RAPL)")
    ap.add_argument("--gpu", action="store_true", help="run a torch suite on a real GPU instead (NVML)")
    ap.add_argument("--suite", type=Path, help="time this existing test folder instead of a generated suite "
                    "(run from its parent, e.g. an unpacked sdist's tests/)")
    ap.add_argument("--inside-only", action="store_true",
                    help="with --enabled: only greentrack's own CPU and the pytest phases (with Python's full "
                    "garbage collections), --rounds of each, not the end-to-end wall-clock rounds")
    ap.add_argument("--other-plugins", action="store_true",
                    help="leave the other installed pytest plugins loaded (default: blocked with -p no:NAME)")
    ap.add_argument("--against", metavar="REF", help="with --enabled: also time the plugin of this git commit "
                    "(checked out in a temporary worktree), interleaved with the others")
    args = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GREENTRACK_", "PYTEST_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed packages are: compiled once, not at every import
    # this checkout's greentrack, whatever an editable install points at (a worktree's benchmark times its own code)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "greentrack")], check=True)
    shadow = tempfile.TemporaryDirectory(prefix="gt-bench-wheel-")
    env["PYTHONPATH"] = os.pathsep.join([wheel_like(Path(shadow.name)), env["PYTHONPATH"]])
    if args.gpu:
        gpu_mode(env)
        return
    work = f", each doing {args.work_ms:g} ms of CPU work" if args.work_ms else " (trivial)"
    what = f"the suite in {args.suite}" if args.suite is not None else f"{args.tests} tests{work}"
    blocked = [] if args.other_plugins else other_plugins()
    BLOCKED[:] = [arg for name in blocked for arg in ("-p", f"no:{name}")]
    with tempfile.TemporaryDirectory(prefix="gt-bench-") as tmp:
        if args.suite is not None:
            root = args.suite.resolve()
        else:
            root = Path(tmp) / "suite"
            root.mkdir()
            make_suite(root, args.tests, args.work_ms)
        env["GREENTRACK_DB"] = str(Path(tmp) / "bench.db")
        configs = {"-p no:greentrack": ["-p", "no:greentrack"], "installed, idle": []}
        envs: dict[str, dict[str, str]] = {}
        run_env = dict(env, GREENTRACK_BACKEND=args.backend)
        if args.enabled:
            configs[f"--greentrack ({args.backend})"] = ["--greentrack"]
        if args.enabled and args.against:
            other = Path(tmp) / "against"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.against],
                           check=True)
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(other / "greentrack")], check=True)
            label = f"--greentrack at {args.against}"
            configs[label] = ["--greentrack"]
            envs[label] = dict(run_env, PYTHONPATH=os.pathsep.join(filter(None, [str(other), env.get("PYTHONPATH")])))
        wall: dict[str, list[float]] = {k: [] for k in configs}
        cpu: dict[str, list[float]] = {k: [] for k in configs}
        # this checkout, and the --against one: their own CPU and their phases, interleaved
        enabled_envs = {"this checkout": run_env, **{f"at {args.against}": e for e in envs.values()}}
        try:
            for label, extra in configs.items():  # warm-up: page cache, .pyc files
                run_once(root, extra, envs.get(label, run_env))
            if args.inside_only and args.enabled:
                print(f"pytest, {what}, inside the runs only, python {sys.version.split()[0]}, greentrack from {ROOT}; "
                      "other installed pytest plugins " + ("left loaded" if args.other_plugins else "blocked"))
                print(account(root, enabled_envs, args.rounds))
                print(phases(root, enabled_envs, args.rounds, ["--greentrack"]))
                return
            for r in range(args.rounds):
                order = list(configs.items())
                if r % 2:
                    order.reverse()
                for label, extra in order:
                    w, c = run_once(root, extra, envs.get(label, run_env))
                    wall[label].append(w)
                    cpu[label].append(c)
            imp = import_cost_ms(env)
            accounted = ""
            if args.enabled:
                accounted = account(root, enabled_envs, max(5, args.rounds // 3))
                accounted += "\n" + phases(root, enabled_envs, max(5, args.rounds // 2), ["--greentrack"])
        finally:
            if args.enabled and args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / "against")],
                               check=False)

    print(f"pytest, {what}, {args.rounds} interleaved rounds, python {sys.version.split()[0]}, greentrack from {ROOT}")
    print("greentrack's package marked for pytest's assertion rewriting in every configuration, as a wheel install is")
    print("other installed pytest plugins blocked in every configuration: " + (", ".join(blocked) or "none")
          if not args.other_plugins else "other installed pytest plugins left loaded (--other-plugins)")
    print(f"{'configuration':<26} {'wall median':>11} {'paired diff':>12} {'% of suite':>10}   "
          f"{'CPU median':>10} {'paired diff':>12} {'% of suite':>10}")
    for label in configs:
        line = f"{label:<26}"
        for series in (wall, cpu):
            base = series["-p no:greentrack"]
            diff = statistics.median(t - b for t, b in zip(series[label], base))
            med = statistics.median(series[label])
            line += f" {med * 1000:9.1f}ms {diff * 1000:+10.1f}ms {diff / statistics.median(base) * 100:+9.2f}%  "
        print(line)
    print(verdict(wall))
    print(f"import greentrack.pytest_plugin (with greentrack/__init__), median of 10: {imp:.2f}ms")
    if accounted:
        print(accounted)


if __name__ == "__main__":
    main()
