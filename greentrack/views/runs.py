"""Runs as text: the report table, CSV, JSON (a stable schema) and Markdown. Loaded rows in, text out.

The JSON and CSV outputs follow a stable, versioned schema (:data:`RUN_FIELDS`,
:data:`SCHEMA_VERSION`): fields are only ever added at the end, never renamed or removed,
without a new schema version.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
from typing import Any

from ..carbon.footprint import operational
from ..errors import GreentrackError, suggest
from ..store.records import energy_method, summarise_devices
from ..units import (
    J_PER_KWH,
    csv_cell,
    fmt_co2,
    fmt_duration,
    fmt_kwh,
    fmt_time,
    fmt_watts,
    mark,
    modelled,
    one_line,
    shorten,
    table,
)

REPORT_COLUMNS = ["id", "name", "started", "duration", "status", "kWh", "CO2e", "avg W", "devices"]
FORMATS = ("table", "csv", "json", "markdown", "html")
STATUSES = ("running", "finished", "failed", "interrupted", "lost")
SCHEMA_NAME = "greentrack.runs"
SCHEMA_VERSION = 1

#: The stable run record of ``report --format json|csv`` (schema version 1), in column order.
RUN_FIELDS: list[tuple[str, str]] = [
    ("id", "run id (12 hex characters)"),
    ("name", "run name"),
    ("status", "running, finished, failed, interrupted or lost"),
    ("started_at", "start, ISO 8601 UTC"),
    ("ended_at", "end, ISO 8601 UTC (empty while running)"),
    ("duration_s", "seconds"),
    ("energy_kwh", "measured energy, kWh (before PUE; empty when nothing was measured)"),
    ("energy_j", "the same in joules"),
    ("co2e_kg", "operational CO2e, kg (energy x PUE x intensity)"),
    ("avg_power_w", "energy / duration, W"),
    ("region", "grid region used for CO2e"),
    ("intensity_g_per_kwh", "grid intensity used, gCO2e/kWh"),
    ("intensity_source", "where the intensity figure comes from, with year"),
    ("pue", "power usage effectiveness applied"),
    ("backend", "power source(s) that measured the run"),
    ("devices", "device summary, e.g. '8x NVIDIA H200'"),
    ("steps", "steps marked with session.step()"),
    ("samples", "samples given to step(samples=...)"),
    ("tokens", "tokens given to step(tokens=...)"),
    ("j_per_step", "mean energy per step, J"),
    ("j_per_sample", "energy per sample, J"),
    ("j_per_token", "energy per token, J"),
    ("budget_exceeded", "true when a live budget was crossed"),
    ("host", "host name"),
    ("job_id", "job id shared by the runs of one job (GREENTRACK_JOB_ID, torchrun, SLURM)"),
    ("command", "command line (greentrack run)"),
    ("tags", "tags, a JSON object (in CSV: its JSON text)"),
    ("error", "error of a failed run"),
    ("unmeasured_s", "seconds whose energy no reading measured (sensor data gaps; 0 when none)"),
    ("energy_method", "measured, model (estimated from CPU time by the cpu-model source, not measured) or mixed"),
]
FIELD_NAMES = [f for f, _ in RUN_FIELDS]
MODELLED_NOTE = ("~ modelled from CPU time (cpu-model source: CPU seconds x watts per thread), not measured; "
                 "greentrack show RUN gives the model's inputs")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def co2e_kg(r: dict[str, Any]) -> float | None:
    """The run's operational CO2e; for a run that never finished (``running``, ``lost``), computed from the
    energy measured so far with the run's PUE and grid intensity (the same formula a finished run gets)."""
    if r.get("co2e_kg") is not None:
        return float(r["co2e_kg"])
    ej, g = r.get("energy_j"), r.get("intensity_g_per_kwh")
    if ej is None or g is None:
        return None
    return operational(float(ej), float(r.get("pue") or 1.0), float(g)).co2e_kg
def unmeasured_s(r: dict[str, Any]) -> float:
    """Seconds of the run whose energy no reading measured (data gaps), from its stored stats."""
    stats = r.get("stats") if isinstance(r.get("stats"), dict) else {}
    v = (stats or {}).get("unmeasured_s")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0.0


