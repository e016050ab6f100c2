"""Reading runs back: tables for the terminal, DataFrames for notebooks.

pandas is imported here only, and only by :func:`runs` and :func:`load`.
"""

from __future__ import annotations

import os
from typing import Any

from .format import fmt_co2, fmt_duration, fmt_kwh, fmt_time, fmt_watts, table
from .store import Store, open_store

REPORT_COLUMNS = ["id", "name", "started", "duration", "status", "kWh", "CO2e", "avg W", "devices"]


def query_runs(db: str | os.PathLike[str] | None = None, last: int | None = 10, **filters: Any) -> list[dict[str, Any]]:
    """Runs as dicts, newest first (see :meth:`Store.list_runs` for the filters)."""
    from .config import resolve_db_path

    path = resolve_db_path(db)
    if not path.exists():
        return []
    return Store(path).list_runs(last=last, **filters)


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


def runs(last: int | None = None, db: str | os.PathLike[str] | None = None, **filters: Any) -> Any:
    """A pandas DataFrame of runs, newest first: ``greentrack.runs(name="llama-*", tags={"precision": "bf16"})``."""
    import pandas as pd

    rows = query_runs(db=db, last=last, **filters)
    df = pd.DataFrame(rows)
    if not df.empty:
        for c in ("started_at", "ended_at", "updated_at"):
            if c in df:
                df[c] = pd.to_datetime(df[c], unit="s")
        df = df.set_index("id")
    return df


def load(run: str, db: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """One run with its devices, phases (DataFrames) and power series (a DataFrame per device)."""
    import pandas as pd

    store = open_store(db, create=False)
    r = store.get_run(run)
    series = store.read_series(r["id"])
    r["series"] = {k: pd.DataFrame({"time": pd.to_datetime(t, unit="s"), "power_w": p}) for k, (t, p) in series.items()}
    r["devices"] = pd.DataFrame(r["devices"])
    r["phases"] = pd.DataFrame(r["phases"])
    return r
