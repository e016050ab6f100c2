"""The node-level exporter: every run of this host, read from the greentrack store at scrape time.

A session writes its run row at start (status ``running``) and, at each flush of its sampler
(every ``GREENTRACK_FLUSH_INTERVAL``, 2 s by default), each device's energy so far; at its end the
totals. ``greentrack serve-metrics`` reads those through :class:`greentrack.store.Store` (no SQL
here), so one endpoint covers every process of the node, whatever started it, without touching
any of them. What the store does not hold while a run goes on is not shown: the current phase
(phases are stored when a run ends: these series have no ``phase`` label) and the step count (shown
once the run has ended).

Power is the energy a device added between two flushes over the time between them. A run that is
no longer ``running`` (finished, failed, interrupted, or ``lost``: its process died) shows its final
values for the grace period after its end, then drops out.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

from greentrack.errors import GreentrackError, NotFoundError
from greentrack.notify import say_once

from .state import DeviceLabels, RunState, Snapshot


class NodeExporter:
    """Runs of one host, refreshed from the store at most every *min_refresh_s* (a scrape triggers it)."""

    def __init__(self, db_path: Path, grace_s: float, host: str | None = None, min_refresh_s: float = 0.5,
                 clock: Callable[[], float] = time.time) -> None:
        from greentrack.store import hostname

        self.db_path = Path(db_path)
        self.grace_s = grace_s
        self.host = host or hostname()
        self.min_refresh_s = min_refresh_s
        self.clock = clock
        self.started = clock()
        self.lock = threading.Lock()
        self.runs: dict[str, RunState] = {}
        self.ok = True
        self.last_refresh: float | None = None
        self._flush: dict[str, tuple[float, dict[str, float]]] = {}  # run -> (updated_at, energies) of last flush
        self._gap: dict[str, float] = {}  # run -> seconds between its last two flushes
        self._store: Any = None

    def _open(self) -> Any:
        if self._store is None:
            if not self.db_path.exists():
                return None  # no run yet on this machine: nothing to show, nothing to complain about
            from greentrack.store import Store

            self._store = Store(self.db_path, create=False)
        return self._store

    def snapshots(self) -> list[Snapshot]:
        """What one scrape shows: refresh from the store when due, drop runs past their grace period."""
        with self.lock:
            now = self.clock()
            if self.last_refresh is None or now - self.last_refresh >= self.min_refresh_s:
                self.refresh(now)
            for rid in [rid for rid, st in self.runs.items() if st.expired(now, self.grace_s)]:
                del self.runs[rid]
                self._flush.pop(rid, None)
                self._gap.pop(rid, None)
            return [st.snapshot(now) for st in self.runs.values()]

    def refresh(self, now: float) -> None:
        """Read the runs of this host that are running, or ended within the grace period."""
        try:
            store = self._open()
            if store is None:
                self.ok = True
                return
            since = (self.last_refresh if self.last_refresh is not None else now - self.grace_s) - 5.0
            ids: list[str] = []
            for row in store.list_runs(last=None, status="running") + store.list_runs(last=None, since=since):
                if row.get("host") == self.host and row["id"] not in ids:
                    ids.append(row["id"])
            ids += [rid for rid, st in self.runs.items() if st.ended_at is None and rid not in ids]
            for rid in ids:
                st = self.runs.get(rid)
                if st is not None and st.ended_at is not None:
                    continue  # its final values are taken
                try:
                    run = store.get_run(rid)
                except NotFoundError:  # deleted meanwhile: ends here
                    if st is not None:
                        st.end(now)
                    continue
                self._take(run, now)
            self.ok = True
        except (GreentrackError, sqlite3.Error, OSError) as exc:
            self.ok = False
            self._store = None
            say_once(f"prometheus: cannot read {self.db_path}: {exc} (serving the last values read)")
        self.last_refresh = now

    def _take(self, run: dict[str, Any], now: float) -> None:
        rid = run["id"]
        status = run.get("status")
        ended = status != "running"
        ended_at = run.get("ended_at") if status != "lost" else None
        if ended and ended_at is not None and now - ended_at > self.grace_s and rid not in self.runs:
            return  # ended before we could show it, and its grace period is over
        st = self.runs.get(rid)
        if st is None:
            started = run.get("started_at")
            st = RunState(run_id=rid, name=run.get("name") or "", job_id=run.get("job_id"), rank=run.get("rank"),
                          host=run.get("host") or "", started_at=started, region=run.get("region"),
                          intensity_g_per_kwh=run.get("intensity_g_per_kwh"),
                          intensity_source=run.get("intensity_source"), pue=run.get("pue") or 1.0,
                          with_phase=False,
                          # a run that began before this exporter: its energy so far is not new (a restart of
                          # serve-metrics must not count it twice); a newer one starts at 0 for increase()
                          zero_first=started is not None and started >= self.started)
            self.runs[rid] = st
        readings: dict[str, float | None] = {}
        for d in run.get("devices") or []:
            if d["key"] not in st.devices:
                st.add_device(DeviceLabels(d["key"], d.get("name") or "", d.get("uuid") or "", d.get("method") or ""))
            readings[d["key"]] = d.get("energy_j")
        if ended:
            st.end(ended_at if ended_at is not None else now, readings, steps=run.get("steps"))
            return
        st.observe(readings)
        self._power(rid, st, run.get("updated_at"), readings, now)

    def _power(self, rid: str, st: RunState, updated_at: float | None, readings: dict[str, float | None],
               now: float) -> None:
        """Power per device from the last two flushes; none when the flushes have stopped coming."""
        if updated_at is None:
            return
        energies = {k: v for k, v in readings.items() if v is not None}
        prev = self._flush.get(rid)
        if prev is None or updated_at > prev[0]:
            if prev is not None:
                dt = updated_at - prev[0]
                self._gap[rid] = dt
                for key, e in energies.items():
                    e0 = prev[1].get(key)
                    if e0 is not None and e >= e0:
                        st.power[key] = ("", (e - e0) / dt)
                    else:
                        st.power.pop(key, None)
            self._flush[rid] = (updated_at, energies)
        gap = self._gap.get(rid)
        if gap is not None and now - updated_at > 3 * gap + 2.0:
            st.power.clear()  # no flush for three intervals: no current power to show
