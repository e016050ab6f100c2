"""What NVML really returns on this machine: API shapes, latencies, update rates, selection.

For each GPU: ``nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)`` (value type, samples held,
period, timestamp base against the wall clock), ``nvmlDeviceGetFieldValues(POWER_INSTANT)``
(value type, return code, timestamp), ``nvmlDeviceGetPowerUsage``, the energy counter, the
median and p99 latency of each call, and how often the counter and the instant field change.
Then which GPU greentrack's NVML source picks under CUDA_VISIBLE_DEVICES by index and UUID and
under LOCAL_RANK, each in a fresh process, and the cost of a session start + stop.

    python3 benchmarks/h200_probe.py --out probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from h200_common import ROOT, dump, env_info  # noqa: E402


def lat(fn: Callable[[], Any], n: int) -> dict[str, float]:
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t)
    xs.sort()
    return {"median_ms": statistics.median(xs) * 1e3, "p99_ms": xs[int(0.99 * (len(xs) - 1))] * 1e3, "n": n}


def changes_per_s(fn: Callable[[], Any], seconds: float) -> float:
    end = time.time() + seconds
    prev = fn()
    k = 0
    while time.time() < end:
        v = fn()
        if v != prev:
            k += 1
            prev = v
        time.sleep(0.002)
    return k / seconds


def probe_gpu(nv: Any, i: int) -> dict[str, Any]:
    from greentrack.measure.sources.nvml import value_of

    h = nv.nvmlDeviceGetHandleByIndex(i)
    g: dict[str, Any] = {"index": i, "name": str(nv.nvmlDeviceGetName(h)), "uuid": str(nv.nvmlDeviceGetUUID(h))}
    try:
        g["mig_mode"] = list(nv.nvmlDeviceGetMigMode(h))
    except Exception as exc:
        g["mig_mode"] = f"{type(exc).__name__}: {exc}"
    now_us = int(time.time() * 1e6)
    try:
        vt, ss = nv.nvmlDeviceGetSamples(h, nv.NVML_TOTAL_POWER_SAMPLES, 0)
        ts = sorted(int(s.timeStamp) for s in ss)
        g["samples"] = {"value_type": vt, "n_held": len(ss), "span_s": (ts[-1] - ts[0]) / 1e6 if ts else None,
                        "period_ms": (ts[-1] - ts[0]) / 1e3 / (len(ts) - 1) if len(ts) > 1 else None,
                        "newest_minus_wallclock_ms": (ts[-1] - now_us) / 1e3 if ts else None,
                        "first_values": [[int(s.timeStamp), value_of(vt, s.sampleValue),
                                          s.sampleValue.uiVal] for s in ss[:3]],
                        "python_type": type(ss).__name__, "elem_type": type(ss[0]).__name__ if ss else None}
        g["samples"]["latency_since_1s"] = lat(lambda: nv.nvmlDeviceGetSamples(
            h, nv.NVML_TOTAL_POWER_SAMPLES, int((time.time() - 1) * 1e6)), 100)
        time.sleep(0.2)
        try:
            _vt, ss2 = nv.nvmlDeviceGetSamples(h, nv.NVML_TOTAL_POWER_SAMPLES, int(time.time() * 1e6))
            g["samples"]["since_now"] = len(ss2)
        except nv.NVMLError as exc:
            g["samples"]["since_now"] = f"NVMLError value={getattr(exc, 'value', None)}: {exc}"
    except Exception as exc:
        g["samples"] = f"{type(exc).__name__}: {exc}"
    try:
        v = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])[0]
        g["instant"] = {"valueType": int(v.valueType), "nvmlReturn": int(v.nvmlReturn), "fieldId": int(v.fieldId),
                        "timestamp_minus_wallclock_ms": (int(v.timestamp) - int(time.time() * 1e6)) / 1e3,
                        "latencyUsec": int(v.latencyUsec), "watts": value_of(v.valueType, v.value) / 1000.0,
                        "uiVal": int(v.value.uiVal), "python_type": type(v).__name__}
        g["instant"]["latency"] = lat(lambda: nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT]), 200)
        g["instant"]["changes_per_s"] = changes_per_s(
            lambda: nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])[0].value.uiVal, 1.0)
    except Exception as exc:
        g["instant"] = f"{type(exc).__name__}: {exc}"
    try:
        g["power_usage_mw"] = nv.nvmlDeviceGetPowerUsage(h)
        g["power_usage_latency"] = lat(lambda: nv.nvmlDeviceGetPowerUsage(h), 200)
    except Exception as exc:
        g["power_usage_mw"] = f"{type(exc).__name__}: {exc}"
    try:
        g["counter_mj"] = nv.nvmlDeviceGetTotalEnergyConsumption(h)
        g["counter_latency"] = lat(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h), 100)
        g["counter_changes_per_s"] = changes_per_s(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h), 1.0)
    except Exception as exc:
        g["counter_mj"] = f"{type(exc).__name__}: {exc}"
    return g


PICK = ("import json; from greentrack.measure.sources.nvml import NVMLSource; s = NVMLSource(); "
        "print(json.dumps([[d.key, d.uuid, d.method, d.series_method, d.info] for d in s.devices])); s.close()")


def picks(uuids: list[str]) -> dict[str, Any]:
    cases: dict[str, dict[str, str]] = {"unset": {}}
    if len(uuids) > 1:
        cases.update({"CVD=1": {"CUDA_VISIBLE_DEVICES": "1"}, "CVD=1,0": {"CUDA_VISIBLE_DEVICES": "1,0"},
                      "CVD=uuid1": {"CUDA_VISIBLE_DEVICES": uuids[1]},
                      "CVD=uuid1-prefix": {"CUDA_VISIBLE_DEVICES": uuids[1][:12]},
                      "LOCAL_RANK=1": {"LOCAL_RANK": "1", "RANK": "1", "WORLD_SIZE": "2"},
                      "LOCAL_RANK=1,ALL_GPUS": {"LOCAL_RANK": "1", "GREENTRACK_ALL_GPUS": "1"},
                      "counter off, series instant": {"GREENTRACK_NVML_COUNTER": "off",
                                                      "GREENTRACK_NVML_SERIES": "instant"}})
    cases["CVD=0"] = {"CUDA_VISIBLE_DEVICES": "0"}
    cases["CVD=uuid0"] = {"CUDA_VISIBLE_DEVICES": uuids[0]}
    out = {}
    for name, extra in cases.items():
        env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "LOCAL_RANK")}
        env.update(extra)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        p = subprocess.run([sys.executable, "-c", PICK], capture_output=True, text=True, env=env, timeout=60)
        out[name] = json.loads(p.stdout) if p.returncode == 0 else p.stderr.strip()[-300:]
    return out


def session_cost(n: int = 5) -> dict[str, Any]:
    import tempfile

    from greentrack.measure.tracker import Session

    db = os.path.join(tempfile.mkdtemp(), "p.db")
    starts, stops = [], []
    for _ in range(n):
        s = Session("probe", region="FR", db=db, backend="nvml")
        t = time.perf_counter()
        s.start()
        starts.append(time.perf_counter() - t)
        time.sleep(0.2)
        t = time.perf_counter()
        s.stop()
        stops.append(time.perf_counter() - t)
    return {"start_ms": [round(x * 1e3, 2) for x in starts], "stop_ms": [round(x * 1e3, 2) for x in stops],
            "method": [d.method for d in s.result.devices]}


def import_cost() -> dict[str, float]:
    def t(code: str) -> float:
        xs = []
        for _ in range(5):
            a = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)))
            xs.append(time.perf_counter() - a)
        return statistics.median(xs)

    base = t("pass")
    return {"import_greentrack_ms": (t("import greentrack") - base) * 1e3,
            "import_greentrack_session_ms": (t("import greentrack.measure.tracker") - base) * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import pynvml as nv

    t = time.perf_counter()
    nv.nvmlInit()
    res: dict[str, Any] = {"env": env_info(), "nvmlInit_ms": (time.perf_counter() - t) * 1e3,
                           "pynvml_file": nv.__file__}
    try:
        from importlib.metadata import version

        res["nvidia_ml_py"] = version("nvidia-ml-py")
    except Exception:
        pass
    count = nv.nvmlDeviceGetCount()
    res["gpus"] = [probe_gpu(nv, i) for i in range(count)]
    uuids = [g["uuid"] for g in res["gpus"]]
    nv.nvmlShutdown()
    res["selection"] = picks(uuids)
    res["session_start_stop"] = session_cost()
    res["import"] = import_cost()
    dump(res, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
