"""What the Prometheus exporter costs: one scrape, and its effect on a training loop.

1. One scrape with 4 concurrent sessions of 8 (mock) GPUs each, with phases:
   - in the process: collect + format (``generate_latest``), and a whole HTTP GET of /metrics;
   - node level (``serve-metrics``): a read of the store for the 4 running runs, plus formatting.
2. A training loop (pure-Python steps that hold the GIL, ``session.step()`` each):
   - in one process with the endpoint serving, blocks of steps alternately scraped (from another
     process) and not: the ratio of their times (fine interleaving, so the machine's load hits both);
   - fresh processes with the endpoint scraped, against the same loop with the plugin installed but
     no endpoint (the whole cost, start-up included), interleaved in pairs: the ratios of the pairs.

Run from a greentrack checkout (no GPU needed; the mock backend stands in for the hardware):

    PYTHONPATH=$PWD:$PWD/plugins/greentrack-prometheus/src \
        python3 plugins/greentrack-prometheus/benchmarks/bench_scrape.py

``--reps N`` sets the loop repetitions per kind (default 7), ``--scrape-hz`` the scrape rates to
try (default 1 and 10: Prometheus' usual 15 s interval is far gentler).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

LOOP = r"""
import os, sys, time
import greentrack
from greentrack import plugins
import greentrack_prometheus
plugins.register(greentrack_prometheus, name="prometheus")  # what the entry point does when installed
steps = int(sys.argv[1])
with greentrack.session("bench-loop") as s:
    t0 = time.perf_counter()
    for i in range(steps):
        x = 0
        for j in range(400):  # ~20-40 us of Python holding the GIL
            x += j * j
        s.step()
        if i == steps // 2:
            with s.phase("eval"):
                pass
    dt = time.perf_counter() - t0
print(dt, flush=True)
"""

BLOCKS = r"""
import os, statistics, sys, time
import greentrack
from greentrack import plugins
import greentrack_prometheus
plugins.register(greentrack_prometheus, name="prometheus")
flag, pairs, block_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def block(s, n):
    t0 = time.perf_counter()
    for i in range(n):
        x = 0
        for j in range(400):
            x += j * j
        s.step()
    return time.perf_counter() - t0
with greentrack.session("bench-blocks") as s:
    print(greentrack_prometheus.endpoint(), flush=True)
    n = 200
    while block(s, n) < block_s / 4:  # steps for about one block
        n *= 2
    n = int(n * block_s / block(s, n))
    on, off = [], []
    for i in range(pairs):
        for serving in ((True, False) if i % 2 == 0 else (False, True)):
            if serving:
                open(flag, "w").close()
            elif os.path.exists(flag):
                os.remove(flag)
            time.sleep(0.05)
            (on if serving else off).append(block(s, n))
    if os.path.exists(flag):
        os.remove(flag)
