"""Does ``greentrack report --last 10`` on PostgreSQL stay as fast with 100,000 runs as with 100?

The PostgreSQL twin of bench_report_scale.py. Starts a throwaway cluster (tests/pg_cluster.py: initdb
in a temporary folder, a Unix socket, as the ``postgres`` user when run as root), or uses ``--url``.
Builds two databases (two schemas) with greentrack's own schema (created by the store itself) and
bulk rows through ``COPY``: runs (1% failed), a tag, a device, two phases and a compressed 10 Hz
power series per run. Then times interleaved repetitions of the same reads on both and prints
medians and the ratio:

- in-process: ``query_runs(last=10)`` + ``render_table`` (what the command does after start-up),
  and the filtered variants (``name``, ``tags``, ``status='failed'``);
- the real command in a subprocess: ``greentrack report --last 10`` (and ``--format json``).

    python benchmarks/bench_report_pg.py [--small 100] [--large 100000] [--reps 7] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SERIES_S = 30  # each bulk run carries a 30-second 10 Hz series


def encode_np(t_ms: np.ndarray, p_dw: np.ndarray) -> bytes:
    """The store's codec (delta int32 ms and deciwatts, zlib), vectorised for bulk building."""
    n = len(t_ms)
    dt = np.diff(t_ms, prepend=0).astype(np.int32)
    dp = np.diff(p_dw, prepend=0).astype(np.int32)
    return zlib.compress(np.concatenate([[n], dt, dp]).astype(np.int32).tobytes(), 6)


