"""Reading runs back as a library: rows for the CLI and views, DataFrames for notebooks.

This is the layer between the store and its users: it resolves the database from the
settings and loads what the views render. pandas is imported only by :func:`runs` and :func:`load`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import GreentrackError, suggest
from .store import RunStore, open_store
from .views.runs import STATUSES


def query_runs(db: str | os.PathLike[str] | None = None, last: int | None = 10, **filters: Any) -> list[dict[str, Any]]:
    """Runs as dicts, newest first (see :meth:`Store.list_runs` for the filters).

    A database that does not exist yet holds no runs: the answer is ``[]``.
    """
    from .settings import resolve_db
    from .store.location import exists, open_location

    status = filters.get("status")
    if status is not None and status not in STATUSES:
        raise GreentrackError(f"bad status {status!r}: use one of {', '.join(STATUSES)}" + suggest(status, STATUSES))
    if last is not None and last < 1:
        raise GreentrackError(f"--last must be at least 1, got {last}")
    location = resolve_db(db)
    if not exists(location):
        return []
    return open_location(location, write=False).list_runs(last=last, **filters)


def runs(last: int | None = None, db: str | os.PathLike[str] | None = None, **filters: Any) -> Any:
    """A pandas DataFrame of runs, newest first, indexed by run id.

    ``greentrack.runs(name="llama-*", tags={"precision": "bf16"}, status="finished", since=ts)``.
    Times are pandas timestamps (UTC); ``tags``, ``stats`` and ``notes`` are Python objects;
    ``energy_kwh`` and ``avg_power_w`` are added. An empty or missing database gives an empty frame
    with the same columns.
    """
    import pandas as pd

    rows = query_runs(db=db, last=last, **filters)
    for r in rows:
        dur, ej = r.get("duration_s"), r.get("energy_j")
        r["avg_power_w"] = (ej / dur) if (ej is not None and dur) else None
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["id", "name", "status", "started_at", "ended_at", "duration_s", "energy_j",
                                   "energy_kwh", "co2e_kg", "avg_power_w", "region", "tags", "devices"])
    for c in ("started_at", "ended_at", "updated_at"):
        if c in df:
            df[c] = pd.to_datetime(df[c], unit="s", utc=True)
    return df.set_index("id")


def load(run: str, db: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """One run for a notebook: its fields, plus ``devices`` and ``phases`` DataFrames and ``series``.

    ``series`` maps each device key (``gpu0``...) to a DataFrame with ``time`` (UTC timestamps)
    and ``power_w`` (average power over the interval ending at that time). *run* is an id, an id
    prefix, a run name (its newest run) or ``last``; an unknown one raises NotFoundError with
    close matches.
    """
    import pandas as pd

    store = open_store(db, create=False)
    r = store.get_run(run)
    series = store.read_series(r["id"], arrays=True)
    r["series"] = {k: pd.DataFrame({"time": pd.to_datetime(t, unit="s", utc=True), "power_w": p})
                   for k, (t, p) in series.items()}
    r["devices"] = pd.DataFrame(r["devices"])
    phases = pd.DataFrame(r["phases"])
    if not phases.empty:
        phases["duration_s"] = phases["ended_at"] - phases["started_at"]
    r["phases"] = phases
    return r


def job_view(job_id: str, db: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """One job across nodes (see :mod:`greentrack.views.job`): its total, per node, per rank.

    *job_id* is a job id (a Slurm job id also gathers its steps, ``123.0``, ``123.1``...) or
    ``last`` (the job of the newest run that has one). An unknown job is a one-line error with
    close matches.
    """
    from .errors import NotFoundError
    from .views.job import summarise

    store = open_store(db, create=False)
    try:
        if job_id in ("last", "latest"):
            found = next((r for r in store.list_runs(last=200) if r.get("job_id")), None)
            if found is None:
                raise NotFoundError("none of the newest 200 runs belongs to a job")
            job_id = str(found["job_id"])
        rows = store.list_runs(last=None, job_id=job_id)
        if not rows:
            known = sorted({str(r["job_id"]) for r in store.list_runs(last=500) if r.get("job_id")})
            raise NotFoundError(f"no runs of job {job_id!r}" + suggest(job_id, known))
        runs = [store.get_run(r["id"]) for r in rows]
    finally:
        store.close()
    return summarise(job_id, runs)


def run_with_series(store: RunStore, ref: str) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """One run (``RunStore.get_run``) and its power series as numpy arrays."""
    run = store.get_run(ref)
    return run, store.read_series(run["id"], arrays=True)


def show_view(ref: str, db: str | os.PathLike[str] | None = None, width: int = 60) -> dict[str, Any]:
    """What ``greentrack show`` prints: the run with its power binned into *width* columns."""
    from .views.show import build_view

    return build_view(*run_with_series(open_store(db, create=False), ref), width=width)


def compare(ref: str, scenario_names: Sequence[str], db: str | os.PathLike[str] | None = None,
            files: Iterable[str | Path] = ()) -> Any:
    """Load run *ref* (id, prefix, ``last``) from the store and compare it under each scenario."""
    if not scenario_names:
        raise GreentrackError("name at least one scenario (--scenario NAME); 'greentrack compare --list' lists them")
    from .carbon.compare import compare_run
    from .carbon.scenarios import Catalogue

    cat = Catalogue.load(files)
    resolved = [cat.get(n) for n in scenario_names]  # bad scenarios are reported before the run is read
    store = open_store(db, create=False)
    try:
        run = store.get_run(ref)
    finally:
        close = getattr(store, "close", None)
        if close:
            close()
    return compare_run(run, resolved)




def html_report(rows: list[dict[str, Any]], db: str | os.PathLike[str] | None = None, detail: int = 5,
                scenarios: Sequence[str] | None = None, title: str = "greentrack report",
                study: str | None = None) -> str:
    """The HTML report of *rows*: the table, the first *detail* runs in detail, the newest under *scenarios*,
    and a study or tuning sweep compared setting by setting."""
    from .carbon.compare import compare_run
    from .carbon.scenarios import Catalogue
    from .views.html import render_html

    if not rows:
        return render_html(rows, title=title)
    store = open_store(db, create=False)
    comparison = None
    if scenarios:
        cat = Catalogue.load(())
        comparison = compare_run(store.get_run(rows[0]["id"]), [cat.get(n) for n in scenarios])
    details = []
    for r in rows[:max(0, detail)]:
        try:
            details.append(run_with_series(store, r["id"]))
        except Exception as exc:  # one unreadable run never costs the report of the others
            note = f"its details could not be read ({type(exc).__name__}); the table has its figures"
            details.append((dict(r, devices=[], phases=[], notes=[*(r.get("notes") or []), note]), {}))
    st = (study, study_comparison(study, db=db)) if study else None
    return render_html(rows, details, comparison=comparison, source=store.location, title=title, study=st)


def study_comparison(study_id: str, db: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The stored runs of a study or tuning sweep (tag ``study=ID``), one row per setting.

    Each row: ``setting``, ``runs``, medians of ``j_per_step``, ``s_per_step``, ``j_per_sample``,
    ``avg_power_w``, and ``saving_pct`` / ``slowdown_pct`` against the setting tagged ``baseline=yes``.
    """
    import statistics

    rows = query_runs(db=db, last=None, tags={"study": study_id}, status="finished")
    if not rows:
        raise GreentrackError(f"no finished runs of study {study_id!r} (runs are tagged study=ID by "
                              "greentrack study and greentrack tune)")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r["started_at"]):
        groups.setdefault((r.get("tags") or {}).get("setting", r["name"]), []).append(r)

    def med(vals: list[Any]) -> float | None:
        v = [x for x in vals if x is not None]
        return statistics.median(v) if v else None

    out = []
    for setting, rs in groups.items():
        steps = [((r.get("stats") or {}).get("step") or {}) for r in rs]
        out.append({"setting": setting, "runs": len(rs),
                    "baseline": any((r.get("tags") or {}).get("baseline") == "yes" for r in rs),
                    "j_per_step": med([s.get("mean_j") for s in steps]),
                    "j_per_sample": med([s.get("j_per_sample") for s in steps]),
                    "s_per_step": med([(r["duration_s"] / r["steps"]) if r.get("steps") and r.get("duration_s")
                                       else None for r in rs]),
                    "avg_power_w": med([(r["energy_j"] / r["duration_s"]) if r.get("energy_j") is not None
                                        and r.get("duration_s") else None for r in rs]),
                    "task": (rs[0].get("tags") or {}).get("task", "train")})
    base = {r["task"]: r for r in out if r["baseline"]}
    for r in out:  # a task without a marked baseline (generation) is compared with its first setting
        base.setdefault(r["task"], r)
    for r in out:
        b = base.get(r["task"])
        r["saving_pct"] = r["slowdown_pct"] = None
        if b is None:
            continue
        unit = "j_per_sample" if r["j_per_sample"] is not None and b["j_per_sample"] else "j_per_step"
        if r[unit] is not None and b[unit]:
            r["saving_pct"] = (1.0 - r[unit] / b[unit]) * 100.0
        if r["s_per_step"] and b["s_per_step"]:
            r["slowdown_pct"] = (r["s_per_step"] / b["s_per_step"] - 1.0) * 100.0
    return out


def run_html_report(ref: str, db: str | os.PathLike[str] | None = None, title: str | None = None) -> str:
    """The HTML report of one run (an id, an id prefix or ``last``): its row and its detail.

    What the logger integrations (greentrack-mlflow, greentrack-wandb) attach to a tracked run.
    """
    run = open_store(db, create=False).get_run(ref)
    return html_report([run], db=db, detail=1, title=title or f"greentrack: {run['name']} [{run['id']}]")
