"""All SQL lives here, through sqlite-utils. One database file, WAL mode, numbered migrations.

Writes use short ``BEGIN IMMEDIATE`` transactions with a busy timeout and retries, so many
processes can write one file at once without losing rows or failing with "database is locked".
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import ConfigError, NotFoundError, SchemaError, suggest
from ..units import J_PER_KWH
from . import codec
from .records import energy_method, summarise_devices

BUSY_TIMEOUT_MS = 60_000
SCHEMA_VERSION = 1


def _sqlite_utils() -> Any:
    """Import sqlite-utils without letting it pull in pandas and numpy (~150 ms)."""
    mod = sys.modules.get("sqlite_utils")
    if mod is not None:
        return mod
    blocked = [m for m in ("pandas", "numpy") if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]
    try:
        import sqlite_utils  # noqa: PLC0415
    finally:
        for m in blocked:
            if sys.modules.get(m) is None:
                del sys.modules[m]
    return sqlite_utils


_SQL_TYPES = {str: "TEXT", float: "REAL", int: "INTEGER", bytes: "BLOB"}


class _Migration:
    """What a migration gets: ``execute`` (plain SQL) and ``utils`` (the sqlite-utils Database,
    imported on first use: a new database, as every CI run has, then costs no sqlite-utils import)."""

    def __init__(self, store: "Store") -> None:
        self._store = store

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._store.conn.execute(sql, params)

    @property
    def utils(self) -> Any:
        return self._store.db

    def create(self, table: str, columns: dict[str, type], pk: str | tuple[str, ...]) -> None:
        """``CREATE TABLE``, written as sqlite-utils' ``Table.create`` writes it (same schema text)."""
        cols = [f'   "{c}" {_SQL_TYPES[t]}' + (" PRIMARY KEY" if pk == c else "") for c, t in columns.items()]
        if isinstance(pk, tuple):
            cols.append("   PRIMARY KEY (" + ", ".join(f'"{c}"' for c in pk) + ")")
        self.execute(f'CREATE TABLE "{table}" (\n' + ",\n".join(cols) + "\n)")

    def index(self, table: str, columns: list[str], name: str) -> None:
        self.execute(f'CREATE INDEX "{name}"\n    ON "{table}" (' + ", ".join(f'"{c}"' for c in columns) + ")")


def _m1(db: _Migration) -> None:
    db.create("runs", {
        "id": str, "name": str, "status": str, "started_at": float, "ended_at": float,
        "duration_s": float, "energy_j": float, "co2e_kg": float, "region": str,
        "intensity_g_per_kwh": float, "intensity_source": str, "pue": float, "backend": str,
        "host": str, "pid": int, "command": str, "tags": str, "job_id": str, "rank": int,
        "world_size": int, "steps": int, "samples": float, "tokens": float, "error": str,
        "notes": str, "stats": str, "budget": str, "updated_at": float, "version": str,
    }, pk="id")
    db.index("runs", ["started_at"], "idx_runs_started")
    db.index("runs", ["name", "started_at"], "idx_runs_name")
    db.index("runs", ["job_id"], "idx_runs_job")
    db.create("run_tags", {"run_id": str, "key": str, "value": str}, pk=("run_id", "key"))
    db.index("run_tags", ["key", "value"], "idx_tags_kv")
    db.create("devices", {
        "run_id": str, "key": str, "kind": str, "idx": int, "name": str, "uuid": str,
        "method": str, "series_method": str, "energy_j": float, "series_energy_j": float,
        "avg_power_w": float, "peak_power_w": float, "n_samples": int, "info": str,
    }, pk=("run_id", "key"))
    db.create("phases", {
        "run_id": str, "seq": int, "name": str, "started_at": float, "ended_at": float,
        "energy_j": float, "steps": int,
    }, pk=("run_id", "seq"))
    db.create("series", {
        "run_id": str, "device_key": str, "seq": int, "t0": float, "t1": float, "n": int,
        "codec": str, "data": bytes,
    }, pk=("run_id", "device_key", "seq"))


MIGRATIONS = [_m1]  # MIGRATIONS[i] takes the schema from version i to i + 1


