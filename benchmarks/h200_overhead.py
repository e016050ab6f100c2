"""Slowdown of a launch-bound training loop under greentrack, CodeCarbon and Zeus.

A small MLP (3 x Linear(256), Adam, batch 64) trains on GPU 0 at hundreds to thousands of
steps per second, so the loop is bound by Python and kernel launches: any work a tracker
adds on the training thread, or any GIL time its background thread takes, shows up directly.

Conditions, interleaved in a shuffled order in each repetition so drift in clocks or
temperature hits all of them alike:

- ``none``: the bare loop;
- ``greentrack``: inside a session (sampler thread running) with ``s.step()`` every step;
- ``codecarbon``: inside an OfflineEmissionsTracker (its default 15 s interval, and 1 s);
- ``zeus``: inside a ZeusMonitor window.

Each condition runs a fixed number of steps; the figure is the median over repetitions of
(time with tracker / time of the bare loop in the same repetition), with a bootstrap 95 %
interval of that median. Tracker start and stop are outside the timed loop and reported
separately. Because a shared machine's noise between blocks can exceed the effect, the
greentrack condition also reports the CPU time its sampler thread used per second of loop:
the most GIL time it can have taken from the training thread.

    CUDA_VISIBLE_DEVICES=0 python3 benchmarks/h200_overhead.py --reps 7 --out overhead.json
    python3 benchmarks/h200_overhead.py --dry-run --reps 2 --steps 2000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from h200_common import dump, env_info, has_gpu, median  # noqa: E402


def make_step(dry: bool) -> Callable[[], None]:
    if dry:
        import math

        acc = [0.0]

        def step() -> None:  # a few µs of Python, like a launch-bound step
            for i in range(40):
                acc[0] += math.sqrt(i)

        return step
    import torch

    dev = torch.device("cuda:0")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(64, 256, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)
    lossf = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        lossf(model(x), y).backward()
        opt.step()

    return step


def sync(dry: bool) -> None:
    if not dry:
        import torch

        torch.cuda.synchronize()


def timed_loop(step: Callable[[], None], n: int, dry: bool, mark: Callable[..., None] | None = None) -> float:
    sync(dry)
    t = time.perf_counter()
    if mark is None:
        for _ in range(n):
            step()
    else:
        for _ in range(n):
            step()
            mark(samples=64)
    sync(dry)
    return time.perf_counter() - t


def sampler_cpu_s() -> float | None:
    """CPU seconds used so far by greentrack's sampler thread (None if psutil cannot tell)."""
    import threading

    try:
        import psutil
    except ImportError:
        return None
    ids = [t.native_id for t in threading.enumerate() if t.name == "greentrack-sampler"]
    if not ids:
        return None
    for th in psutil.Process().threads():
        if th.id == ids[0]:
            return th.user_time + th.system_time
    return None