def build(url: str, n_runs: int, seed: int = 1) -> float:
    """*n_runs* finished runs (1% failed) in the database at *url*, each with a tag, a device, 2 phases, a series."""
    from greentrack.store import codec, open_location

    t_start = time.perf_counter()
    store = open_location(url)  # creates the schema through the store's own migrations
    store.close()
    import psycopg

    rng = random.Random(seed)
    now = time.time()
    t_ms = np.arange(1, SERIES_S * 10 + 1, dtype=np.int64) * 100
    blobs = [encode_np(t_ms, (np.where((t_ms // 10_000 + k) % 2 == 0, 6000, 700)
                              + np.random.default_rng(k).integers(-50, 50, len(t_ms))).astype(np.int64))
             for k in range(8)]
    names = ["llama-ft", "bert-base", "resnet50", "vit-l", "t5-small", "whisper"]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY runs (id, name, status, started_at, ended_at, duration_s, energy_j, co2e_kg, region, "
                      "intensity_g_per_kwh, intensity_source, pue, backend, host, pid, tags, steps, error, notes, "
                      "stats, updated_at, version) FROM STDIN") as cp:
            for i in range(n_runs):
                started = now - (n_runs - i) * 60.0
                status = "failed" if rng.random() < 0.01 else "finished"
                ej = rng.uniform(1e5, 1e6)
                prec = rng.choice(["bf16", "fp32"])
                cp.write_row((f"{i:012x}", rng.choice(names), status, started, started + SERIES_S, SERIES_S, ej,
                              ej / 3.6e6 * 0.056, "FR", 56.0, "56 gCO2e/kWh (France; bench)", 1.0, "mock", "bench",
                              1, json.dumps({"precision": prec}), 100,
                              None if status == "finished" else "RuntimeError: x", "[]",
                              json.dumps({"step": {"mean_j": ej / 100, "steps": 100}}), started + SERIES_S, "0.1.0"))
        rng = random.Random(seed)
        with cur.copy("COPY run_tags (run_id, key, value) FROM STDIN") as cp:
            for i in range(n_runs):
                cp.write_row((f"{i:012x}", "precision", "bf16" if i % 2 else "fp32"))
        with cur.copy("COPY devices (run_id, key, kind, idx, name, uuid, method, series_method, energy_j, "
                      "n_samples, info) FROM STDIN") as cp:
            for i in range(n_runs):
                cp.write_row((f"{i:012x}", "gpu0", "gpu", 0, "Mock GPU", "MOCK-0", "counter", "buffer", 5e5,
                              SERIES_S * 10, "{}"))
        with cur.copy("COPY phases (run_id, seq, name, started_at, ended_at, energy_j, steps) FROM STDIN") as cp:
            for i in range(n_runs):
                started = now - (n_runs - i) * 60.0
                cp.write_row((f"{i:012x}", 0, "train", started, started + SERIES_S * 0.8, 4e5, 100))
                cp.write_row((f"{i:012x}", 1, "eval", started + SERIES_S * 0.8, started + SERIES_S, 1e5, 0))
        with cur.copy("COPY series (run_id, device_key, seq, t0, t1, n, codec, data) FROM STDIN") as cp:
            for i in range(n_runs):
                started = now - (n_runs - i) * 60.0
                cp.write_row((f"{i:012x}", "gpu0", 0, started + 0.1, started + SERIES_S, SERIES_S * 10, codec.CODEC,
                              blobs[i % len(blobs)]))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return time.perf_counter() - t_start


def time_inprocess(url: str, **filters: object) -> float:
    from greentrack.api import query_runs
    from greentrack.views.runs import render_table

    t0 = time.perf_counter()
    rows = query_runs(db=url, last=10, **filters)
    render_table(rows)
    dt = time.perf_counter() - t0
    assert len(rows) == 10 or filters.get("status") == "failed", len(rows)
    return dt


def time_cli(*args: str, url: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "greentrack", *args, "--db", url], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"greentrack {' '.join(args)} failed: {p.stderr}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--url", default=None, help="A PostgreSQL database to use (two schemas are created in it).")
    a = ap.parse_args()
    cluster = None
    if a.url is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg_cluster import Cluster

        cluster = Cluster()
        base = cluster.base_url
    else:
        base = a.url
    try:
        import psycopg

        stamp = f"{int(time.time())}"
        urls = {}
        for label, n in (("small", a.small), ("large", a.large)):
            schema = f"bench_{label}_{n}_{stamp}"
            with psycopg.connect(base, autocommit=True) as c:
                c.execute(f'CREATE SCHEMA "{schema}"')
            sep = "&" if "?" in base else "?"
            urls[label] = f"{base}{sep}options=-csearch_path%3D{schema}"
        small, large = urls["small"], urls["large"]
        with psycopg.connect(base) as c:
            version = c.execute("SHOW server_version").fetchone()[0]
        print(f"PostgreSQL {version}; building {a.small} runs: {build(small, a.small):.1f}s; "
              f"{a.large} runs: {build(large, a.large):.1f}s")
        cases = [("query_runs(last=10) + table, in-process", lambda u: time_inprocess(u)),
                 ("  ... name='llama-*'", lambda u: time_inprocess(u, name="llama-*")),
                 ("  ... tags={'precision': 'bf16'}", lambda u: time_inprocess(u, tags={"precision": "bf16"})),
                 ("  ... status='failed'", lambda u: time_inprocess(u, status="failed")),
                 ("greentrack report --last 10 (subprocess)", lambda u: time_cli("report", "--last", "10", url=u)),
                 ("greentrack report --last 10 --format json",
                  lambda u: time_cli("report", "--last", "10", "--format", "json", url=u))]
        print(f"\n{'case':<44} {a.small:>8} runs {a.large:>8} runs   ratio   (median of {a.reps}, interleaved)")
        for label, fn in cases:
            fn(small), fn(large)  # warm the caches
            ts, tl = [], []
            for _ in range(a.reps):
                ts.append(fn(small))
                tl.append(fn(large))
            ms, ml = statistics.median(ts) * 1000, statistics.median(tl) * 1000
            print(f"{label:<44} {ms:10.2f} ms {ml:10.2f} ms   {ml / ms:5.2f}x")
    finally:
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
