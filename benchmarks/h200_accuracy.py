"""Accuracy of greentrack on a phased workload, against the NVML energy counter read independently.

One workload (idle, heavy training, idle, bursty, a 1 s heavy phase, light, idle) runs once on
GPU 0 while these measure it at the same time:

- greentrack ``counter``: the default (totals from the counter, series from the sample buffer);
- greentrack ``buffer``, ``instant``, ``average``: the counter switched off, totals from that
  series method alone (the fallbacks of a GPU without a counter);
- with ``--peers``: CodeCarbon (OfflineEmissionsTracker, GPU energy) and Zeus (ZeusMonitor window);
- the reference: a thread reading the counter continuously (see h200_common.RefCounter).

It writes the figures as JSON, and with ``--trace DIR`` the raw trace (power samples from the
driver buffer, counter change points, phase bounds) used as the replay fixture in tests/data.

    CUDA_VISIBLE_DEVICES=0 python3 benchmarks/h200_accuracy.py --peers --out accuracy.json --trace tests/data
    python3 benchmarks/h200_accuracy.py --dry-run --scale 0.2     # mock backend, no GPU
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from h200_common import MultiPhase, Workload, dump, env_info, has_gpu, mock_reference, nvml_reference, pct, run_phases  # noqa: E402

CONFIGS = [  # name, series method forced, counter used
    ("counter", None, True),
    ("buffer", "buffer", False),
    ("instant", "instant", False),
    ("average", "average", False),
    ("instant20", "instant", False),  # instant power polled every 20 ms instead of 100 ms
]


def make_sources(dry: bool) -> dict[str, Any]:
    out = {}
    if dry:
        from greentrack.measure.sources.mock import MockSource

        trace = "step:90,650,1.5"
        feats = {"counter": "counter,buffer", "buffer": "buffer", "instant": "instant", "average": "instant",
                 "instant20": "instant"}
        for name, _series, _counter in CONFIGS:
            out[name] = MockSource(trace=trace, features=feats[name])
        return out
    from greentrack.measure.sources.nvml import NVMLSource

    for name, series, counter in CONFIGS:
        out[name] = NVMLSource(series=series, counter=counter, poll_interval_s=0.02 if name == "instant20" else None)
    return out


def start_peers(dry: bool, timings: dict[str, Any]) -> dict[str, Any]:
    peers: dict[str, Any] = {}
    t = time.perf_counter()
    try:
        from codecarbon import OfflineEmissionsTracker

        timings["codecarbon_import_s"] = time.perf_counter() - t
        t = time.perf_counter()
        cc = OfflineEmissionsTracker(country_iso_code="FRA", gpu_ids=[0], save_to_file=False, log_level="error",
                                     measure_power_secs=1)
        t_call = time.time()
        cc.start()
        timings["codecarbon_start_s"] = time.perf_counter() - t
        peers["codecarbon"] = (cc, t_call, time.time())
    except Exception as exc:
        timings["codecarbon_error"] = f"{type(exc).__name__}: {exc}"
    if dry:
        return peers
    t = time.perf_counter()
    try:
        from zeus.monitor import ZeusMonitor

        timings["zeus_import_s"] = time.perf_counter() - t
        t = time.perf_counter()
        zm = ZeusMonitor(gpu_indices=[0], cpu_indices=[])
        t_call = time.time()
        zm.begin_window("workload")
        timings["zeus_start_s"] = time.perf_counter() - t
        peers["zeus"] = (zm, t_call, time.time())
    except Exception as exc:
        timings["zeus_error"] = f"{type(exc).__name__}: {exc}"
    return peers


def stop_peers(peers: dict[str, Any], timings: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "zeus" in peers:
        zm, a, b = peers["zeus"]
        c = time.time()
        t = time.perf_counter()
        m = zm.end_window("workload")
        timings["zeus_stop_s"] = time.perf_counter() - t
        out["zeus"] = {"energy_j": float(sum(m.gpu_energy.values())), "window": [a, b, c, time.time()]}
    if "codecarbon" in peers:
        cc, a, b = peers["codecarbon"]
        c = time.time()
        t = time.perf_counter()
        cc.stop()
        timings["codecarbon_stop_s"] = time.perf_counter() - t
        data = cc.final_emissions_data
        out["codecarbon"] = {"energy_j": float(data.gpu_energy) * 3.6e6, "cpu_j": float(data.cpu_energy) * 3.6e6,
                             "ram_j": float(data.ram_energy) * 3.6e6, "window": [a, b, c, time.time()]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="mock backend, sleeps instead of GPU work")
    ap.add_argument("--peers", action="store_true", help="also run CodeCarbon and Zeus")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every phase duration")
    ap.add_argument("--out", default=None, help="JSON results file")
    ap.add_argument("--trace", default=None, help="folder for h200_trace.csv / h200_trace.json")
    ap.add_argument("--margin", type=float, default=0.0,
                    help="seconds of idle opening and closing each phase (inside it): the power is steady at "
                         "the phase bounds, where the 10 Hz counter is interpolated")
    ap.add_argument("--guard", type=float, default=0.0,
                    help="seconds of idle between phases, in no phase (phase bounds then fall where the power "
                         "is steady, so the 10 Hz counter can be interpolated there)")
    args = ap.parse_args()
    dry = args.dry_run or not has_gpu()
    if dry and not args.dry_run:
        print("no GPU: running the dry run on the mock backend", file=sys.stderr)

    import greentrack

    db = os.path.join(tempfile.mkdtemp(), "acc.db")
    w = Workload(dry, scale=args.scale)
    sources = make_sources(dry)
    if dry:
        ref = mock_reference(type(sources["counter"])(trace=sources["counter"].trace))
    else:
        ref, _nv = nvml_reference([sources["counter"].devices[0].index])
    ref.start()
    time.sleep(0.5)
    timings: dict[str, Any] = {}
    peers = start_peers(dry, timings) if args.peers else {}
    sessions = {}
    direct: dict[str, list[float]] = {}
    for name, src in sources.items():
        s = greentrack.session(f"h200-accuracy-{name}", region="FR", db=db, sources=[src])
        t = time.perf_counter()
        direct[name] = [ref.read(0)]
        s.start()
        timings[f"greentrack_{name}_start_s"] = time.perf_counter() - t
        sessions[name] = s
    t_work0 = time.time()
    marks: list[tuple[float, Any]] = []  # each step's time and samples, for the replay fixture (--trace)
    counter_step = sessions["counter"].step

    def step(samples: Any = None, tokens: Any = None) -> None:
        marks.append((time.time(), samples))
        counter_step(samples=samples, tokens=tokens)

    phases = run_phases(w, MultiPhase(list(sessions.values())), step, guard_s=args.guard, margin_s=args.margin)
    t_work1 = time.time()
    for name, s in reversed(list(sessions.items())):
        t = time.perf_counter()
        s.stop()
        timings[f"greentrack_{name}_stop_s"] = time.perf_counter() - t
        direct[name].append(ref.read(0))
    peer_res = stop_peers(peers, timings)
    time.sleep(0.3)
    ref.stop()

    results: dict[str, Any] = {"env": env_info(), "dry_run": dry, "scale": args.scale, "guard_s": args.guard,
                               "margin_s": args.margin, "timings": timings,
                               "ref_counter_reads": ref.n_reads, "workload_s": t_work1 - t_work0, "configs": {}}
    for name, s in sessions.items():
        r = s.result
        d = r.devices[0]
        ref_total = ref.delta(r.started_at, r.ended_at)
        direct_total = direct[name][1] - direct[name][0]
        rows = []
        for p, _rec in zip(r.phases, phases):
            ref_p = ref.delta(p.started_at, p.ended_at)
            raw_p = raw_buffer_j(ref.samples[0], p.started_at, p.ended_at)
            rows.append({"name": p.name, "duration_s": p.duration_s, "energy_j": p.energy_j, "ref_j": ref_p,
                         "err_pct": pct(p.energy_j or 0.0, ref_p), "steps": p.steps,
                         # the driver's own power samples over the phase, integrated here: how far the samples
                         # themselves are from the counter, and greentrack's phase from them
                         "raw_buffer_j": raw_p, "raw_err_pct": pct(raw_p, ref_p) if raw_p else None,
                         "err_vs_raw_pct": pct(p.energy_j or 0.0, raw_p) if raw_p else None})
        results["configs"][name] = {
            "method": d.method, "series_method": d.series_method, "energy_j": r.energy_j,
            "series_energy_j": d.series_energy_j, "n_samples": d.n_samples, "ref_j": ref_total,
            "err_pct": pct(r.energy_j or 0.0, ref_total), "direct_ref_j": direct_total,
            "err_vs_direct_pct": pct(r.energy_j or 0.0, direct_total), "duration_s": r.duration_s,
            "phases": rows, "outside_phases_j": r.outside_phases_j, "step_stats": r.step_stats, "info": d.info}
    for name, pr in peer_res.items():
        a, b, c, e = pr["window"]
        outer, inner = ref.delta(a, e), ref.delta(b, c)
        # err_pct: against the mean of the outer window [start called, stop returned] and the inner one
        # [start returned, stop called]; err_inner_pct: against the window the peer itself measured (the
        # figure the README quotes). They differ by half the energy of the peer's own start-up time.
        pr.update(ref_outer_j=outer, ref_inner_j=inner, err_pct=pct(pr["energy_j"], (outer + inner) / 2),
                  err_inner_pct=pct(pr["energy_j"], inner), start_call_s=b - a)
        results.setdefault("peers", {})[name] = pr
    # buffer samples vs counter: the raw 50 Hz integration over the whole workload
    samples = ref.samples[0]
    if len(samples) > 2:
        def trapezoid_j(ts: list[float], ps: list[float]) -> float:  # the raw samples, integrated directly
            return sum(0.5 * (ps[i] + ps[i - 1]) * (ts[i] - ts[i - 1]) for i in range(1, len(ts)))

        inside = [(t, p) for t, p in samples if t_work0 <= t <= t_work1]
        if len(inside) > 2:
            e = sum(0.5 * (p0 + p1) * (t1 - t0) for (t0, p0), (t1, p1) in zip(inside, inside[1:]))  # trapezoid
            rj = ref.delta(inside[0][0], inside[-1][0])
            results["raw_buffer"] = {"n": len(inside), "energy_j": e, "ref_j": rj, "err_pct": pct(e, rj),
                                     "period_s": (inside[-1][0] - inside[0][0]) / (len(inside) - 1)}
    if args.trace:
        write_trace(Path(args.trace), ref, phases, sessions["counter"], results, marks)
    dump(results, args.out)
    return 0


def raw_buffer_j(samples: list[tuple[float, float]], a: float, b: float) -> float | None:
    """The trapezoid of the driver's power samples over ``[a, b]``, the power interpolated at the bounds;
    None where the samples do not cover the window."""
    if len(samples) < 2 or samples[0][0] > a or samples[-1][0] < b:
        return None
    e = 0.0
    for (t0, p0), (t1, p1) in zip(samples, samples[1:]):
        lo, hi = max(a, t0), min(b, t1)
        if hi <= lo or t1 <= t0:
            continue
        p_lo = p0 + (p1 - p0) * (lo - t0) / (t1 - t0)
        p_hi = p0 + (p1 - p0) * (hi - t0) / (t1 - t0)
        e += 0.5 * (p_lo + p_hi) * (hi - lo)
    return e


def write_trace(folder: Path, ref: Any, phases: list[dict], s: Any, results: dict,
                marks: list[tuple[float, Any]]) -> None:
    """The recorded trace: CSV of raw power samples, JSON of counter change points and phases."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = s.result.started_at - 1.0
    t1 = s.result.ended_at + 1.0
    samples = [(t, p) for t, p in ref.samples[0] if t0 <= t <= t1]
    base = samples[0][0] if samples else t0
    with open(folder / "h200_trace.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["t_s", "power_w"])
        for t, p in samples:
            wr.writerow([f"{t - base:.6f}", f"{p:.3f}"])
    counter = [(round(t - base, 6), round(v - ref.reads[0][0][1], 3)) for t, v in ref.reads[0] if t0 <= t <= t1]
    meta = {
        "what": "NVIDIA H200 power samples (NVML_TOTAL_POWER_SAMPLES, driver buffer) and energy counter "
                "change points during the phased workload of benchmarks/h200_accuracy.py",
        "env": results["env"], "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "time_origin": "t=0 is the first power sample in h200_trace.csv",
        "session": {"started_at": s.result.started_at - base, "ended_at": s.result.ended_at - base,
                    "energy_j": s.result.energy_j},
        "phases": [{"name": p["name"], "t0": p["t0"] - base, "t1": p["t1"] - base} for p in phases],
        "counter": counter,
        "counter_units": "joules relative to the first counter reading",
        "steps": [[round(t - base, 6), n] for t, n in marks],
        "greentrack": {k: results["configs"]["counter"][k] for k in ("energy_j", "ref_j", "phases", "step_stats")},
        "dry_run": results["dry_run"],
    }
    (folder / "h200_trace.json").write_text(json.dumps(meta, indent=0))


if __name__ == "__main__":
    raise SystemExit(main())
