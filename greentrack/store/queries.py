"""The reads both backends share: run lists with filters, one run, its series, a whole-run snapshot.

The SQL here is portable (``?`` placeholders; the PostgreSQL backend passes them on as ``%s``);
what differs between SQLite and PostgreSQL is a hook a backend overrides: :meth:`Reader._glob`
(SQLite's ``GLOB`` and its index hint, PostgreSQL's regular expression) and
:attr:`Reader.page_rows` (SQLite steps a cursor lazily; a PostgreSQL client fetches pages).

Every row read back is cleaned by :func:`.records.clean_row`: a value that breaks its column's
rule (text in a number column, a timestamp of 1e300, broken JSON) reads as null and the run
gets a note naming the field, and a row without a usable id is skipped with one line, so one
bad row never stops a report of all the others.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ..errors import NotFoundError, suggest
from ..notify import say_once
from ..settings import host_name
from ..units import J_PER_KWH
from . import codec
from .records import (
    StoredRun,
    chunk_from,
    clean_row,
    device_from,
    energy_method,
    phase_from,
    run_from,
    summarise_devices,
)
from .schema import DEVICES, PHASES, RUNS, SERIES

T = TypeVar("T")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


class Reader:
    """Read methods shared by the SQLite store (needs ``_read`` and ``location``)."""

    location: str
    _read: Callable[..., Any]
    #: Rows fetched per query while scanning runs newest first (None: one lazily stepped cursor).
    page_rows: int | None = None
    #: Whether :meth:`_glob` chooses between a scan and the name index (counting matches first).
    glob_hint = True

    # helpers -------------------------------------------------------------------------------------
    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        def q(c: Any) -> list[dict[str, Any]]:
            cur = c.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

        return self._read(q)

    def _many(self, sql: str, params: list[Any], n: int = 1000) -> bool:
        """Whether *sql* matches at least *n* rows (counted through its index, stopping at *n*)."""
        count = f"SELECT count(*) FROM ({sql} LIMIT {int(n)}) AS sub"
        return self._read(lambda c: c.execute(count, params).fetchone()[0]) >= n

    def _glob(self, pattern: str, common: bool) -> tuple[str, Any]:
        """The condition that matches ``name`` against a shell glob, and its parameter.

        *common*: the pattern matches many runs (scan newest-first rather than use the name index)."""
        return ("+name GLOB ?" if common else "name GLOB ?"), pattern

    def _decorate(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """A cleaned run row (None when it has no usable id), ``lost`` detected, ``energy_kwh`` added."""
        clean, problems = clean_row(RUNS, row)
        if clean.get("id") is None:
            return None
        if problems:
            clean["notes"] = list(clean.get("notes") or []) + [f"stored {p}: shown as empty" for p in problems]
        for k, default in (("name", "?"), ("status", "unknown")):
            if clean.get(k) is None:
                clean[k] = default
        if clean.get("command"):
            from .redact import redact_command

            clean["command"] = redact_command(clean["command"])
        if clean["status"] == "running" and clean.get("host") == host_name() and clean.get("pid"):
            if not _pid_alive(int(clean["pid"])):
                clean["status"] = "lost"  # the process died without finishing the run (e.g. SIGKILL)
        ej = clean.get("energy_j")
        clean["energy_kwh"] = ej / J_PER_KWH if ej is not None else None
        return clean

    def _skipped(self, n: int) -> None:
        if n:
            say_once(f"skipped {n} unreadable run row(s) in {self.location} (no usable id)")

    def _base_t(self, run_id: str) -> float:
        row = self._read(lambda c: c.execute("SELECT started_at FROM runs WHERE id=?", (run_id,)).fetchone())
        try:
            return float(row[0]) if row and row[0] is not None else 0.0
        except (TypeError, ValueError):
            return 0.0

    # runs ------------------------------------------------------------------------------------------
    def list_runs(self, last: int | None = 10, name: str | None = None, since: float | None = None,
                  until: float | None = None, tags: dict[str, str] | None = None,
                  status: str | None = None, job_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first. *name* matches exactly, or as a glob when it holds ``*``, ``?`` or ``[``."""
        where: list[str] = []
        params: list[Any] = []
        # a filter that many runs match is tested while scanning newest-first (stops after *last*);
        # a selective one goes through its index (few rows to sort): either way, fast on 1e5 runs
        if name:
            if any(c in name for c in "*?["):
                cond, param = self._glob(name, False)
                common = self._many(f"SELECT 1 FROM runs WHERE {cond}", [param]) if self.glob_hint else False
                cond, param = self._glob(name, common)
                where.append(cond)
                params.append(param)
            else:
                where.append("name = ?")
                params.append(name)
        if status is not None:
            if status == "lost":  # stored as 'running' with its process gone (imported ones: 'lost')
                where.append("status IN ('running', 'lost')")
            else:
                where.append("status = ?")
                params.append(status)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        if job_id:  # the job, and its Slurm steps (job 123 holds 123.0, 123.1...)
            where.append("(job_id = ? OR (job_id > ? AND job_id < ?))")
            params += [job_id, job_id + ".", job_id + "/"]
        for k, v in (tags or {}).items():
            if self._many("SELECT 1 FROM run_tags WHERE key = ? AND value = ?", [k, v]):
                where.append("EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.key = ? AND t.value = ?)")
            else:
                where.append("id IN (SELECT run_id FROM run_tags WHERE key = ? AND value = ?)")
            params += [k, v]
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY started_at DESC"

        def pages(c: Any) -> Iterator[tuple[list[str], Iterable[Any]]]:
            if self.page_rows is None or last is None:
                cur = c.execute(sql, params)
                yield [d[0] for d in cur.description], cur
                return
            size, offset = max(self.page_rows, last + 8), 0
            while True:
                cur = c.execute(f"{sql} LIMIT {size} OFFSET {offset}", params)
                rows = cur.fetchall()
                yield [d[0] for d in cur.description], rows
                if len(rows) < size:
                    return
                offset += size
                size *= 4

        def scan(c: Any) -> tuple[list[dict[str, Any]], int]:
            out: list[dict[str, Any]] = []
            bad = 0
            for cols, page in pages(c):
                for r in page:
                    row = self._decorate(dict(zip(cols, r)))
                    if row is None:
                        bad += 1
                        continue
                    if status and row["status"] != status:
                        continue
                    out.append(row)
                    if last is not None and len(out) >= last:
                        return out, bad
            return out, bad

        rows, bad = self._read(scan)
        self._skipped(bad)
        if rows:
            ids = [r["id"] for r in rows]
            names: dict[str, list[str]] = {}
            methods: dict[str, list[str | None]] = {}
            for d in self._rows(f"SELECT run_id, kind, name, method, energy_j FROM devices WHERE run_id IN "
                                f"({','.join('?' * len(ids))}) ORDER BY run_id, key", ids):
                label = d["name"] if d["kind"] == "gpu" else d["kind"]
                names.setdefault(d["run_id"], []).append(label if isinstance(label, str) else "?")
                if d["energy_j"] is not None:
                    methods.setdefault(d["run_id"], []).append(d["method"] if isinstance(d["method"], str) else None)
            for r in rows:
                r["devices"] = summarise_devices(names.get(r["id"], []))
                r["energy_method"] = energy_method(methods.get(r["id"], []))
        return rows

    def resolve_id(self, ref: str) -> str:
        """A full run id from an id, a unique id prefix, a run name, or ``last`` / ``-1`` / ``-2``."""
        ref = ref.strip()
        if ref in ("last", "latest") or (ref.startswith("-") and ref[1:].isdigit()):
            n = 1 if ref in ("last", "latest") else int(ref[1:])
            row = self._read(lambda c: c.execute(
                "SELECT id FROM runs WHERE id IS NOT NULL ORDER BY started_at DESC LIMIT 1 OFFSET ?",
                (max(0, n - 1),)).fetchone())
            if row is None:
                raise NotFoundError("the database holds no runs yet" if n == 1 else f"there is no run {ref}")
            return str(row[0])
        rows = self._read(lambda c: c.execute("SELECT id FROM runs WHERE id >= ? AND id < ? LIMIT 2",
                                              (ref, ref + "\uffff")).fetchall())
        if len(rows) == 1:
            return str(rows[0][0])
        if len(rows) > 1:
            raise NotFoundError(f"run id {ref!r} is ambiguous; give more characters")
        by_name = self._read(lambda c: c.execute(
            "SELECT id FROM runs WHERE name = ? ORDER BY started_at DESC LIMIT 1", (ref,)).fetchall())
        if by_name:
            return str(by_name[0][0])
        recent = [str(x) for r in self._read(lambda c: c.execute(
            "SELECT id, name FROM runs ORDER BY started_at DESC LIMIT 200").fetchall()) for x in r if x]
        raise NotFoundError(f"no run {ref!r}" + suggest(ref, recent))

    def get_run(self, ref: str) -> dict[str, Any]:
        """One run with its ``devices`` and ``phases`` (cleaned; problems become notes)."""
        rid = self.resolve_id(ref)
        rows = self._rows("SELECT * FROM runs WHERE id=?", [rid])
        run = self._decorate(rows[0]) if rows else None
        if run is None:
            raise NotFoundError(f"run {rid!r} is unreadable")
        notes = list(run.get("notes") or [])
        run["devices"] = []
        for d in self._rows("SELECT * FROM devices WHERE run_id=? ORDER BY key", [rid]):
            dev, problems = clean_row(DEVICES, d)
            dev["info"] = dev.get("info") or {}
            for k in ("key", "kind", "name"):
                dev[k] = dev.get(k) or "?"
            notes += [f"stored device {dev['key']}: {p}: shown as empty" for p in problems]
            run["devices"].append(dev)
        run["phases"] = []
        for p in self._rows("SELECT * FROM phases WHERE run_id=? ORDER BY seq", [rid]):
            ph, problems = clean_row(PHASES, p)
            if problems:
                notes += [f"stored phase #{p.get('seq')}: {x}: phase skipped" for x in problems]
                continue
            run["phases"].append(ph)
        run["notes"] = notes
        return run

    def updated(self, run_ids: Iterable[str]) -> dict[str, float | None]:
        """``{run_id: updated_at}`` of those of *run_ids* stored here (``push`` skips runs already current)."""
        ids = list(run_ids)
        out: dict[str, float | None] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            for r in self._rows(f"SELECT id, updated_at FROM runs WHERE id IN ({','.join('?' * len(part))})", part):
                out[str(r["id"])] = r["updated_at"] if isinstance(r["updated_at"], (int, float)) else None
        return out

    def run_ids(self) -> list[str]:
        return [str(r[0]) for r in self._read(lambda c: c.execute(
            "SELECT id FROM runs WHERE id IS NOT NULL ORDER BY started_at").fetchall())]

    # series ----------------------------------------------------------------------------------------
    def read_series(self, run_id: str, arrays: bool = False) -> dict[str, tuple[Any, Any]]:
        """``{device_key: (times, interval_average_powers)}``: lists, or numpy arrays with *arrays*.

        A chunk in an unknown codec or that does not decode is skipped (one line says so).
        """
        base = self._base_t(run_id)
        rows = self._read(lambda c: c.execute(
            "SELECT device_key, codec, data FROM series WHERE run_id=? ORDER BY device_key, seq", (run_id,)).fetchall())
        if arrays:
            from .series import decode_np as decode
        else:
            decode = codec.decode
        parts: dict[str, list[tuple[Any, Any]]] = {}
        bad = 0
        for key, cod, data in rows:
            if cod not in (None, codec.CODEC) or not isinstance(data, bytes):
                bad += 1
                continue
            try:
                parts.setdefault(str(key), []).append(decode(data, base))
            except (zlib.error, ValueError, IndexError, OverflowError, TypeError):
                bad += 1
        if bad:
            say_once(f"run {run_id}: skipped {bad} unreadable series chunk(s) in {self.location}")
        out: dict[str, tuple[Any, Any]] = {}
        for key, chunks in parts.items():
            if arrays:
                import numpy as np

                out[key] = (np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]))
            else:
                out[key] = ([x for c in chunks for x in c[0]], [x for c in chunks for x in c[1]])
        return out

    def snapshot(self, run_id: str) -> StoredRun | None:
        """Everything stored of one run (rows as they are, series chunks still encoded)."""
        found = self._rows("SELECT * FROM runs WHERE id=?", [run_id])
        if not found:
            return None
        run, _ = clean_row(RUNS, found[0])
        if run.get("name") is None:  # an empty name is a name; only a missing one is shown as "?"
            run["name"] = "?"
        run["status"] = run.get("status") or "running"
        if run.get("started_at") is None:
            return None

        def rows(table: str) -> list[dict[str, Any]]:
            return self._rows(f"SELECT * FROM {table} WHERE run_id=?", [run_id])

        devices = [device_from(clean_row(DEVICES, d)[0]) for d in rows("devices")]
        phases = [phase_from(clean_row(PHASES, p)[0]) for p in rows("phases")]
        chunks = [chunk_from(clean_row(SERIES, c)[0]) for c in rows("series")]
        return StoredRun(run=run_from(run), devices=[d for d in devices if d.key and d.name and d.kind],
                         phases=[p for p in phases if p.started_at is not None and p.ended_at is not None],
                         chunks=[c for c in chunks if c.data is not None])
