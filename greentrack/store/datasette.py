"""Runs as a standalone SQLite database for Datasette and the sqlite-utils CLI (``export --format sqlite``).

Unlike greentrack's own database (normalised, compressed series chunks, written by the store's
migrations), this file is made to be browsed: ``runs`` with the report's stable columns (the
``greentrack.runs`` v1 record: :data:`greentrack.views.runs.FIELD_NAMES`), ``phases`` and
``devices`` keyed by run id, and, with *series*, ``power`` with one row per sample
(``run_id``, ``device``, ``t``, ``power_w``). Written with sqlite-utils (its ``insert_all`` with
primary keys, foreign keys and indexes); exporting the same run again replaces its rows.
"""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence


def _sqlite_utils() -> Any:
    """sqlite-utils, imported without letting it pull in pandas and numpy (it only offers them)."""
    mod = sys.modules.get("sqlite_utils")
    if mod is not None:
        return mod
    blocked = [m for m in ("pandas", "numpy") if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]
    try:
        import sqlite_utils
    finally:
        for m in blocked:
            if sys.modules.get(m) is None:
                del sys.modules[m]
    return sqlite_utils


def write_datasette(path: str | Path, records: Sequence[dict[str, Any]], runs: Iterable[dict[str, Any]],
                    series: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]] | None = None) -> int:
    """Write *records* (report records), the *runs*' phases and devices (``get_run`` dicts) and, when
    given, *series* (``{run_id: {device: (times, powers)}}``) into the SQLite file *path*; returns
    the number of runs written."""
    su = _sqlite_utils()
    db = su.Database(str(path))
    flat = []
    for rec in records:
        r = dict(rec)
        r["tags"] = su.utils.json.dumps(r.get("tags") or {}, sort_keys=True) if isinstance(r.get("tags"), dict) \
            else r.get("tags")
        flat.append(r)
    db["runs"].insert_all(flat, pk="id", replace=True, alter=True)
    phases, devices = [], []
    for run in runs:
        for i, p in enumerate(run.get("phases") or []):
            phases.append({"run_id": run["id"], "seq": p.get("seq", i), "name": p.get("name"),
                           "started_at": _iso(p.get("started_at")), "ended_at": _iso(p.get("ended_at")),
                           "duration_s": (p["ended_at"] - p["started_at"]) if p.get("ended_at") is not None
                           and p.get("started_at") is not None else None,
                           "energy_j": p.get("energy_j"), "steps": p.get("steps")})
        for d in run.get("devices") or []:
            devices.append({"run_id": run["id"], "key": d.get("key"), "kind": d.get("kind"), "name": d.get("name"),
                            "method": d.get("method"), "energy_j": d.get("energy_j"),
                            "avg_power_w": d.get("avg_power_w"), "peak_power_w": d.get("peak_power_w")})
    if phases:
        db["phases"].insert_all(phases, pk=("run_id", "seq"), replace=True, alter=True,
                                foreign_keys=[("run_id", "runs", "id")])
    if devices:
        db["devices"].insert_all(devices, pk=("run_id", "key"), replace=True, alter=True,
                                 foreign_keys=[("run_id", "runs", "id")])
    if series:
        rows = ({"run_id": rid, "device": key, "t": _iso(float(t)), "power_w": round(float(p), 3)}
                for rid, per_dev in series.items() for key, (ts, ps) in per_dev.items() for t, p in zip(ts, ps))
        for rid in series:
            if db["power"].exists():
                db["power"].delete_where("run_id = ?", [rid])
        db["power"].insert_all(rows, batch_size=5000, alter=True, foreign_keys=[("run_id", "runs", "id")])
        db["power"].create_index(["run_id", "device", "t"], if_not_exists=True)
    for table in ("phases", "devices"):
        if db[table].exists():
            db[table].create_index(["run_id"], if_not_exists=True)
    db["_greentrack_export"].insert({"format": "greentrack.runs", "version": 1,
                                     "written_at": _iso(_dt.datetime.now().timestamp())}, pk="format", replace=True)
    return len(flat)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(float(ts), _dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
