"""The writes both backends share: a session's run, whole runs (import, the spool), series compaction.

:class:`SQLStore` is written once over portable SQL (``?`` placeholders, ``INSERT ... ON CONFLICT
(...) DO UPDATE``, which SQLite and PostgreSQL both speak). A backend provides the connection and
transaction (``_read``, ``_write``), and :meth:`SQLStore._replace` (SQLite: ``INSERT OR REPLACE``;
PostgreSQL: an upsert on the primary key). Nothing here knows which database it writes.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from ..notify import say_once
from ..settings import host_name
from .base import StoreBusy
from .queries import Reader
from .records import DeviceRow, PhaseRow, RunEnd, RunRow, SeriesChunk, StoredRun, end_sql, sql_row, sql_values
from .schema import PHASES, RUNS, SERIES

T = TypeVar("T")


class SQLStore(Reader):
    """Writes of :class:`~greentrack.store.base.RunStore` over a backend's ``_write(body, timeout_s)``."""

    _write: Callable[..., Any]

    # a session's run -------------------------------------------------------------------------------
    @staticmethod
    def _put(conn: Any, table: str, row: Mapping[str, Any]) -> None:
        cols = list(row)
        conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                     [row[c] for c in cols])

    @staticmethod
    def _upsert(conn: Any, table: str, row: Mapping[str, Any], pk: Sequence[str]) -> None:
        cols = list(row)
        sets = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in pk)
        conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                     f"ON CONFLICT({', '.join(pk)}) DO UPDATE SET {sets}", [row[c] for c in cols])

    @staticmethod
    def _run_sql(run: RunRow) -> dict[str, Any]:
        row = sql_row(run)
        row["host"] = row["host"] or host_name()
        row["pid"] = row["pid"] if row["pid"] is not None else os.getpid()
        row["updated_at"] = time.time()
        if row.get("command"):
            from .redact import redact_command

            row["command"] = redact_command(row["command"])
        return row

    def _write_tags(self, conn: Any, run: RunRow) -> None:
        conn.execute("DELETE FROM run_tags WHERE run_id=?", (run.id,))
        for k, v in run.tags.items():
            self._put(conn, "run_tags", {"run_id": run.id, "key": str(k), "value": str(v)})

    def _write_chunks(self, conn: Any, run_id: str, chunks: Sequence[SeriesChunk]) -> None:
        for c in chunks:
            self._replace(conn, "series", sql_row(c, run_id), SERIES.pk)

    def begin_run(self, run: RunRow, devices: Sequence[DeviceRow], *, timeout_s: float | None = None) -> None:
        row = self._run_sql(run)

        def body(conn: Any) -> None:
            self._put(conn, "runs", row)
            self._write_tags(conn, run)
            for d in devices:
                self._put(conn, "devices", sql_row(d, run.id))

        self._write(body, timeout_s)

    def progress(self, run_id: str, energy_j: float | None, devices: Sequence[DeviceRow],
                 chunks: Sequence[SeriesChunk], *, timeout_s: float | None = None) -> None:
        def body(conn: Any) -> None:
            self._write_chunks(conn, run_id, chunks)
            for d in devices:
                self._upsert(conn, "devices", sql_row(d, run_id), ("run_id", "key"))
            now = time.time()
            conn.execute("UPDATE runs SET energy_j=?, updated_at=?, duration_s=? - started_at WHERE id=?",
                         (energy_j, now, now, run_id))

        self._write(body, timeout_s)

    def finish_run(self, run_id: str, end: RunEnd, devices: Sequence[DeviceRow], phases: Sequence[PhaseRow],
                   chunks: Sequence[SeriesChunk] = (), *, timeout_s: float | None = None) -> None:
        fields = dict(end_sql(end), updated_at=time.time())

        def body(conn: Any) -> None:
            self._write_chunks(conn, run_id, chunks)
            conn.execute(f"UPDATE runs SET {', '.join(c + '=?' for c in fields)} WHERE id=?",
                         [*fields.values(), run_id])
            for d in devices:
                self._upsert(conn, "devices", sql_row(d, run_id), ("run_id", "key"))
            self._replace_values(conn, "phases", *sql_values(phases, run_id), PHASES.pk)

        self._write(body, timeout_s)
        self.compact_series(run_id, timeout_s=0.0)

    def update_run(self, run_id: str, fields: Mapping[str, Any], *, timeout_s: float | None = None) -> None:
        names = set(RUNS.names) - {"id"}
        bad = [k for k in fields if k not in names]
        if bad:
            raise ValueError(f"not run columns: {', '.join(bad)}")
        enc = sql_row(RunRow(id=run_id, name="-", started_at=0.0, **{k: v for k, v in fields.items()}))
        sets = {k: enc[k] for k in fields}
        sets["updated_at"] = time.time()
        self._write(lambda c: c.execute(f"UPDATE runs SET {', '.join(k + '=?' for k in sets)} WHERE id=?",
                                        [*sets.values(), run_id]), timeout_s)

    def compact_series(self, run_id: str, max_points: int = 36_000, timeout_s: float | None = None) -> None:
        """Merge a finished run's flush-sized chunks into few large ones (smaller on disk).

        Best effort: with *timeout_s* 0 a locked database leaves the chunks as they are (readers
        do not mind), so the end of a session never waits for it.
        """
        from . import codec

        rows = self._read(lambda c: c.execute(
            "SELECT device_key, data, codec FROM series WHERE run_id=? ORDER BY device_key, seq", (run_id,)).fetchall())
        by_dev: dict[str, list[bytes]] = {}
        for key, data, cod in rows:
            if cod not in (None, codec.CODEC):
                return  # a codec this version does not know: leave the run alone
            by_dev.setdefault(key, []).append(data)
        if all(len(v) <= 1 for v in by_dev.values()):
            return
        base = self._base_t(run_id)

        def body(conn: Any) -> None:
            for key, blobs in by_dev.items():
                times: list[float] = []
                powers: list[float] = []
                for b in blobs:
                    t, p = codec.decode(b, base)
                    times += t
                    powers += p
                conn.execute("DELETE FROM series WHERE run_id=? AND device_key=?", (run_id, key))
                for seq, i in enumerate(range(0, len(times), max_points)):
                    chunk = SeriesChunk.encode(key, seq, times[i:i + max_points], powers[i:i + max_points], base)
                    self._put(conn, "series", sql_row(chunk, run_id))

        try:
            self._write(body, timeout_s)
        except StoreBusy:
            pass
        except Exception as exc:  # a chunk that does not decode: leave them as they are
            say_once(f"series of run {run_id} left uncompacted: {exc}")

    # whole runs: import and the spool ----------------------------------------------------------------
    def _put_run(self, conn: Any, sr: StoredRun, merge: bool) -> None:
        run = sr.run
        row = self._run_sql(run)
        if run.updated_at is not None:
            row["updated_at"] = run.updated_at
        if merge:
            self._upsert(conn, "runs", row, ("id",))
        else:
            self._put(conn, "runs", row)
        self._write_tags(conn, run)
        for d in sr.devices:
            self._upsert(conn, "devices", sql_row(d, run.id), ("run_id", "key"))
        if sr.phases or not merge:
            conn.execute("DELETE FROM phases WHERE run_id=?", (run.id,))
        for p in sr.phases:
            self._put(conn, "phases", sql_row(p, run.id))
        self._write_chunks(conn, run.id, sr.chunks)

    def import_runs(self, runs: Sequence[StoredRun], *, timeout_s: float | None = None) -> tuple[int, int]:
        def body(conn: Any) -> tuple[int, int]:
            done = skipped = 0
            for sr in runs:
                if conn.execute("SELECT 1 FROM runs WHERE id=?", (sr.run.id,)).fetchone():
                    skipped += 1
                    continue
                self._put_run(conn, sr, merge=False)
                done += 1
            return done, skipped

        return self._write(body, timeout_s)

    def deliver(self, run: StoredRun, *, timeout_s: float | None = None) -> None:
        self._write(lambda c: self._put_run(c, run, merge=True), timeout_s)
        if run.run.status != "running":
            self.compact_series(run.run.id, timeout_s=0.0)

    @staticmethod
    def _replace(conn: Any, table: str, row: Mapping[str, Any], pk: Sequence[str]) -> None:
        """Insert *row*, replacing the row of the same primary key *pk* (a backend's own SQL)."""
        raise NotImplementedError

    def _replace_values(self, conn: Any, table: str, cols: Sequence[str], rows: Iterable[Sequence[Any]],
                        pk: Sequence[str]) -> None:
        """:meth:`_replace` for each of *rows*, value tuples in the order of *cols* (taken one at a time:
        a backend may hand the iterator to one ``executemany``)."""
        for values in rows:
            self._replace(conn, table, dict(zip(cols, values)), pk)
