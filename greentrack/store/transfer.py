"""Moving runs in and out: greentrack's export format, and CodeCarbon's ``emissions.csv``.

Export (``greentrack export``) writes a JSON document, schema ``greentrack.export`` version 1:
every run with its devices, phases, tags, notes, step statistics and optionally its power series.
``greentrack import greentrack FILE`` reads it back into another database.

``greentrack import codecarbon emissions.csv`` turns each CodeCarbon run (one row per ``run_id``;
in CodeCarbon's "append" mode a run may have several cumulative rows, the last one wins) into a
finished greentrack run with CPU, GPU and RAM as devices (method ``codecarbon``) and CodeCarbon's
own emissions and intensity. Imported run ids are derived from the source, so importing the same
file twice adds nothing the second time.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from ..errors import GreentrackError
from ..units import J_PER_KWH
from . import codec
from .sqlite import Store

EXPORT_SCHEMA = "greentrack.export"
EXPORT_VERSION = 1
RUN_COLUMNS = ("id", "name", "status", "started_at", "ended_at", "duration_s", "energy_j", "co2e_kg", "region",
               "intensity_g_per_kwh", "intensity_source", "pue", "backend", "host", "pid", "command", "tags",
               "job_id", "rank", "world_size", "steps", "samples", "tokens", "error", "notes", "stats", "budget",
               "updated_at", "version")
DEVICE_COLUMNS = ("key", "kind", "idx", "name", "uuid", "method", "series_method", "energy_j", "series_energy_j",
                  "avg_power_w", "peak_power_w", "n_samples", "info")
PHASE_COLUMNS = ("seq", "name", "started_at", "ended_at", "energy_j", "steps")
CODECARBON_REQUIRED = ("timestamp", "duration", "emissions", "energy_consumed")


# export -----------------------------------------------------------------------------------------
def export_runs(store: Store, run_ids: Iterable[str], series: bool = False) -> dict[str, Any]:
    """The export document for these runs (times are unix seconds; series as offsets from start)."""
    from .series import read_series_np

    out = []
    for rid in run_ids:
        run = store.get_run(rid)
        rec = {k: run.get(k) for k in RUN_COLUMNS}
        rec["status"] = run["status"]
        rec["devices"] = [{k: d.get(k) for k in DEVICE_COLUMNS} for d in run["devices"]]
        rec["phases"] = [{k: p.get(k) for k in PHASE_COLUMNS} for p in run["phases"]]
        if series:
            t0 = run["started_at"]
            rec["series"] = {key: {"t_s": [round(float(x) - t0, 3) for x in t], "power_w": [round(float(x), 1) for x in p]}
                             for key, (t, p) in read_series_np(store, run["id"]).items()}
        out.append(rec)
    return {"schema": EXPORT_SCHEMA, "version": EXPORT_VERSION, "runs": out}


# import helpers ---------------------------------------------------------------------------------
def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    cols = list(row)
    conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for v in row.values()])


def _exists(store: Store, run_id: str) -> bool:
    return store.conn.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is not None


def _store_run(store: Store, run: dict[str, Any], devices: list[dict[str, Any]], phases: list[dict[str, Any]],
               series: dict[str, tuple[list[float], list[float]]] | None = None) -> None:
    tags = run.get("tags") or {}
    with store.write() as conn:
        _insert(conn, "runs", {k: run.get(k) for k in RUN_COLUMNS if run.get(k) is not None} | {"tags": tags})
        for k, v in tags.items():
            _insert(conn, "run_tags", {"run_id": run["id"], "key": str(k), "value": str(v)})
        for d in devices:
            _insert(conn, "devices", {k: d.get(k) for k in DEVICE_COLUMNS if d.get(k) is not None} | {"run_id": run["id"]})
        for p in phases:
            _insert(conn, "phases", {k: p.get(k) for k in PHASE_COLUMNS} | {"run_id": run["id"]})
        for key, (t, p) in (series or {}).items():
            if t:
                _insert(conn, "series", {"run_id": run["id"], "device_key": key, "seq": 0, "t0": t[0], "t1": t[-1],
                                         "n": len(t), "codec": codec.CODEC,
                                         "data": codec.encode(t, p, run["started_at"])})


def import_export(store: Store, path: str | Path) -> tuple[int, int]:
    """Import a ``greentrack export`` file; returns ``(imported, skipped_existing)``."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GreentrackError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise GreentrackError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != EXPORT_SCHEMA:
        raise GreentrackError(f"{path} is not a greentrack export (no \"schema\": \"{EXPORT_SCHEMA}\")")
    if int(doc.get("version", 0)) > EXPORT_VERSION:
        raise GreentrackError(f"{path} has export version {doc.get('version')}, newer than this greentrack reads")
    done = skipped = 0
    for i, r in enumerate(doc.get("runs") or []):
        if not isinstance(r, dict) or not r.get("id") or r.get("started_at") is None:
            raise GreentrackError(f"{path}: run #{i + 1} lacks an id or started_at")
        if _exists(store, r["id"]):
            skipped += 1
            continue
        t0 = float(r["started_at"])
        series = {k: ([t0 + float(x) for x in v["t_s"]], [float(x) for x in v["power_w"]])
                  for k, v in (r.get("series") or {}).items()}
        _store_run(store, r, r.get("devices") or [], r.get("phases") or [], series)
        done += 1
    return done, skipped


