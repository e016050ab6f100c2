"""Moving runs in and out: greentrack's export format, and CodeCarbon's ``emissions.csv``. No SQL here.

Export (``greentrack export``) writes a JSON document, schema ``greentrack.export`` version 1:
``{"schema": "greentrack.export", "version": 1, "runs": [run, ...]}``, each run an object of the
``runs`` columns of :mod:`.schema` plus ``devices`` (objects of the ``devices`` columns),
``phases`` (objects of the ``phases`` columns) and, with ``--series``, ``series``:
``{device_key: {"t_s": [seconds from the run's start], "power_w": [W]}}``. Times are unix
seconds; numbers are finite (never NaN or Infinity).

Import (``greentrack import greentrack FILE``) checks every field of every record against those
columns' rules (:data:`.schema.RULES`: finite numbers in sane ranges, timestamps between 2000
and 2100, a known status, names present, PUE > 0...) before anything is written, then writes
the whole file in one transaction: a file with one bad value is rejected with one line naming
the record and the field, and the database is left as it was. Runs already present (same id)
are skipped, so importing a file twice adds nothing.

``greentrack import codecarbon emissions.csv`` turns each CodeCarbon run (one row per ``run_id``;
in CodeCarbon's "append" mode a run may have several cumulative rows, the longest one wins) into a
finished greentrack run with CPU, GPU and RAM as devices (method ``codecarbon``) and CodeCarbon's
own emissions and intensity, with the same checks and the same all-or-nothing write.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import GreentrackError
from ..units import J_PER_KWH
from .base import RunStore
from .records import (
    SeriesChunk,
    StoredRun,
    device_from,
    phase_from,
    record_fields,
    run_from,
    validate_row,
)
from .schema import DEVICES, JOULES_MAX, PHASES, RUNS, SECONDS_MAX, TIME_MAX, TIME_MIN, WATTS_MAX, Invalid, _show, check

EXPORT_SCHEMA = "greentrack.export"
EXPORT_VERSION = 1
RUN_COLUMNS = RUNS.names
DEVICE_COLUMNS = tuple(c for c in DEVICES.names if c != "run_id")
PHASE_COLUMNS = tuple(c for c in PHASES.names if c != "run_id")
CODECARBON_REQUIRED = ("timestamp", "duration", "emissions", "energy_consumed")
SERIES_MAX_POINTS = 50_000_000
SERIES_OFFSET_MAX_S = 2_000_000.0  # the codec stores millisecond offsets as int32 (about 24.8 days)
CHUNK_POINTS = 36_000


# export -----------------------------------------------------------------------------------------
def export_runs(store: RunStore, run_ids: Iterable[str], series: bool = False) -> dict[str, Any]:
    """The export document for these runs (times are unix seconds; series as offsets from start)."""
    out = []
    for rid in run_ids:
        run = store.get_run(rid)
        rec: dict[str, Any] = {k: run.get(k) for k in RUN_COLUMNS}
        rec["devices"] = [{k: d.get(k) for k in DEVICE_COLUMNS} for d in run["devices"]]
        rec["phases"] = [{k: p.get(k) for k in PHASE_COLUMNS} for p in run["phases"]]
        if series:
            t0 = run.get("started_at") or 0.0
            rec["series"] = {key: {"t_s": [round(float(x) - t0, 3) for x in t],
                                   "power_w": [round(float(x), 1) for x in p]}
                             for key, (t, p) in store.read_series(run["id"], arrays=True).items()}
        out.append(rec)
    return {"schema": EXPORT_SCHEMA, "version": EXPORT_VERSION, "runs": out}


def dumps(doc: Any) -> str:
    """JSON text of an export document (strict: no NaN or Infinity can slip out)."""
    return json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n"


# import: the export format -----------------------------------------------------------------------
def _load_json(path: str | Path) -> Any:
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise GreentrackError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise GreentrackError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise GreentrackError(f"{path} is not UTF-8 text") from None
    except RecursionError:
        raise GreentrackError(f"{path} is nested too deeply to be a greentrack export") from None
    except ValueError as exc:
        raise GreentrackError(f"{path} is not JSON: {exc}") from None


def _series(key: Any, value: Any, started_at: float, where: str) -> list[SeriesChunk]:
    where = f"{where} series {_show(key)}"
    if not isinstance(key, str) or not key.strip():
        raise GreentrackError(f"{where}: the device key must be non-empty text")
    if not isinstance(value, Mapping):
        raise GreentrackError(f"{where}: must be an object with t_s and power_w lists")
    t, p = value.get("t_s"), value.get("power_w")
    if not isinstance(t, list) or not isinstance(p, list):
        raise GreentrackError(f"{where}: t_s and power_w must be lists")
    if len(t) != len(p):
        raise GreentrackError(f"{where}: t_s has {len(t)} values but power_w has {len(p)}")
    if len(t) > SERIES_MAX_POINTS:
        raise GreentrackError(f"{where}: more than {SERIES_MAX_POINTS} points")
    for i, x in enumerate(t):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
                or abs(x) > SERIES_OFFSET_MAX_S or not TIME_MIN <= started_at + x <= TIME_MAX:
            raise GreentrackError(f"{where}: t_s[{i}] must be finite seconds within {SERIES_OFFSET_MAX_S:g} "
                                  f"of the start, got {_show(x)}")
    for i, x in enumerate(p):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not 0 <= x <= WATTS_MAX:
            raise GreentrackError(f"{where}: power_w[{i}] must be finite watts, 0 to {WATTS_MAX:g}, got {_show(x)}")
    times = [started_at + float(x) for x in t]
    return [SeriesChunk.encode(key, seq, times[i:i + CHUNK_POINTS], [float(x) for x in p[i:i + CHUNK_POINTS]],
                               started_at)
            for seq, i in enumerate(range(0, len(times), CHUNK_POINTS))]


def _order(a: float | None, b: float | None, where: str) -> None:
    if a is not None and b is not None and b < a:
        raise GreentrackError(f"{where}: field ended_at ({b!r}) is before started_at ({a!r})")


def parse_run(r: Any, where: str) -> StoredRun:
    """One run of an export document, checked field by field; raises one line naming the field."""
    if not isinstance(r, Mapping):
        raise GreentrackError(f"{where}: must be an object, got {type(r).__name__}")
    rid = r.get("id")
    if isinstance(rid, str) and rid and len(rid) <= 64:
        where = f"{where} (id {rid!r})"
    row = validate_row(RUNS, r, where)
    _order(row["started_at"], row["ended_at"], where)
    devices, phases, chunks = [], [], []
    seen: set[Any] = set()
    for j, d in enumerate(_list(r.get("devices"), f"{where}: devices")):
        dv = validate_row(DEVICES, d, f"{where} device #{j + 1}")
        if dv["key"] in seen:
            raise GreentrackError(f"{where} device #{j + 1}: field key {dv['key']!r} appears twice")
        seen.add(dv["key"])
        devices.append(device_from(dv))
    seen = set()
    for j, p in enumerate(_list(r.get("phases"), f"{where}: phases")):
        ph = validate_row(PHASES, p, f"{where} phase #{j + 1}")
        if ph["seq"] in seen:
            raise GreentrackError(f"{where} phase #{j + 1}: field seq {ph['seq']!r} appears twice")
        seen.add(ph["seq"])
        _order(ph["started_at"], ph["ended_at"], f"{where} phase #{j + 1}")
        phases.append(phase_from(ph))
    series = r.get("series")
    if series is not None:
        if not isinstance(series, Mapping):
            raise GreentrackError(f"{where}: series must be an object of device key: {{t_s, power_w}}")
        for key, value in series.items():
            chunks += _series(key, value, row["started_at"], where)
    return StoredRun(run=run_from(row), devices=devices, phases=phases, chunks=chunks)


def _list(v: Any, where: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise GreentrackError(f"{where} must be a list, got {type(v).__name__}")
    return v


def parse_export(doc: Any, source: str) -> list[StoredRun]:
    """Every run of an export document, all checked before any is written."""
    if not isinstance(doc, dict) or doc.get("schema") != EXPORT_SCHEMA:
        raise GreentrackError(f"{source} is not a greentrack export (no \"schema\": \"{EXPORT_SCHEMA}\")")
    version = doc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise GreentrackError(f"{source}: field version must be a whole number, got {_show(version)}")
    if version > EXPORT_VERSION:
        raise GreentrackError(f"{source} has export version {version}, newer than this greentrack reads")
    return [parse_run(r, f"{source}: run #{i + 1}") for i, r in enumerate(_list(doc.get("runs"), f"{source}: runs"))]


def import_export(store: RunStore, path: str | Path) -> tuple[int, int]:
    """Import a ``greentrack export`` file (all or nothing); returns ``(imported, skipped_existing)``."""
    return store.import_runs(parse_export(_load_json(path), str(path)))


# import: CodeCarbon ----------------------------------------------------------------------------
def _num(row: Mapping[str, Any], key: str, source: str, line: int, required: bool = False,
         hi: float = math.inf, positive: bool = False) -> float | None:
    raw = row.get(key)
    raw = raw.strip() if isinstance(raw, str) else ""
    if raw == "" or raw.lower() == "nan":
        if required:
            raise GreentrackError(f"{source}: row {line}: column {key} is required")
        return None
    try:
        val = float(raw)
    except ValueError:
        val = math.nan
    if not math.isfinite(val) or val < 0 or val > hi or (positive and val <= 0):
        bound = f"> 0, at most {hi:g}" if positive else f"0 to {hi:g}"
        raise GreentrackError(f"{source}: row {line}: column {key} must be a finite number, {bound}, got {_show(raw)}")
    return val


def _parse_time(raw: Any, source: str, line: int) -> float:
    try:
        ts = _dt.datetime.fromisoformat(str(raw).strip()).timestamp()  # CodeCarbon writes local time without a zone
    except (ValueError, OverflowError, OSError, AttributeError):
        raise GreentrackError(f"{source}: row {line}: column timestamp is not an ISO date and time: "
                              f"{_show(raw)}") from None
    if not TIME_MIN <= ts <= TIME_MAX:
        raise GreentrackError(f"{source}: row {line}: column timestamp must be between 2000 and 2100, got {_show(raw)}")
    return ts


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
                raise GreentrackError(f"{path} is not a CodeCarbon emissions CSV "
                                      f"(missing columns: {', '.join(missing)})")
            rows = []
            for r in reader:
                r["_line"] = str(reader.line_num)
                rows.append(r)
    except IsADirectoryError:
        raise GreentrackError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise GreentrackError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise GreentrackError(f"{path} is not a text CSV file") from None
    except csv.Error as exc:
        raise GreentrackError(f"{path}: bad CSV ({exc})") from None
    latest: dict[str, dict[str, str]] = {}
    for i, r in enumerate(rows):
        key = str(r.get("run_id") or "").strip() or f"row{i}:{r.get('timestamp')}"
        dur = _num(r, "duration", str(path), int(r["_line"]), required=True, hi=SECONDS_MAX)
        prev = latest.get(key)
        if prev is None or (dur or 0) >= float(prev["duration"]):
            latest[key] = r
    return list(latest.values())


def _text(row: Mapping[str, Any], key: str) -> str:
    v = row.get(key)
    return v.strip() if isinstance(v, str) else ""


def codecarbon_run(row: Mapping[str, Any], source: str, line: int) -> StoredRun:
    """One CodeCarbon row as a checked greentrack run with its devices."""
    ended = _parse_time(row.get("timestamp"), source, line)
    dur = _num(row, "duration", source, line, required=True, hi=SECONDS_MAX) or 0.0
    kwh = _num(row, "energy_consumed", source, line, required=True, hi=JOULES_MAX / J_PER_KWH) or 0.0
    co2 = _num(row, "emissions", source, line, hi=1e15)
    pue = _num(row, "pue", source, line, hi=100.0, positive=True) or 1.0
    cc_id = _text(row, "run_id")
    digest = hashlib.sha1(f"codecarbon|{cc_id}|{'' if cc_id else row.get('timestamp')}".encode()).hexdigest()[:12]
    derived = co2 * 1000.0 / (kwh * pue) if co2 is not None and kwh else None
    intensity = _or_none(RUNS.column("intensity_g_per_kwh"), derived)
    region = _text(row, "country_iso_code") or None
    if _text(row, "cloud_provider") and _text(row, "cloud_region"):
        region = f"{_text(row, 'cloud_provider')}:{_text(row, 'cloud_region')}"
    elif region and _text(row, "region"):
        region = f"{region}-{_text(row, 'region')}"
    tags = {"source": "codecarbon"}
    for k in ("experiment_id", "run_id", "tracking_mode"):
        if _text(row, k):
            tags[f"codecarbon_{k}" if k != "tracking_mode" else "codecarbon_mode"] = _text(row, k)
    version = _text(row, "codecarbon_version")
    run = {
        "id": digest, "name": _text(row, "project_name") or "codecarbon", "status": "finished",
        "started_at": ended - dur, "ended_at": ended, "duration_s": dur, "energy_j": kwh * J_PER_KWH,
        "co2e_kg": co2, "region": region, "intensity_g_per_kwh": intensity,
        "intensity_source": (f"{intensity:.0f} gCO2e/kWh as computed by CodeCarbon {version}".strip()
                             if intensity is not None else None),
        "pue": pue, "backend": "codecarbon", "steps": 0, "tags": tags, "version": version or None,
        "notes": [f"imported from CodeCarbon {Path(source).name}"], "updated_at": ended,
    }
    where = f"{source}: row {line}"
    devices = []
    for kind, energy_col, power_col, model_col, count_col in (
            ("gpu", "gpu_energy", "gpu_power", "gpu_model", "gpu_count"),
            ("cpu", "cpu_energy", "cpu_power", "cpu_model", "cpu_count"),
            ("ram", "ram_energy", "ram_power", None, None)):
        e_kwh = _num(row, energy_col, source, line, hi=JOULES_MAX / J_PER_KWH)
        if not e_kwh:
            continue
        power = _num(row, power_col, source, line, hi=1e9)
        count = _num(row, count_col, source, line, hi=1e9) if count_col else None
        devices.append(device_from(validate_row(DEVICES, {
            "key": kind, "kind": kind if kind != "ram" else "dram", "idx": 0,
            "name": (_text(row, model_col) if model_col else "") or kind.upper(), "method": "codecarbon",
            "series_method": "none", "energy_j": e_kwh * J_PER_KWH,
            "avg_power_w": _or_none(DEVICES.column("avg_power_w"), e_kwh * J_PER_KWH / dur if dur else None),
            "peak_power_w": None, "n_samples": 0, "info": {"codecarbon_power_w": power, "count": count}},
            f"{where} ({kind})")))
    return StoredRun(run=run_from(validate_row(RUNS, run, where)), devices=devices)


def _or_none(col: Any, v: float | None) -> float | None:
    """A derived figure that breaks its column's rule (e.g. an intensity from a near-zero energy) is left out."""
    try:
        return check(col, v)
    except Invalid:
        return None


def import_codecarbon(store: RunStore, path: str | Path) -> tuple[int, int]:
    """Import a CodeCarbon ``emissions.csv`` (all or nothing); returns ``(imported, skipped_existing)``."""
    runs = [codecarbon_run(row, str(path), int(row["_line"])) for row in read_codecarbon(path)]
    return store.import_runs(runs)


__all__ = ["EXPORT_SCHEMA", "EXPORT_VERSION", "RUN_COLUMNS", "DEVICE_COLUMNS", "PHASE_COLUMNS", "export_runs",
           "dumps", "import_export", "import_codecarbon", "parse_export", "parse_run", "read_codecarbon",
           "codecarbon_run", "record_fields"]