class Store:
    """A greentrack database. Safe to share between threads (one connection per thread)."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = Path(path)
        self._local = threading.local()
        if not create and not self.path.exists():
            raise NotFoundError(f"no greentrack database at {self.path}")
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create database folder {self.path.parent}: {exc.strerror}") from None
        self._migrate()

    # connections ---------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA synchronous=NORMAL")
                self._set_wal(conn)
            except sqlite3.DatabaseError as exc:
                if "not a database" in str(exc):
                    raise SchemaError(f"{self.path} is not a greentrack database ({exc})") from None
                raise ConfigError(f"cannot open database {self.path}: {exc}") from None
            self._local.conn = conn
        return conn

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL; two processes creating the same new file can meet here, so retry
        while the other holds the lock (the busy handler does not cover this switch)."""
        for attempt in range(100):
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.01 * (1 + attempt % 10))
        raise ConfigError(f"database {self.path} stayed locked for too long")

    @property
    def db(self) -> Any:
        db = getattr(self._local, "db", None)
        if db is None:
            db = _sqlite_utils().Database(self.conn)
            self._local.db = db
        return db

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            self._local.db = None

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that waits for other writers instead of failing."""
        conn = self.conn
        for attempt in range(20):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
        else:
            raise ConfigError(f"database {self.path} stayed locked for too long")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def _migrate(self) -> None:
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise SchemaError(f"{self.path} is not a greentrack database ({exc})") from None
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"database {self.path} has schema v{version}, newer than this greentrack understands "
                f"(v{SCHEMA_VERSION}); upgrade greentrack"
            )
        if version == SCHEMA_VERSION:
            return
        try:
            with self.write():
                db = _Migration(self)
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0 and self.conn.execute(
                        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone():
                    raise SchemaError(f"{self.path} holds a 'runs' table that greentrack did not create")
                while version < SCHEMA_VERSION:
                    MIGRATIONS[version](db)
                    version += 1
                    self.conn.execute(f"PRAGMA user_version={version}")
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"cannot write database {self.path}: {exc}") from None

    # runs ------------------------------------------------------------------------------------
    # hot-path writes use plain SQL: a session never waits for sqlite-utils' import (~50 ms)
    def _insert(self, table: str, rows: Sequence[dict[str, Any]], replace: bool = False) -> None:
        for r in rows:
            cols = list(r)
            self.conn.execute(
                f"INSERT {'OR REPLACE ' if replace else ''}INTO {table} ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})", [r[c] for c in cols])

    def _upsert(self, table: str, rows: Sequence[dict[str, Any]], pk: Sequence[str]) -> None:
        for r in rows:
            cols = list(r)
            sets = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in pk)
            self.conn.execute(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT({', '.join(pk)}) DO UPDATE SET {sets}", [r[c] for c in cols])

    def begin_run(self, row: dict[str, Any], tags: dict[str, str], devices: Sequence[dict[str, Any]]) -> None:
        row = dict(row)
        row.setdefault("status", "running")
        row.setdefault("host", hostname())
        row.setdefault("pid", os.getpid())
        row["tags"] = json.dumps(tags, sort_keys=True)
        row["updated_at"] = time.time()
        with self.write():
            self._insert("runs", [row])
            self._insert("run_tags", [{"run_id": row["id"], "key": k, "value": str(v)} for k, v in tags.items()])
            self._insert("devices", [dict(d, run_id=row["id"]) for d in devices])

    def progress(self, run_id: str, energy_j: float, devices: Sequence[dict[str, Any]],
                 chunks: Sequence[tuple[str, int, float, Sequence[float], Sequence[float]]], base_t: float) -> None:
        """One flush: new series chunks plus the energy measured so far."""
        with self.write():
            self._insert("series", [{
                "run_id": run_id, "device_key": key, "seq": seq, "t0": times[0], "t1": times[-1],
                "n": len(times), "codec": codec.CODEC, "data": codec.encode(times, powers, base_t),
            } for key, seq, _t0, times, powers in chunks if times], replace=True)
            self._upsert("devices", [dict(d, run_id=run_id) for d in devices], ("run_id", "key"))
            self.conn.execute("UPDATE runs SET energy_j=?, updated_at=?, duration_s=? - started_at WHERE id=?",
                              (energy_j, time.time(), time.time(), run_id))

    def finish_run(self, run_id: str, fields: dict[str, Any], devices: Sequence[dict[str, Any]],
                   phases: Sequence[dict[str, Any]]) -> None:
        fields = dict(fields, updated_at=time.time())
        for k in ("notes", "stats", "budget"):
            if k in fields and not isinstance(fields[k], (str, type(None))):
                fields[k] = json.dumps(fields[k], sort_keys=True)
        with self.write():
            cols = list(fields)
            self.conn.execute(f"UPDATE runs SET {', '.join(c + '=?' for c in cols)} WHERE id=?",
                              [fields[c] for c in cols] + [run_id])
            self._upsert("devices", [dict(d, run_id=run_id) for d in devices], ("run_id", "key"))
            self._insert("phases", [dict(p, run_id=run_id) for p in phases], replace=True)
        self.compact_series(run_id)

    def compact_series(self, run_id: str, max_points: int = 36_000) -> None:
        """Merge a finished run's flush-sized chunks into few large ones (smaller on disk)."""
        rows = self.conn.execute(
            "SELECT device_key, seq, data, t0 FROM series WHERE run_id=? ORDER BY device_key, seq", (run_id,)
        ).fetchall()
        base = self._base_t(run_id)
        by_dev: dict[str, list[Any]] = {}
        for key, _seq, data, _t0 in rows:
            by_dev.setdefault(key, []).append(data)
        if all(len(v) <= 1 for v in by_dev.values()):
            return
        with self.write():
            for key, blobs in by_dev.items():
                times: list[float] = []
                powers: list[float] = []
                for b in blobs:
                    t, p = codec.decode(b, base)
                    times += t
                    powers += p
                self.conn.execute("DELETE FROM series WHERE run_id=? AND device_key=?", (run_id, key))
                for seq, i in enumerate(range(0, len(times), max_points)):
                    tt, pp = times[i:i + max_points], powers[i:i + max_points]
                    self.conn.execute(
                        "INSERT INTO series (run_id, device_key, seq, t0, t1, n, codec, data) VALUES (?,?,?,?,?,?,?,?)",
                        (run_id, key, seq, tt[0], tt[-1], len(tt), codec.CODEC, codec.encode(tt, pp, base)),
                    )

    def _base_t(self, run_id: str) -> float:
        row = self.conn.execute("SELECT started_at FROM runs WHERE id=?", (run_id,)).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    # reading ---------------------------------------------------------------------------------
    def list_runs(self, last: int | None = 10, name: str | None = None, since: float | None = None,
                  until: float | None = None, tags: dict[str, str] | None = None,
                  status: str | None = None, job_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first. *name* matches exactly, or as a glob when it holds ``*`` or ``?``."""
        where, params = [], []
        # a filter that many runs match is tested while scanning newest-first (stops after *last*);
        # a selective one goes through its index (few rows to sort): either way, fast on 1e5 runs
        if name:
            if any(c in name for c in "*?["):
                common = self._many("SELECT 1 FROM runs WHERE name GLOB ?", [name])
                where.append("+name GLOB ?" if common else "name GLOB ?")
            else:
                where.append("name = ?")
            params.append(name)
        if status is not None:
            where.append("status = ?")  # 'lost' runs are stored as 'running' (see _decorate)
            params.append("running" if status == "lost" else status)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        if job_id:
            where.append("job_id = ?")
            params.append(job_id)
        for k, v in (tags or {}).items():
            if self._many("SELECT 1 FROM run_tags WHERE key = ? AND value = ?", [k, v]):
                where.append("EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.key = ? AND t.value = ?)")
            else:
                where.append("id IN (SELECT run_id FROM run_tags WHERE key = ? AND value = ?)")
            params += [k, v]
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC"
        rows = []
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        for r in cur:
            row = self._decorate(dict(zip(cols, r)))
            if status and row["status"] != status:
                continue
            rows.append(row)
            if last is not None and len(rows) >= last:
                break
        if rows:
            ids = [r["id"] for r in rows]
            q = ",".join("?" * len(ids))
            counts: dict[str, list[str]] = {}
            methods: dict[str, list[str]] = {}
            for rid, kind, dname, method in self.conn.execute(
                f"SELECT run_id, kind, name, method FROM devices WHERE run_id IN ({q}) ORDER BY run_id, key", ids
            ):
                counts.setdefault(rid, []).append(dname if kind == "gpu" else kind)
                methods.setdefault(rid, []).append(method)
            for r in rows:
                r["devices"] = summarise_devices(counts.get(r["id"], []))
                r["energy_method"] = energy_method(methods.get(r["id"], []))
        return rows

    def _many(self, sql: str, params: list[Any], n: int = 1000) -> bool:
        """Whether *sql* matches at least *n* rows (counted through its index, stopping at *n*)."""
        return self.conn.execute(f"SELECT count(*) FROM ({sql} LIMIT {int(n)})", params).fetchone()[0] >= n

    def _decorate(self, row: dict[str, Any]) -> dict[str, Any]:
        for k in ("tags", "notes", "stats", "budget"):
            if isinstance(row.get(k), str):
                try:
                    row[k] = json.loads(row[k])
                except ValueError:
                    pass
        if row.get("status") == "running" and row.get("host") == hostname() and row.get("pid"):
            if not _pid_alive(int(row["pid"])):
                row["status"] = "lost"  # the process died without finishing the run (e.g. SIGKILL)
        row["energy_kwh"] = (row["energy_j"] or 0.0) / J_PER_KWH if row.get("energy_j") is not None else None
        return row

    def resolve_id(self, ref: str) -> str:
        """A full run id from an id, a unique id prefix, or ``last`` / ``-1`` / ``-2``."""
        ref = ref.strip()
        if ref in ("last", "latest") or (ref.startswith("-") and ref[1:].isdigit()):
            n = 1 if ref in ("last", "latest") else int(ref[1:])
            row = self.conn.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1 OFFSET ?",
                                    (n - 1,)).fetchone()
            if row is None:
                raise NotFoundError("the database holds no runs yet" if n == 1 else f"there is no run {ref}")
            return row[0]
        rows = self.conn.execute("SELECT id FROM runs WHERE id >= ? AND id < ? LIMIT 2",
                                 (ref, ref + "\uffff")).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if len(rows) > 1:
            raise NotFoundError(f"run id {ref!r} is ambiguous; give more characters")
        recent = [x for r in self.conn.execute("SELECT id, name FROM runs ORDER BY started_at DESC LIMIT 200")
                  for x in r if x]  # ids and names: a mistyped name gets suggestions too
        by_name = [r[0] for r in self.conn.execute(
            "SELECT id FROM runs WHERE name = ? ORDER BY started_at DESC LIMIT 1", (ref,))]
        if by_name:
            return by_name[0]
        raise NotFoundError(f"no run {ref!r}" + suggest(ref, recent))

    def get_run(self, ref: str) -> dict[str, Any]:
        """One run with its devices and phases."""
        rid = self.resolve_id(ref)
        cur = self.conn.execute("SELECT * FROM runs WHERE id=?", (rid,))
        cols = [c[0] for c in cur.description]
        run = self._decorate(dict(zip(cols, cur.fetchone())))
        run["devices"] = [self._json_info(d) for d in self.db["devices"].rows_where("run_id=?", [rid], order_by="key")]
        run["phases"] = list(self.db["phases"].rows_where("run_id=?", [rid], order_by="seq"))
        return run

    @staticmethod
    def _json_info(d: dict[str, Any]) -> dict[str, Any]:
        if isinstance(d.get("info"), str):
            try:
                d["info"] = json.loads(d["info"])
            except ValueError:
                pass
        return d

    def read_series(self, run_id: str) -> dict[str, tuple[list[float], list[float]]]:
        """``{device_key: (times, interval_average_powers)}`` for a run."""
        base = self._base_t(run_id)
        out: dict[str, tuple[list[float], list[float]]] = {}
        for key, data in self.conn.execute(
            "SELECT device_key, data FROM series WHERE run_id=? ORDER BY device_key, seq", (run_id,)
        ):
            t, p = codec.decode(data, base)
            cur = out.setdefault(key, ([], []))
            cur[0].extend(t)
            cur[1].extend(p)
        return out



def hostname() -> str:
    """This machine's name (what socket.gethostname() gives, without importing socket)."""
    return os.uname().nodename


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def open_store(path: str | os.PathLike[str] | None = None, create: bool = True) -> Store:
    """Open the database that the settings name (argument > env > pyproject > default)."""
    from ..settings import resolve_db_path

    return Store(resolve_db_path(path), create=create)