def thread_run_ns(native_id: int) -> int | None:
    """Nanoseconds a thread of this process has run on a CPU (Linux schedstat)."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def bound(step: Callable[[], None], seconds: float, dry: bool, db: str) -> dict[str, Any]:
    """What greentrack can take from the loop at most: its sampler thread's CPU time per second of
    training, and the cost of one ``s.step()`` mark against the cost of one training step."""
    import threading

    from greentrack.measure.tracker import Session

    s = Session("overhead-bound", region="FR", db=db, backend="mock" if dry else "nvml")
    s.start()
    # time spent inside the source's reads (NVML releases the GIL while the driver answers)
    in_reads = [0.0]
    for src in s.sources:
        for meth in ("poll", "energy_j"):
            def timed(*a: Any, _f: Callable[..., Any] = getattr(src, meth)) -> Any:
                t = time.perf_counter()
                try:
                    return _f(*a)
                finally:
                    in_reads[0] += time.perf_counter() - t
            setattr(src, meth, timed)
    time.sleep(0.1)
    nid = next(t.native_id for t in threading.enumerate() if t.name == "greentrack-sampler")
    ns0, t0, r0 = thread_run_ns(nid), time.perf_counter(), in_reads[0]
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step()
        s.step(samples=64)
        n += 1
    sync(dry)
    el = time.perf_counter() - t0
    ns1 = thread_run_ns(nid)
    reads_s = in_reads[0] - r0
    s.stop()
    marks = Session("marks", store=False, backend="none")
    marks.start()
    k = 1_000_000
    t = time.perf_counter()
    for _ in range(k):
        marks.step(samples=64)
    mark_s = (time.perf_counter() - t) / k
    marks.stop()
    out: dict[str, Any] = {"seconds": el, "steps": n, "us_per_step": el / n * 1e6, "step_mark_us": mark_s * 1e6,
                           "step_mark_pct_of_step": mark_s / (el / n) * 100, "flushes": s.sampler.flushes}
    if ns0 is not None and ns1 is not None:
        out["sampler_cpu_ms_per_s"] = (ns1 - ns0) / 1e6 / el
        out["sampler_cpu_pct"] = (ns1 - ns0) / 1e9 / el * 100
        out["bound_pct"] = out["sampler_cpu_pct"] + out["step_mark_pct_of_step"]
        out["source_reads_ms_per_s"] = reads_s * 1e3 / el
        # CPU time outside the source's reads: the most the sampler can have held the GIL
        python_ms = max(0.0, (ns1 - ns0) / 1e6 - reads_s * 1e3)
        out["sampler_python_ms_per_s"] = python_ms / el
        out["gil_bound_pct"] = python_ms / 1e3 / el * 100 + out["step_mark_pct_of_step"]
    return out


def boot_ci(xs: list[float], n: int = 2000) -> tuple[float, float]:
    """Bootstrap 95 % interval of the median of *xs*."""
    rng = random.Random(1)
    meds = sorted(median([rng.choice(xs) for _ in xs]) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n)]


def run_condition(cond: str, step: Callable[[], None], n: int, dry: bool, db: str,
                  costs: dict[str, list[float]]) -> float:
    if cond == "none":
        return timed_loop(step, n, dry)
    if cond == "greentrack":
        from greentrack.measure.tracker import Session

        t = time.perf_counter()
        s = Session("overhead", region="FR", db=db, backend="mock" if dry else "nvml")
        s.start()
        costs.setdefault("greentrack_start_s", []).append(time.perf_counter() - t)
        cpu0 = sampler_cpu_s()
        el = timed_loop(step, n, dry, s.step)
        cpu1 = sampler_cpu_s()
        if cpu0 is not None and cpu1 is not None:
            costs.setdefault("greentrack_sampler_cpu_per_s", []).append((cpu1 - cpu0) / el)
        t = time.perf_counter()
        s.stop()
        costs.setdefault("greentrack_stop_s", []).append(time.perf_counter() - t)
        return el
    if cond.startswith("codecarbon"):
        from codecarbon import OfflineEmissionsTracker

        secs = 1 if cond.endswith("1s") else 15
        t = time.perf_counter()
        tr = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False, log_level="error",
                                     measure_power_secs=secs, gpu_ids=None if dry else [0])
        tr.start()
        costs.setdefault(f"{cond}_start_s", []).append(time.perf_counter() - t)
        el = timed_loop(step, n, dry)
        t = time.perf_counter()
        tr.stop()
        costs.setdefault(f"{cond}_stop_s", []).append(time.perf_counter() - t)
        return el
    if cond == "zeus":
        from zeus.monitor import ZeusMonitor

        t = time.perf_counter()
        zm = ZeusMonitor(gpu_indices=[0], cpu_indices=[])
        zm.begin_window("loop")
        costs.setdefault("zeus_start_s", []).append(time.perf_counter() - t)
        el = timed_loop(step, n, dry)
        t = time.perf_counter()
        zm.end_window("loop")
        costs.setdefault("zeus_stop_s", []).append(time.perf_counter() - t)
        return el
    raise ValueError(cond)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--steps", type=int, default=0, help="steps per timed loop (default: --block-s worth)")
    ap.add_argument("--block-s", type=float, default=3.0, help="seconds per timed loop when --steps is not given")
    ap.add_argument("--conditions", default="none,greentrack,codecarbon,codecarbon_1s,zeus")
    ap.add_argument("--bound-s", type=float, default=0.0,
                    help="also run the loop this long in one session and report the sampler's CPU time")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dry = args.dry_run or not has_gpu()
    conds = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if dry:
        conds = [c for c in conds if c != "zeus"]
    db = os.path.join(tempfile.mkdtemp(), "overhead.db")
    step = make_step(dry)
    import_s = {}
    peers = (("greentrack.measure.tracker", "greentrack"), ("codecarbon", "codecarbon"), ("zeus.monitor", "zeus"))
    for mod, name in peers:
        if not any(c.startswith(name) for c in conds):
            continue
        t = time.perf_counter()
        try:
            __import__(mod)
            import_s[name] = time.perf_counter() - t
        except Exception as exc:
            import_s[name] = f"{type(exc).__name__}: {exc}"
            conds = [c for c in conds if not c.startswith(name)]
    for _ in range(200):  # warm-up
        step()
    sync(dry)
    n = args.steps
    if not n:
        t = time.perf_counter()
        k = 500
        timed_loop(step, k, dry)
        n = max(200, int(k * args.block_s / (time.perf_counter() - t)))
    rng = random.Random(0)
    times: dict[str, list[float]] = {c: [] for c in conds}
    ratios: dict[str, list[float]] = {c: [] for c in conds if c != "none"}
    costs: dict[str, list[float]] = {}
    for rep in range(args.reps):
        order = conds[:]
        rng.shuffle(order)
        got = {}
        for c in order:
            got[c] = run_condition(c, step, n, dry, db, costs)
            times[c].append(got[c])
        for c in ratios:
            ratios[c].append(got[c] / got["none"])
        print(f"rep {rep}: " + ", ".join(f"{c} {got[c] / n * 1e6:.1f} us/step" for c in conds), flush=True)
    res: dict[str, Any] = {
        "env": env_info(), "dry_run": dry, "steps_per_loop": n, "reps": args.reps, "import_s": import_s,
        "us_per_step_median": {c: median(v) / n * 1e6 for c, v in times.items()},
        "steps_per_s_median": {c: n / median(v) for c, v in times.items()},
        "slowdown_pct_median": {c: (median(v) - 1.0) * 100 for c, v in ratios.items()},
        "slowdown_pct_mean": {c: (sum(v) / len(v) - 1.0) * 100 for c, v in ratios.items()},
        "slowdown_pct_median_ci95": {c: [(x - 1.0) * 100 for x in boot_ci(v)] for c, v in ratios.items()},
        "slowdown_pct_all": {c: [round((x - 1) * 100, 3) for x in v] for c, v in ratios.items()},
        "start_stop_s_median": {k: median(v) for k, v in costs.items()},
        "start_stop_s_all": costs,
    }
    if args.bound_s:
        res["bound"] = bound(step, args.bound_s, dry, db)
    dump(res, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
