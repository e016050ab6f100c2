"""Does ``greentrack report --last 10`` stay as fast with 100,000 runs as with 100? And ``show`` on a 24-hour 8-GPU run?

Builds, in one go, two databases with the real schema (runs, tags, devices, phases and a
compressed 10 Hz power series per run, inserted directly with SQL in bulk), then times
interleaved repetitions of the same queries on both and prints medians and the ratio:

- in-process: ``query_runs(last=10)`` + ``render_table`` (what the command does after start-up);
- the real command in a subprocess: ``greentrack report --last 10``;
- filtered variants (``--name``, ``--tag``, ``--status failed``).

Then it builds a 24-hour run of 8 GPUs with a 10 Hz series (864,000 points per GPU, stored the
way a finished session stores it) and times ``greentrack show`` on it.

    python benchmarks/bench_report_scale.py [--small 100] [--large 100000] [--reps 7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from greentrack.store import codec
from greentrack.store.sqlite import Store
from greentrack.views.runs import query_runs, render_table

SERIES_S = 120  # each bulk run carries a 2-minute 10 Hz series per device
RUN_COLS = ("id, name, status, started_at, ended_at, duration_s, energy_j, co2e_kg, region, intensity_g_per_kwh, "
            "intensity_source, pue, backend, host, pid, command, tags, job_id, rank, world_size, steps, samples, "
            "tokens, error, notes, stats, budget, updated_at, version")
DEV_COLS = ("run_id, key, kind, idx, name, uuid, method, series_method, energy_j, series_energy_j, avg_power_w, "
            "peak_power_w, n_samples, info")
PHASE_COLS = "run_id, seq, name, started_at, ended_at, energy_j, steps"
SERIES_COLS = "run_id, device_key, seq, t0, t1, n, codec, data"


def encode_np(t_ms: np.ndarray, p_dw: np.ndarray) -> bytes:
    """The store's codec (delta int32 ms and deciwatts, zlib), vectorised for bulk building."""
    n = len(t_ms)
    dt = np.diff(t_ms, prepend=0).astype(np.int32)
    dp = np.diff(p_dw, prepend=0).astype(np.int32)
    return zlib.compress(np.concatenate([[n], dt, dp]).astype(np.int32).tobytes(), 6)