print(sum(on) / sum(off), statistics.median(a / b for a, b in zip(on, off)), n, flush=True)
"""

SCRAPER = r"""
import os, sys, time, urllib.request
port, hz, parent = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
url = f"http://127.0.0.1:{port}/metrics"
deadline = time.time() + 600
flag = sys.argv[4] if len(sys.argv) > 4 else None
while os.getppid() == parent and time.time() < deadline:  # never outlives the benchmark
    if flag is not None and not os.path.exists(flag):  # scrape only while the flag file exists
        time.sleep(0.01)
        continue
    t = time.time()
    try:
        urllib.request.urlopen(url, timeout=2).read()
    except OSError:
        pass
    time.sleep(max(0.0, 1.0 / hz - (time.time() - t)))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def medians_ms(fns: list, n: int) -> list[float]:
    """Median time of each of *fns*, called in turn (interleaved, so load changes hit them alike), in ms."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, bucket in zip(fns, times):
            a = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - a)
    return [statistics.median(b) * 1e3 for b in times]


def median_ms(fn, n: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(n):
        a = time.perf_counter()
        fn()
        times.append(time.perf_counter() - a)
    return statistics.median(times) * 1e3


def scrape_cost(tmp: Path) -> float:
    import greentrack_prometheus as gp
    from greentrack_prometheus.metrics import RunsCollector, store_up
    from greentrack_prometheus.node import NodeExporter
    from prometheus_client import CollectorRegistry, generate_latest

    import greentrack
    from greentrack import plugins

    os.environ.update(GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="constant:300", GREENTRACK_MOCK_GPUS="8",
                      GREENTRACK_FLUSH_INTERVAL="0.5", GREENTRACK_DB=str(tmp / "bench.db"),
                      GREENTRACK_PROMETHEUS_PORT=str(free_port()), GREENTRACK_PROMETHEUS_ADDR="127.0.0.1")
    plugins.register(gp, name="prometheus")
    sessions = [greentrack.session(f"bench-{i}", tags={"i": str(i)}).start() for i in range(4)]
    phases = [s.phase(name) for s, name in zip(sessions, ("train", "eval", "train", "save"))]
    for p in phases:
        p.__enter__()
    time.sleep(3.0)  # a few flushes with samples
    for p in phases:
        p.__exit__(None, None, None)
    time.sleep(1.2)
    url = gp.endpoint()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(gp.collector())
    body = generate_latest(registry)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    n = 300
    fmt, http = medians_ms([lambda: generate_latest(registry), lambda: urllib.request.urlopen(url, timeout=5).read()],
                           n)
    node = NodeExporter(Path(os.environ["GREENTRACK_DB"]), grace_s=120, min_refresh_s=0.0)
    node_reg = CollectorRegistry(auto_describe=False)
    node_reg.register(RunsCollector(node.snapshots, with_phase=False, extra=lambda: [store_up(node.ok)]))
    node_body = generate_latest(node_reg)
    node_series = sum(1 for line in node_body.splitlines() if line and not line.startswith(b"#"))
    node_ms = median_ms(lambda: generate_latest(node_reg), 100)
    for s in sessions:
        s.stop()
    print(f"one scrape, 4 sessions x 8 devices, in the process: {series} series, {len(body)} bytes; "
          f"collect+format {fmt:.2f} ms, HTTP GET {http:.2f} ms (medians of {n})")
    print(f"one scrape, node level (serve-metrics, 4 running runs x 8 devices in SQLite): {node_series} series, "
          f"{len(node_body)} bytes; store read+format {node_ms:.2f} ms (median of 100)")
    return http


def loop_effect(tmp: Path, reps: int, rates: list[float], steps: int) -> None:
    here = Path(__file__).resolve()
    src = here.parents[1] / "src"
    base = {k: v for k, v in os.environ.items() if not k.startswith("GREENTRACK_PROMETHEUS_")}
    base.update(GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="constant:300", GREENTRACK_MOCK_GPUS="8",
                GREENTRACK_DB=str(tmp / "loop.db"),
                PYTHONPATH=os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p))

    def run(port: int | None, hz: float) -> float:
        env = dict(base)
        if port is not None:
            env.update(GREENTRACK_PROMETHEUS_PORT=str(port), GREENTRACK_PROMETHEUS_ADDR="127.0.0.1")
        proc = subprocess.Popen([sys.executable, "-c", LOOP, str(steps)], env=env, stdout=subprocess.PIPE, text=True)
        scraper = None
        if port is not None:  # another process, as a Prometheus server is
            scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, str(port), str(hz), str(os.getpid())],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            out, _ = proc.communicate(timeout=600)
        finally:
            if scraper is not None:
                scraper.terminate()
                scraper.wait()
        return float(out.strip().splitlines()[-1])

    for hz in rates:
        on: list[float] = []
        off: list[float] = []
        for i in range(reps):  # pairs, alternating which kind goes first
            pair = [(True, on), (False, off)] if i % 2 == 0 else [(False, off), (True, on)]
            for serving, bucket in pair:
                bucket.append(run(free_port() if serving else None, hz))
        ratios = sorted(a / b for a, b in zip(on, off))
        q1, med, q3 = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else (ratios[0],) * 3
        print(f"training loop ({steps} GIL-bound steps, 8 mock GPUs, flush 2 s), endpoint scraped at {hz:g} Hz vs "
              f"plugin without endpoint: medians {statistics.median(on):.3f} s vs {statistics.median(off):.3f} s; "
              f"ratio of the pairs: median {med:.4f} (quartiles {q1:.4f}-{q3:.4f}, {reps} interleaved pairs)")


def block_effect(tmp: Path, rates: list[float], pairs: int, block_s: float) -> None:
    """In one process: blocks of training steps, alternately scraped and not (a flag file tells the scraper)."""
    src = Path(__file__).resolve().parents[1] / "src"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENTRACK_PROMETHEUS_")}
    env.update(GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="constant:300", GREENTRACK_MOCK_GPUS="8",
               GREENTRACK_DB=str(tmp / "blocks.db"), GREENTRACK_PROMETHEUS_ADDR="127.0.0.1",
               PYTHONPATH=os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p))
    for hz in rates:
        port = free_port()
        flag = tmp / f"scrape-{hz:g}"
        proc = subprocess.Popen([sys.executable, "-c", BLOCKS, str(flag), str(pairs), str(block_s)],
                                env=dict(env, GREENTRACK_PROMETHEUS_PORT=str(port)), stdout=subprocess.PIPE, text=True)
        scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, str(port), str(hz), str(os.getpid()), str(flag)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            out, _ = proc.communicate(timeout=900)
        finally:
            scraper.terminate()
            scraper.wait()
        ratio, med, steps = out.strip().splitlines()[-1].split()
        print(f"training loop in one process, {pairs} pairs of {block_s:g} s blocks ({steps} GIL-bound steps each), "
              f"scraped at {hz:g} Hz vs not scraped, alternating: total-time ratio {float(ratio):.4f}, "
              f"median pair ratio {float(med):.4f}")


def hook_cost() -> float:
    """Median time of the exporter's greentrack_samples work for one flush of 8 devices x 20 samples, in ms."""
    from types import SimpleNamespace

    from greentrack_prometheus.exporter import ProcessExporter
    from greentrack_prometheus.state import NO_PHASE

    exp = ProcessExporter()
    devices = [SimpleNamespace(key=f"gpu{i}", name="GPU", uuid=f"GPU-{i}", method="counter") for i in range(8)]
    t0 = time.time() - 2.0 * 400 - 10  # the flushes below all lie in the past, as real ones do
    clock = {"t": t0}
    phases = (SimpleNamespace(name="train", started_at=t0, ended_at=None),)

    class View(SimpleNamespace):
        @property
        def device_energy_j(self) -> dict[str, float]:
            return {d.key: 300.0 * (clock["t"] - t0) for d in devices}

        @property
        def device_energy_span(self) -> dict[str, tuple[float, float]]:
            return {d.key: (t0, clock["t"]) for d in devices}

    run = View(id="bench", name="bench", job_id="j", rank=0, started_at=t0, ended_at=None, region="FRA",
               intensity_g_per_kwh=56.0, intensity_source="bench", pue=1.0, devices=devices, current_phase=None,
               steps=0, phases=phases)
    exp.recording = True
    exp.start_run(run)
    times = []
    for k in range(1, 400):
        clock["t"] = t0 + 2.0 * k
        ts = [clock["t"] - 2.0 + 0.1 * (j + 1) for j in range(20)]
        batch = [(d.key, ts, [300.0] * 20) for d in devices]
        a = time.perf_counter()
        exp.samples(run, batch)
        times.append(time.perf_counter() - a)
    assert NO_PHASE not in {ph for _, ph in exp.runs["bench"].energy if exp.runs["bench"].energy[(_, ph)] > 0}
    return statistics.median(times[20:]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--steps", type=int, default=30000)
    ap.add_argument("--scrape-hz", type=float, nargs="*", default=[1.0, 10.0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--block-s", type=float, default=1.0)
    ap.add_argument("--skip-loop", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        hook_ms = hook_cost()
        print(f"greentrack_samples (sampler thread, once per flush), 8 devices x 20 samples: {hook_ms:.3f} ms "
              f"(median of 380); at the default 2 s flush: {hook_ms / 2000 * 100:.3f} % of one core")
        scrape_ms = scrape_cost(tmp)
        for hz in args.scrape_hz:
            print(f"time the exporter can hold the GIL away from training at {hz:g} scrape/s: at most "
                  f"{(hook_ms / 2000 + scrape_ms * hz / 1000) * 100:.3f} % (flush hook + a whole HTTP scrape)")
        if not args.skip_loop:
            block_effect(tmp, args.scrape_hz, args.pairs, args.block_s)
            loop_effect(tmp, args.reps, args.scrape_hz, args.steps)


if __name__ == "__main__":
    main()