def gap_count(r: dict[str, Any]) -> int:
    stats = r.get("stats") if isinstance(r.get("stats"), dict) else {}
    gaps = (stats or {}).get("gaps")
    return len(gaps) if isinstance(gaps, list) else 0


def run_row(r: dict[str, Any]) -> list[str]:
    """The report's cells of one run; a run with data gaps has its kWh marked ``*`` (see :func:`gap_footnote`)."""
    dur = r.get("duration_s")
    avg = (r["energy_j"] / dur) if (r.get("energy_j") is not None and dur) else None
    how = r.get("energy_method")
    kwh = mark(fmt_kwh(r.get("energy_j")), how) + ("*" if gap_count(r) else "")
    return [r["id"], shorten(r["name"]), fmt_time(r.get("started_at")), fmt_duration(dur), r["status"],
            kwh, mark(fmt_co2(co2e_kg(r)), how), mark(fmt_watts(avg), how), r.get("devices") or "-"]


def gap_footnote(rows: list[dict[str, Any]]) -> str | None:
    """The line under a table that says which runs had data gaps, and how long went unmeasured."""
    marked = [r for r in rows if gap_count(r)]
    if not marked:
        return None
    parts = []
    for r in marked[:5]:
        u = unmeasured_s(r)
        parts.append(f"{one_line(r['id'])} ({gap_count(r)} gap(s), "
                     + (f"{fmt_duration(u)} unmeasured)" if u else "measured by the energy counter)"))
    more = f" and {len(marked) - 5} more" if len(marked) > 5 else ""
    return f"* sensor data gaps: {', '.join(parts)}{more}; 'greentrack show RUN' tells more"


def render_table(rows: list[dict[str, Any]]) -> str:
    """The ``greentrack report`` table (every cell one printable line: no control character gets through)."""
    if not rows:
        return "no runs yet (wrap a training loop with greentrack.session(), or try 'greentrack demo')"
    out = table(REPORT_COLUMNS, [run_row(r) for r in rows], right={3, 5, 6, 7})
    if any(modelled(r.get("energy_method")) for r in rows):
        out += f"\n{MODELLED_NOTE}"
    note = gap_footnote(rows)
    return out + ("\n" + note if note else "")


def run_record(r: dict[str, Any], finite: bool = True) -> dict[str, Any]:
    """One run as the stable schema-v1 record (plain JSON types, keys in :data:`FIELD_NAMES` order)."""
    dur = r.get("duration_s")
    ej = r.get("energy_j")
    stats = r.get("stats") if isinstance(r.get("stats"), dict) else {}
    step = (stats or {}).get("step") or {}
    devices = r.get("devices")
    method = r.get("energy_method")
    if isinstance(devices, list):  # a get_run() row carries the device rows themselves
        method = energy_method(d.get("method") for d in devices if d.get("energy_j") is not None)
        devices = summarise_devices([d.get("name") if d.get("kind") == "gpu" else d.get("kind") for d in devices])
    tags = r.get("tags") if isinstance(r.get("tags"), dict) else {}
    rec = {
        "id": r.get("id"), "name": r.get("name"), "status": r.get("status"),
        "started_at": _iso(r.get("started_at")), "ended_at": _iso(r.get("ended_at")),
        "duration_s": dur, "energy_kwh": None if ej is None else ej / J_PER_KWH, "energy_j": ej,
        "co2e_kg": co2e_kg(r), "avg_power_w": (ej / dur) if (ej is not None and dur) else None,
        "region": r.get("region"), "intensity_g_per_kwh": r.get("intensity_g_per_kwh"),
        "intensity_source": r.get("intensity_source"), "pue": r.get("pue"), "backend": r.get("backend"),
        "devices": devices or None, "steps": r.get("steps"), "samples": r.get("samples"),
        "tokens": r.get("tokens"), "j_per_step": step.get("mean_j"), "j_per_sample": step.get("j_per_sample"),
        "j_per_token": step.get("j_per_token"), "budget_exceeded": budget_exceeded(r.get("budget")),
        "host": r.get("host"), "job_id": r.get("job_id"), "command": r.get("command"), "tags": tags,
        "error": r.get("error"), "unmeasured_s": unmeasured_s(r), "energy_method": method,
    }
    return {k: _finite(rec[k]) if finite else rec[k] for k in FIELD_NAMES}