def build(path: Path, n_runs: int, seed: int = 1) -> float:
    """A database of *n_runs* finished runs (1% failed), each with tags, a device, 2 phases and a series."""
    t_start = time.perf_counter()
    store = Store(path)
    conn = store.conn
    rng = random.Random(seed)
    now = time.time()
    t_ms = np.arange(1, SERIES_S * 10 + 1, dtype=np.int64) * 100
    blobs = []
    for k in range(8):  # a few distinct series shapes, reused
        p = (np.where((t_ms // 10_000 + k) % 2 == 0, 6000, 700) + np.random.default_rng(k).integers(-50, 50, len(t_ms)))
        blobs.append(encode_np(t_ms, p.astype(np.int64)))
    runs, tags, devs, phases, series = [], [], [], [], []
    names = ["llama-ft", "bert-base", "resnet50", "vit-l", "t5-small", "whisper"]
    for i in range(n_runs):
        rid = f"{i:012x}"
        started = now - (n_runs - i) * 60.0
        status = "failed" if rng.random() < 0.01 else "finished"
        ej = rng.uniform(1e5, 1e6)
        runs.append((rid, rng.choice(names), status, started, started + SERIES_S, SERIES_S, ej, ej / 3.6e6 * 0.056,
                     "FRA", 56.0, "56 gCO2e/kWh (France; bench)", 1.0, "mock", "bench", 1, None,
                     json.dumps({"precision": rng.choice(["bf16", "fp32"])}), None, None, None, 100, 3200.0,
                     409600.0, None if status == "finished" else "RuntimeError: x", "[]",
                     json.dumps({"step": {"mean_j": ej / 100, "p50_j": ej / 100, "p95_j": ej / 90, "steps": 100}}),
                     None, started + SERIES_S, "0.1.0"))
        tags.append((rid, "precision", json.loads(runs[-1][16])["precision"]))
        devs.append((rid, "gpu0", "gpu", 0, "Mock GPU", "MOCK-0", "counter", "buffer", ej, ej, ej / SERIES_S,
                     600.0, SERIES_S * 10, "{}"))
        phases += [(rid, 0, "train", started, started + SERIES_S * 0.8, ej * 0.8, 100),
                   (rid, 1, "eval", started + SERIES_S * 0.8, started + SERIES_S, ej * 0.2, 0)]
        series.append((rid, "gpu0", 0, started + 0.1, started + SERIES_S, SERIES_S * 10, codec.CODEC,
                       blobs[i % len(blobs)]))
    with store.write():
        conn.executemany(f"INSERT INTO runs ({RUN_COLS}) VALUES ({','.join('?' * 29)})", runs)
        conn.executemany("INSERT INTO run_tags (run_id, key, value) VALUES (?,?,?)", tags)
        conn.executemany(f"INSERT INTO devices ({DEV_COLS}) VALUES ({','.join('?' * 14)})", devs)
        conn.executemany(f"INSERT INTO phases ({PHASE_COLS}) VALUES (?,?,?,?,?,?,?)", phases)
        conn.executemany(f"INSERT INTO series ({SERIES_COLS}) VALUES (?,?,?,?,?,?,?,?)", series)
    conn.execute("ANALYZE")
    store.close()
    return time.perf_counter() - t_start


def build_long_run(path: Path, hours: float = 24.0, gpus: int = 8, hz: float = 10.0) -> str:
    """One run of *gpus* GPUs over *hours*, a *hz* series each, chunked like Store.compact_series."""
    store = Store(path)
    rid = "longrun24h8g"
    started = time.time() - hours * 3600 - 60
    n = int(hours * 3600 * hz)
    rng = np.random.default_rng(0)
    t_ms = (np.arange(1, n + 1, dtype=np.int64) * int(1000 / hz))
    rows = []
    for g in range(gpus):
        base = 4500 + 1500 * np.sin(np.arange(n) / (hz * 3600) * np.pi * 2 + g)  # daily shape, deciwatts
        p = (base + rng.integers(-300, 300, n)).astype(np.int64)
        p[(np.arange(n) // int(hz * 600)) % 7 == 0] = 800  # an idle eval every 70 minutes
        for seq, i in enumerate(range(0, n, 36_000)):
            tt, pp = t_ms[i:i + 36_000], p[i:i + 36_000]
            # each chunk is encoded from its own first point, as codec.encode does per chunk
            blob = zlib.compress(np.concatenate([[len(tt)], np.diff(tt, prepend=0), np.diff(pp, prepend=0)])
                                 .astype(np.int32).tobytes(), 6)
            rows.append((rid, f"gpu{g}", seq, started + tt[0] / 1000, started + tt[-1] / 1000, len(tt), codec.CODEC,
                         blob))
    ej = float(sum(4500 / 10 * hours * 3600 for _ in range(gpus)))
    conn = store.conn
    with store.write():
        conn.execute("INSERT INTO runs (id, name, status, started_at, ended_at, duration_s, energy_j, co2e_kg, region,"
                     " intensity_g_per_kwh, intensity_source, pue, backend, steps, tags) VALUES "
                     "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     (rid, "pretrain-24h", "finished", started, started + hours * 3600, hours * 3600, ej,
                      ej / 3.6e6 * 0.056, "FRA", 56.0, "56 gCO2e/kWh (bench)", 1.1, "nvml", 0, "{}"))
        conn.executemany("INSERT INTO devices (run_id, key, kind, idx, name, method, series_method, energy_j, "
                         "n_samples) VALUES (?,?,?,?,?,?,?,?,?)",
                         [(rid, f"gpu{g}", "gpu", g, "NVIDIA H200", "counter", "buffer", ej / gpus, n)
                          for g in range(gpus)])
        conn.executemany(f"INSERT INTO phases ({PHASE_COLS}) VALUES (?,?,?,?,?,?,?)",
                         [(rid, k, "train" if k % 2 == 0 else "eval", started + k * 3600, started + (k + 1) * 3600,
                           ej / 24, 1000) for k in range(int(hours))])
        conn.executemany(f"INSERT INTO series ({SERIES_COLS}) VALUES (?,?,?,?,?,?,?,?)", rows)
    store.close()
    return rid


def time_inprocess(db: Path, **filters: object) -> float:
    t0 = time.perf_counter()
    render_table(query_runs(db=db, last=10, **filters))
    return time.perf_counter() - t0


def time_cli(*args: str, db: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "greentrack", *args, "--db", str(db)], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"greentrack {' '.join(args)} failed: {p.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--keep", default=None, help="Build the databases in this folder and keep them.")
    a = ap.parse_args()
    folder = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="greentrack-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    small, large = folder / f"runs-{a.small}.db", folder / f"runs-{a.large}.db"
    for p in (small, large):
        for suffix in ("", "-wal", "-shm"):
            Path(str(p) + suffix).unlink(missing_ok=True)
    print(f"building {a.small} runs: {build(small, a.small):.1f}s; {a.large} runs: {build(large, a.large):.1f}s "
          f"({large.stat().st_size / 1e6:.0f} MB)")

    cases = [("query_runs(last=10) + table, in-process", lambda db: time_inprocess(db)),
             ("  ... name='llama-*'", lambda db: time_inprocess(db, name="llama-*")),
             ("  ... tags={'precision': 'bf16'}", lambda db: time_inprocess(db, tags={"precision": "bf16"})),
             ("  ... status='failed'", lambda db: time_inprocess(db, status="failed")),
             ("greentrack report --last 10 (subprocess)", lambda db: time_cli("report", "--last", "10", db=db)),
             ("greentrack report --last 10 --format json", lambda db: time_cli("report", "--last", "10", "--format",
                                                                               "json", db=db))]
    print(f"\n{'case':<44} {a.small:>8} runs {a.large:>8} runs   ratio   (median of {a.reps}, interleaved)")
    for label, fn in cases:
        fn(small), fn(large)  # warm the page cache
        ts, tl = [], []
        for _ in range(a.reps):
            ts.append(fn(small))
            tl.append(fn(large))
        ms, ml = statistics.median(ts) * 1000, statistics.median(tl) * 1000
        print(f"{label:<44} {ms:10.2f} ms {ml:10.2f} ms   {ml / ms:5.2f}x")

    long_db = folder / "long-run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(long_db) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    rid = build_long_run(long_db)
    print(f"\n24-hour 8-GPU 10 Hz run built in {time.perf_counter() - t0:.1f}s "
          f"({long_db.stat().st_size / 1e6:.0f} MB, {8 * 864_000:,} points)")
    from greentrack.views.show import load_view, render_show

    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        render_show(load_view(Store(long_db), rid, width=80))
        times.append(time.perf_counter() - t0)
    print(f"show, in-process (load + bin + render):   median {statistics.median(times) * 1000:7.1f} ms")
    cli = [time_cli("show", rid, "--width", "80", db=long_db) for _ in range(a.reps)]
    print(f"greentrack show (subprocess, end to end): median {statistics.median(cli) * 1000:7.1f} ms, "
          f"max {max(cli) * 1000:.1f} ms")
    if not a.keep:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
