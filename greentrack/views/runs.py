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
from typing import Any

from ..errors import GreentrackError, suggest
from ..store.records import summarise_devices
from ..units import J_PER_KWH, fmt_co2, fmt_duration, fmt_kwh, fmt_time, fmt_watts, table

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
]
FIELD_NAMES = [f for f, _ in RUN_FIELDS]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def run_row(r: dict[str, Any]) -> list[str]:
    dur = r.get("duration_s")
    avg = (r["energy_j"] / dur) if (r.get("energy_j") is not None and dur) else None
    return [r["id"], r["name"], fmt_time(r.get("started_at")), fmt_duration(dur), r["status"],
            fmt_kwh(r.get("energy_j")), fmt_co2(r.get("co2e_kg")), fmt_watts(avg), r.get("devices") or "-"]


def render_table(rows: list[dict[str, Any]]) -> str:
    """The ``greentrack report`` table."""
    if not rows:
        return "no runs yet (wrap a training loop with greentrack.session(), or try 'greentrack demo')"
    return table(REPORT_COLUMNS, [run_row(r) for r in rows], right={3, 5, 6, 7})


def budget_exceeded(budget: Any) -> bool:
    """Whether a stored budget outcome says the limit was crossed.

    A session with a budget stores its outcome either way (``exceeded`` False when within); the
    pytest plugin stores one only when a session budget was crossed (no ``exceeded`` key).
    """
    return isinstance(budget, dict) and bool(budget.get("exceeded", True))


def run_record(r: dict[str, Any]) -> dict[str, Any]:
    """One run as the stable schema-v1 record (plain JSON types, keys in :data:`FIELD_NAMES` order)."""
    dur = r.get("duration_s")
    ej = r.get("energy_j")
    stats = r.get("stats") if isinstance(r.get("stats"), dict) else {}
    step = (stats or {}).get("step") or {}
    devices = r.get("devices")
    if isinstance(devices, list):  # a get_run() row carries the device rows themselves
        devices = summarise_devices([d.get("name") if d.get("kind") == "gpu" else d.get("kind") for d in devices])
    tags = r.get("tags") if isinstance(r.get("tags"), dict) else {}
    rec = {
        "id": r.get("id"), "name": r.get("name"), "status": r.get("status"),
        "started_at": _iso(r.get("started_at")), "ended_at": _iso(r.get("ended_at")),
        "duration_s": dur, "energy_kwh": None if ej is None else ej / J_PER_KWH, "energy_j": ej,
        "co2e_kg": r.get("co2e_kg"), "avg_power_w": (ej / dur) if (ej is not None and dur) else None,
        "region": r.get("region"), "intensity_g_per_kwh": r.get("intensity_g_per_kwh"),
        "intensity_source": r.get("intensity_source"), "pue": r.get("pue"), "backend": r.get("backend"),
        "devices": devices or None, "steps": r.get("steps"), "samples": r.get("samples"),
        "tokens": r.get("tokens"), "j_per_step": step.get("mean_j"), "j_per_sample": step.get("j_per_sample"),
        "j_per_token": step.get("j_per_token"), "budget_exceeded": budget_exceeded(r.get("budget")),
        "host": r.get("host"), "job_id": r.get("job_id"), "command": r.get("command"), "tags": tags,
        "error": r.get("error"),
    }
    return {k: rec[k] for k in FIELD_NAMES}


def render_json(rows: list[dict[str, Any]]) -> str:
    """``{"schema": "greentrack.runs", "version": 1, "generated_at": ..., "runs": [record, ...]}``."""
    doc = {"schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "generated_at": _iso(_dt.datetime.now().timestamp()),
           "runs": [run_record(r) for r in rows]}
    return json.dumps(doc, indent=2, allow_nan=False, default=str)


def render_csv(rows: list[dict[str, Any]]) -> str:
    """A header row of :data:`FIELD_NAMES`, then one row per run (empty cell for null)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELD_NAMES)
    for r in rows:
        rec = run_record(r)
        rec["tags"] = json.dumps(rec["tags"], sort_keys=True, separators=(",", ":"))
        rec["budget_exceeded"] = "true" if rec["budget_exceeded"] else "false"
        w.writerow(["" if rec[k] is None else (repr(rec[k]) if isinstance(rec[k], float) else rec[k])
                    for k in FIELD_NAMES])
    return buf.getvalue()


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """The report table as a GitHub-flavoured Markdown table."""
    if not rows:
        return "_no runs_\n"

    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    align = ["---:" if i in {3, 5, 6, 7} else "---" for i in range(len(REPORT_COLUMNS))]
    lines = ["| " + " | ".join(REPORT_COLUMNS) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in run_row(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


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