def _finite(v: Any) -> Any:
    """JSON has no NaN or Infinity: a float that is not finite is written as null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def budget_exceeded(budget: Any) -> bool:
    """Whether a stored budget outcome says it was crossed (an outcome within its limit is stored too)."""
    return bool(isinstance(budget, dict) and budget.get("exceeded", True))


def json_safe(obj: Any, path: str = "", notes: list[str] | None = None) -> Any:
    """*obj* with every NaN or infinite number replaced by null, each noted in *notes* by its path."""
    if isinstance(obj, float) and not math.isfinite(obj):
        if notes is not None:
            notes.append(f"{path or 'value'} was {obj!r}, written as null")
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v, f"{path}.{k}" if path else str(k), notes) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, f"{path}[{i}]", notes) for i, v in enumerate(obj)]
    return obj


def dumps_json(doc: dict[str, Any], indent: int = 2) -> str:
    """Strict JSON (never NaN or Infinity): a non-finite number becomes null and ``notes`` says where."""
    notes: list[str] = []
    safe = json_safe(doc, "", notes)
    if notes:
        safe["notes"] = list(safe.get("notes") or []) + notes
    return json.dumps(safe, indent=indent, allow_nan=False, default=str)


def render_json(rows: list[dict[str, Any]]) -> str:
    """``{"schema": "greentrack.runs", "version": 1, "generated_at": ..., "runs": [record, ...]}``.

    Always valid JSON: a number that is not finite is written as null, and a top-level
    ``notes`` list names each such field.
    """
    doc = {"schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "generated_at": _iso(_dt.datetime.now().timestamp()),
           "runs": [run_record(r, finite=False) for r in rows]}
    return dumps_json(doc)  # non-finite numbers become null, with a note naming each


def render_csv(rows: list[dict[str, Any]]) -> str:
    """A header row of :data:`FIELD_NAMES`, then one row per run (empty cell for null)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELD_NAMES)
    for r in rows:
        rec = run_record(r)
        rec["tags"] = json.dumps(rec["tags"], sort_keys=True, separators=(",", ":"))
        rec["budget_exceeded"] = "true" if rec["budget_exceeded"] else "false"
        w.writerow([_csv_value(rec[k]) for k in FIELD_NAMES])
    return buf.getvalue()


def _csv_value(v: Any) -> str:
    """A CSV cell: numbers as numbers, text neutralised against formula injection (:func:`csv_cell`)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return csv_cell(str(v))


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """The report table as a GitHub-flavoured Markdown table."""
    if not rows:
        return "_no runs_\n"

    def cell(s: str) -> str:
        return one_line(s).replace("|", "\\|")

    align = ["---:" if i in {3, 5, 6, 7} else "---" for i in range(len(REPORT_COLUMNS))]
    lines = ["| " + " | ".join(REPORT_COLUMNS) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in run_row(r)) + " |" for r in rows]
    if any(modelled(r.get("energy_method")) for r in rows):
        lines += ["", f"{MODELLED_NOTE}"]
    note = gap_footnote(rows)
    return "\n".join(lines) + "\n" + (f"\n{cell(note)}\n" if note else "")


def render(rows: list[dict[str, Any]], fmt: str = "table", **html_options: Any) -> str:
    """Render runs as ``table``, ``csv``, ``json``, ``markdown`` or ``html`` text."""
    if fmt == "table":
        return render_table(rows)
    if fmt == "csv":
        return render_csv(rows)
    if fmt == "json":
        return render_json(rows)
    if fmt == "markdown":
        return render_markdown(rows)
    if fmt == "html":
        from .html import render_html

        return render_html(rows, **html_options)
    raise GreentrackError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}" + suggest(fmt, FORMATS))
