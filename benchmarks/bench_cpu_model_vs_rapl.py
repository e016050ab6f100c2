"""The CPU model's error against RAPL, on a machine where RAPL can be read (run it there, ideally idle).

Each workload runs in a child process while one greentrack session measures with both sources,
``rapl`` (package and DRAM counters: the whole machine) and ``cpu-model`` (this process and its
children); both are polled at each workload's edges, so each gets exactly its window. Per
workload it prints, medians over interleaved repetitions:

- RAPL: package (+DRAM) energy, and the same above the idle power measured in a sleep window
  before each repetition (what the workload added to an otherwise idle machine);
- the model, with idle share 0 (the default) and with the idle share given by --idle-share;
- the model's error against RAPL above idle and against RAPL's whole package.

    sudo python benchmarks/bench_cpu_model_vs_rapl.py              # energy_uj is root-only since Linux 5.10
    sudo python benchmarks/bench_cpu_model_vs_rapl.py --seconds 5 --repeat 5 --idle-share 0.1

The model's watts per thread are the ones greentrack would use here (codecarbon's TDP table, or
GREENTRACK_CPU_WATTS_PER_THREAD); the script prints them. No RAPL: it says so, prints what the
kernel's perf ``power`` PMU offers instead (each event and what it counts over a second), and exits 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKLOADS = {
    "1 thread, Python loop": "import time\nt=time.time()\nx=0\nwhile time.time()-t<{s}:\n    x+=1\n",
    "1 thread, numpy matmul": ("import os, time\nimport numpy as np\na=np.random.rand(1500,1500)\nt=time.time()\n"
                               "while time.time()-t<{s}:\n    a@a\n"),
    "all threads, numpy matmul": ("import time\nimport numpy as np\na=np.random.rand(2000,2000)\nt=time.time()\n"
                                  "while time.time()-t<{s}:\n    a@a\n"),
    "1 thread, memory copies": ("import time\nimport numpy as np\na=np.ones(50_000_000)\nt=time.time()\n"
                                "while time.time()-t<{s}:\n    b=a.copy()\n"),
    "4 processes, Python loop": ("import time, multiprocessing as mp\n"
                                 "def f(s):\n    t=time.time()\n    x=0\n    while time.time()-t<s:\n        x+=1\n"
                                 "if __name__=='__main__':\n"
                                 "    ps=[mp.Process(target=f,args=({s},)) for _ in range(4)]\n"
                                 "    [p.start() for p in ps]\n    [p.join() for p in ps]\n"),
    "sleep": "import time\ntime.sleep({s})\n",
}
SINGLE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def window(session, states, fn) -> dict[str, float]:
    """Run *fn*; the energy of each device over exactly its run (sources polled at both edges)."""
    session.poll_edges()
    t0 = time.time()
    fn()
    t1 = time.time()
    session.poll_edges()
    out = {"s": t1 - t0}
    for st in states:
        out[st.device.key] = st.acc.series_energy_j(t0, t1)
    return out


PERF_POWER = "/sys/bus/event_source/devices/power"


def perf_power_probe(seconds: float = 1.0) -> str:
    """What the kernel's perf ``power`` PMU (RAPL through perf_event_open, where powercap is absent) offers
    here: each event and the joules it counts over *seconds* of this idle script (Linux x86-64 only)."""
    import ctypes
    import platform
    import struct

    if platform.machine() != "x86_64":
        return f"perf power PMU: not probed on {platform.machine()} (the probe calls x86-64's perf_event_open)"
    if not os.path.isdir(PERF_POWER):
        return f"perf power PMU: none ({PERF_POWER} does not exist)"
    events = sorted(e for e in os.listdir(f"{PERF_POWER}/events") if "." not in e)
    lines = [f"perf power PMU: {len(events)} event(s): {', '.join(events) or 'none'}"]
    libc = ctypes.CDLL(None, use_errno=True)

    class Attr(ctypes.Structure):  # struct perf_event_attr: type, size, config, then zeros (128 bytes)
        _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                    ("rest", ctypes.c_uint8 * 112)]

    pmu_type = int(Path(PERF_POWER, "type").read_text())
    for ev in events:
        config = int(Path(PERF_POWER, "events", ev).read_text().strip().split("=")[1], 16)
        scale = float(Path(PERF_POWER, "events", f"{ev}.scale").read_text())
        attr = Attr(type=pmu_type, size=128, config=config)
        fd = libc.syscall(298, ctypes.byref(attr), -1, 0, -1, 0)  # perf_event_open(attr, pid=-1, cpu=0)
        if fd < 0:
            lines.append(f"  {ev}: perf_event_open failed: {os.strerror(ctypes.get_errno())}")
            continue
        try:
            v0 = struct.unpack("Q", os.read(fd, 8))[0]
            time.sleep(seconds)
            v1 = struct.unpack("Q", os.read(fd, 8))[0]
        finally:
            os.close(fd)
        lines.append(f"  {ev}: {(v1 - v0) * scale:.6g} J over {seconds:g} s")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each workload window")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved repetitions")
    ap.add_argument("--idle-share", type=float, default=0.1, help="second model variant's idle share")
    ap.add_argument("--only", action="append", default=None, help="run only this workload (repeatable)")
    args = ap.parse_args()

    from greentrack.measure.sources.cpu_model import resolve_inputs
    from greentrack.measure.sources.rapl import RAPLSource, SourceUnavailable
    from greentrack.measure.tracker import Session

    try:
        RAPLSource()
    except SourceUnavailable as exc:
        print(f"no RAPL here ({exc}): nothing to compare the model with")
        print(perf_power_probe())
        return 2
    inputs = resolve_inputs()
    w = inputs.watts_per_thread
    print(f"model: {w:.3g} W per thread ({inputs.basis}); CPU {inputs.cpu}; {os.cpu_count()} threads visible")
    names = [n for n in WORKLOADS if not args.only or n in args.only]
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    s = Session("model-vs-rapl", backend="rapl,cpu-model", store=False, sample_interval_s=0.5)
    s.start()
    states = s.sampler.states
    rapl_keys = [st.device.key for st in states if st.source.name == "rapl"]
    model_key = next(st.device.key for st in states if st.source.name == "cpu-model")
    cpu_key = model_key
    try:
        for rep in range(args.repeat):
            order = names if rep % 2 == 0 else list(reversed(names))
            for name in order:
                idle = window(s, states, lambda: time.sleep(min(2.0, args.seconds)))
                idle_w = sum(idle[k] for k in rapl_keys) / idle["s"]
                env = dict(os.environ, **(SINGLE if name.startswith("1 thread") else {}))
                code = WORKLOADS[name].format(s=args.seconds)
                run = window(s, states, lambda c=code, e=env: subprocess.run([sys.executable, "-c", c], env=e,
                                                                           check=True))
                rapl_j = sum(run[k] for k in rapl_keys)
                model0 = run[cpu_key]
                wall = run["s"]
                cpu_s = model0 / w
                model_idle = w * (cpu_s * (1 - args.idle_share) + wall * args.idle_share)
                results[name].append({"rapl": rapl_j, "above_idle": rapl_j - idle_w * wall, "model": model0,
                                      "model_idle": model_idle, "idle_w": idle_w, "cpu_s": cpu_s, "wall": wall})
                print(f"  rep {rep + 1} {name:<26} RAPL {rapl_j:8.1f} J (idle {idle_w:5.1f} W)  model {model0:8.1f} J"
                      f"  CPU {cpu_s:6.2f} s in {wall:5.2f} s", flush=True)
    finally:
        s.stop()

    def err(a: float, b: float) -> str:
        return f"{(a / b - 1) * 100:+7.1f}%" if b > 0 else "      -"

    print(f"\nmedians over {args.repeat} repetitions ({args.seconds:g} s windows); error = model / RAPL - 1")
    print(f"{'workload':<27}{'RAPL J':>9}{'above idle':>11}{'model J':>9}{'vs above':>10}{'vs total':>10}"
          f"{'model+idle':>11}{'vs total':>10}")
    for name in names:
        rows = results[name]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"{name:<27}{med['rapl']:9.1f}{med['above_idle']:11.1f}{med['model']:9.1f}"
              f"{err(med['model'], med['above_idle']):>10}{err(med['model'], med['rapl']):>10}"
              f"{med['model_idle']:11.1f}{err(med['model_idle'], med['rapl']):>10}")
    print(f"\n'model+idle': idle share {args.idle_share:g}. RAPL counts the whole package (every process, the "
          "uncore, idle power); the model only the measured process tree.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