# codecarbon -------------------------------------------------------------------------------------
def _num(row: dict[str, str], key: str) -> float | None:
    raw = (row.get(key) or "").strip()
    if raw == "" or raw.lower() == "nan":
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _parse_time(raw: str) -> float:
    ts = _dt.datetime.fromisoformat(raw.strip())
    return ts.timestamp()  # CodeCarbon writes local time without a zone


def read_codecarbon(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CodeCarbon emissions CSV, one per run (the longest row of each ``run_id``).

    Each row gets ``_line``, its line number in the file, for error messages.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in CODECARBON_REQUIRED if c not in header]
            if missing:
                raise GreentrackError(f"{path} is not a CodeCarbon emissions CSV (missing columns: {', '.join(missing)})")
            rows = list(reader)
    except OSError as exc:
        raise GreentrackError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise GreentrackError(f"{path} is not a text CSV file") from None
    except csv.Error as exc:
        raise GreentrackError(f"{path}: bad CSV ({exc})") from None
    latest: dict[str, dict[str, str]] = {}
    for i, r in enumerate(rows):
        r["_line"] = str(i + 2)
        key = (r.get("run_id") or "").strip() or f"row{i}:{r.get('timestamp')}"
        prev = latest.get(key)
        if prev is None or (_num(r, "duration") or 0) >= (_num(prev, "duration") or 0):
            latest[key] = r
    return list(latest.values())


def codecarbon_run(row: dict[str, str], source: str, line: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One CodeCarbon row as a greentrack run row and its devices."""
    try:
        ended = _parse_time(row["timestamp"])
    except (ValueError, AttributeError):
        raise GreentrackError(f"{source}: row {line}: bad timestamp {row.get('timestamp')!r}") from None
    dur = _num(row, "duration")
    kwh = _num(row, "energy_consumed")
    co2 = _num(row, "emissions")
    if dur is None or dur < 0 or kwh is None or kwh < 0:
        raise GreentrackError(f"{source}: row {line}: duration and energy_consumed must be numbers >= 0")
    cc_id = (row.get("run_id") or "").strip()
    digest = hashlib.sha1(f"codecarbon|{cc_id}|{'' if cc_id else row.get('timestamp')}".encode()).hexdigest()[:12]
    pue = _num(row, "pue") or 1.0
    intensity = (co2 * 1000.0 / (kwh * pue)) if (co2 is not None and kwh) else None
    region = (row.get("country_iso_code") or "").strip() or None
    if row.get("cloud_provider") and row.get("cloud_region"):
        region = f"{row['cloud_provider']}:{row['cloud_region']}"
    elif region and (row.get("region") or "").strip():
        region = f"{region}-{row['region'].strip()}"
    tags = {"source": "codecarbon"}
    for k in ("experiment_id", "run_id", "tracking_mode"):
        if (row.get(k) or "").strip():
            tags[f"codecarbon_{k}" if k != "tracking_mode" else "codecarbon_mode"] = row[k].strip()
    version = (row.get("codecarbon_version") or "").strip()
    run = {
        "id": digest, "name": (row.get("project_name") or "").strip() or "codecarbon", "status": "finished",
        "started_at": ended - dur, "ended_at": ended, "duration_s": dur, "energy_j": kwh * J_PER_KWH,
        "co2e_kg": co2, "region": region, "intensity_g_per_kwh": intensity,
        "intensity_source": (f"{intensity:.0f} gCO2e/kWh as computed by CodeCarbon {version}".strip()
                             if intensity is not None else None),
        "pue": pue, "backend": "codecarbon", "steps": 0, "tags": tags, "version": version or None,
        "notes": [f"imported from CodeCarbon {Path(source).name}"], "updated_at": ended,
    }
    devices = []
    for kind, energy_col, power_col, model_col, count_col in (
            ("gpu", "gpu_energy", "gpu_power", "gpu_model", "gpu_count"),
            ("cpu", "cpu_energy", "cpu_power", "cpu_model", "cpu_count"),
            ("ram", "ram_energy", "ram_power", None, None)):
        e_kwh = _num(row, energy_col)
        if not e_kwh:
            continue
        name = (row.get(model_col) or "").strip() if model_col else ""
        count = _num(row, count_col) if count_col else None
        devices.append({"key": kind, "kind": kind if kind != "ram" else "dram", "idx": 0,
                        "name": name or kind.upper(), "method": "codecarbon", "series_method": "none",
                        "energy_j": e_kwh * J_PER_KWH, "avg_power_w": (e_kwh * J_PER_KWH / dur) if dur else None,
                        "peak_power_w": None, "n_samples": 0,
                        "info": {"codecarbon_power_w": _num(row, power_col), "count": count}})
    return run, devices


def import_codecarbon(store: Store, path: str | Path) -> tuple[int, int]:
    """Import a CodeCarbon ``emissions.csv``; returns ``(imported, skipped_existing)``."""
    done = skipped = 0
    for row in read_codecarbon(path):
        run, devices = codecarbon_run(row, str(path), int(row["_line"]))
        if _exists(store, run["id"]):
            skipped += 1
            continue
        _store_run(store, run, devices, [])
        done += 1
    return done, skipped
