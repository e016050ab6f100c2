"""The SQLite backend of :class:`~greentrack.store.base.RunStore`: one file, WAL mode, plain ``sqlite3``.

- Writes are short ``BEGIN IMMEDIATE`` transactions; a locked database is waited for through
  :func:`.retry.retry` up to each write's ``timeout_s``, then :class:`StoreBusy` is raised.
- A new database's folder is created ``0700`` and the file ``0600`` (SQLite gives its ``-wal``
  and ``-shm`` files the same mode); an existing one keeps its permissions.
- Opened for reading (``write=False``), the file is opened read-only (``mode=ro``), and as an
  immutable snapshot when even that is impossible (a read-only mount without the ``-shm``
  file): reports work on archives and shared read-only copies.
- Every ``sqlite3`` error leaves as a one-line :class:`StoreError` (busy, full, read-only,
  damaged...), never as a driver exception.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from ..errors import ConfigError, NotFoundError, SchemaError
from ..notify import say_once
from . import migrations
from .base import StoreBusy, StoreCorrupt, StoreError, StoreFull, StoreGone, StoreUnwritable
from .migrations import SCHEMA_VERSION
from .queries import Reader
from .records import DeviceRow, PhaseRow, RunEnd, RunRow, SeriesChunk, StoredRun, end_sql, sql_row
from .retry import retry
from .schema import RUNS

T = TypeVar("T")
WRITE_TIMEOUT_S = 30.0  # what a command (import, doctor --deliver) waits for a locked database
READ_TIMEOUT_S = 10.0  # readers wait only while a crashed writer's WAL is recovered
BUSY_SLICE_MS = 100  # SQLite's own busy wait per try; retry() loops until the deadline
CHECKED_TABLES = ("runs", "run_tags", "devices", "phases")  # verified before `greentrack run` starts

__all__ = ["SQLiteStore", "Store", "SCHEMA_VERSION", "hostname", "is_busy", "translate", "open_store"]


def hostname() -> str:
    """This machine's name (what socket.gethostname() gives, without importing socket)."""
    return os.uname().nodename


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the lock (SQLITE_BUSY / SQLITE_LOCKED)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = _code(exc)
    if code is not None:
        return code in (5, 6)
    msg = str(exc)
    return "locked" in msg or "busy" in msg


def translate(exc: BaseException, where: str, waited_s: float | None = None) -> StoreError:
    """A ``sqlite3`` error as the one-line :class:`StoreError` that says what it means for *where*."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    code = _code(exc)
    if is_busy(exc):
        waited = f" (waited {waited_s:.1f} s)" if waited_s else ""
        return StoreBusy(f"database {where} is locked by another process{waited}")
    if code == 13 or "disk is full" in msg:
        return StoreFull(f"disk full: cannot write database {where}")
    if (code in (8, 14) or "readonly" in msg or "unable to open" in msg) and _read_only_fs(Path(where).parent):
        return StoreUnwritable(f"database {where} is on read-only storage: report, show and export read it, "
                               "nothing can be written to it")
    if code == 8 or "readonly" in msg or "read-only" in msg:
        return StoreUnwritable(f"database {where} is read-only ({msg})")
    if code == 26 or "not a database" in msg:
        return StoreCorrupt(f"{where} is not a greentrack database ({msg}: not SQLite, or damaged at its start); "
                            "'greentrack doctor' says what to do")
    if code == 11 or "malformed" in msg:
        return StoreCorrupt(f"database {where} is damaged ({msg}); 'greentrack doctor' says what to do")
    if code == 10 or "I/O error" in msg:
        free = _free_bytes(Path(where).parent)
        if free is not None and free < 1 << 20:  # SQLite reports some ENOSPC writes (WAL index) as I/O errors
            return StoreFull(f"disk full ({free // 1024} KiB free): cannot write database {where}")
        return StoreUnwritable(f"cannot write database {where}: {msg}")
    if code == 14 or "unable to open" in msg:
        return StoreUnwritable(f"cannot open database {where} ({msg})")
    return StoreError(f"database {where}: {msg}")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class SQLiteStore(Reader):
    """A greentrack SQLite database. Safe to share between threads (one connection per thread)."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True, *, write: bool | None = None,
                 verify: bool = False, timeout_s: float = WRITE_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        self.read_only = not (create if write is None else write)
        self.immutable = False
        self._local = threading.local()
        self._generation = 0
        if self.path.is_dir():
            raise ConfigError(f"database path {self.path} is a directory: give a file, "
                              f"e.g. {self.path / 'greentrack.db'}")
        if self.read_only:
            if not self.path.exists():
                raise NotFoundError(f"no greentrack database at {self.path}")
        else:
            self._create_file()
        self._identity = _identity(self.path)
        self._check_version(timeout_s)
        if verify:
            self.verify()

    # files and connections -----------------------------------------------------------------------
    def _create_file(self) -> None:
        """Create the folder (0700) and an empty file (0600) when they do not exist yet."""
        if self.path.exists():
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create database folder {self.path.parent}: {exc.strerror or exc}") from None
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass  # another process created it first
        except OSError as exc:
            raise StoreUnwritable(f"cannot create database {self.path}: {exc.strerror or exc}") from None

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "generation", -1) != self._generation:
            conn = self._connect()
            self._local.conn = conn
            self._local.generation = self._generation
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                return self._connect_read_only()
            conn = sqlite3.connect(str(self.path), timeout=BUSY_SLICE_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_SLICE_MS}")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._set_wal(conn)
            return conn
        except sqlite3.Error as exc:
            raise translate(exc, self.location) from None

    def _connect_read_only(self) -> sqlite3.Connection:
        import urllib.parse

        uri = "file:" + urllib.parse.quote(str(self.path.resolve()))
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(uri + query, uri=True, timeout=BUSY_SLICE_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout={BUSY_SLICE_MS}")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError as exc:
                conn.close()
                if "unable to open" in str(exc) and "immutable" not in query:
                    continue  # a read-only folder without the -shm file: read the file as it is
                raise
            if "immutable" in query:
                self.immutable = True
                wal = Path(str(self.path) + "-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    say_once(f"{self.path} is on read-only storage with an unmerged {wal.name}: "
                             "its latest writes are not shown")
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL. Processes creating one new file together meet here: wait for each other."""

        def switch() -> None:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")

        retry(switch, timeout_s=WRITE_TIMEOUT_S, transient=is_busy)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
            self._local.conn = None

    def still_same_file(self) -> bool:
        """Whether the file at the path is still the one this store opened (not deleted or replaced)."""
        return _identity(self.path) == self._identity

    def reopen(self) -> None:
        """Drop every thread's connection and open the file now at the path (created if missing)."""
        self._generation += 1
        self._local = threading.local()
        if not self.read_only:
            self._create_file()
        self._identity = _identity(self.path)
        self._check_version(WRITE_TIMEOUT_S)

    # transactions ----------------------------------------------------------------------------------
    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read; sqlite3 errors leave as StoreError."""
        try:
            return retry(lambda: fn(self.conn), timeout_s=READ_TIMEOUT_S, transient=is_busy)
        except sqlite3.Error as exc:
            raise translate(exc, self.location) from None

    def _write(self, body: Callable[[sqlite3.Connection], T], timeout_s: float | None = None) -> T:
        """Run *body* in one ``BEGIN IMMEDIATE`` transaction, waiting at most *timeout_s* for the lock."""
        if self.read_only:
            raise StoreUnwritable(f"database {self.location} was opened for reading only")
        if not self.still_same_file():
            gone = "deleted" if _identity(self.path) is None else "replaced by another file"
            raise StoreGone(f"database {self.location} was {gone}")
        conn = self.conn
        started = time.monotonic()

        def attempt() -> T:
            try:
                conn.execute("BEGIN IMMEDIATE")
                out = body(conn)
                conn.execute("COMMIT")
                return out
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

        try:
            return retry(attempt, timeout_s=WRITE_TIMEOUT_S if timeout_s is None else timeout_s, transient=is_busy)
        except sqlite3.Error as exc:
            raise translate(exc, self.location, time.monotonic() - started) from None

    def _check_version(self, timeout_s: float) -> None:
        version = self._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaError(f"database {self.path} has schema v{version}, newer than this greentrack understands "
                              f"(v{SCHEMA_VERSION}); upgrade greentrack")
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            if version == 0:
                raise SchemaError(f"{self.path} is not a greentrack database (it has no greentrack schema)")
            return  # an older schema reads fine: columns added since read as null
        self._write(self._migrate, timeout_s)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # again, under the lock
        if version == 0 and conn.execute("SELECT 1 FROM sqlite_master WHERE name='runs'").fetchone():
            raise SchemaError(f"{self.path} holds a 'runs' table that greentrack did not create")
        migrations.apply(conn, version)

    def verify(self) -> None:
        """Quick-check the run tables (not the series): a damaged file is refused before a run starts."""
        for table in CHECKED_TABLES:
            def check(c: sqlite3.Connection, t: str = table) -> list[Any]:
                return c.execute(f"PRAGMA quick_check([{t}])").fetchall()

            res = self._read(check)
            if [r[0] for r in res] != ["ok"]:
                raise StoreCorrupt(f"database {self.location} is damaged (table {table}: "
                                   f"{str(res[0][0]).splitlines()[-1]}); 'greentrack doctor' says what to do")

    # a session's run -------------------------------------------------------------------------------
    @staticmethod
    def _put(conn: sqlite3.Connection, table: str, row: Mapping[str, Any], verb: str = "INSERT") -> None:
        cols = list(row)
        conn.execute(f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                     [row[c] for c in cols])

    @staticmethod
    def _upsert(conn: sqlite3.Connection, table: str, row: Mapping[str, Any], pk: Sequence[str]) -> None:
        cols = list(row)
        sets = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in pk)
        conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                     f"ON CONFLICT({', '.join(pk)}) DO UPDATE SET {sets}", [row[c] for c in cols])

    @staticmethod
    def _run_sql(run: RunRow) -> dict[str, Any]:
        row = sql_row(run)
        row["host"] = row["host"] or hostname()
        row["pid"] = row["pid"] if row["pid"] is not None else os.getpid()
        row["updated_at"] = time.time()
        if row.get("command"):
            from .redact import redact_command

            row["command"] = redact_command(row["command"])
        return row

    def _write_tags(self, conn: sqlite3.Connection, run: RunRow) -> None:
        conn.execute("DELETE FROM run_tags WHERE run_id=?", (run.id,))
        for k, v in run.tags.items():
            self._put(conn, "run_tags", {"run_id": run.id, "key": str(k), "value": str(v)})

    def _write_chunks(self, conn: sqlite3.Connection, run_id: str, chunks: Sequence[SeriesChunk]) -> None:
        for c in chunks:
            self._put(conn, "series", sql_row(c, run_id), "INSERT OR REPLACE")

    def begin_run(self, run: RunRow, devices: Sequence[DeviceRow], *, timeout_s: float | None = None) -> None:
        row = self._run_sql(run)

        def body(conn: sqlite3.Connection) -> None:
            self._put(conn, "runs", row)
            self._write_tags(conn, run)
            for d in devices:
                self._put(conn, "devices", sql_row(d, run.id))

        self._write(body, timeout_s)

    def progress(self, run_id: str, energy_j: float | None, devices: Sequence[DeviceRow],
                 chunks: Sequence[SeriesChunk], *, timeout_s: float | None = None) -> None:
        def body(conn: sqlite3.Connection) -> None:
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

        def body(conn: sqlite3.Connection) -> None:
            self._write_chunks(conn, run_id, chunks)
            conn.execute(f"UPDATE runs SET {', '.join(c + '=?' for c in fields)} WHERE id=?",
                         [*fields.values(), run_id])
            for d in devices:
                self._upsert(conn, "devices", sql_row(d, run_id), ("run_id", "key"))
            for p in phases:
                self._put(conn, "phases", sql_row(p, run_id), "INSERT OR REPLACE")

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

        def body(conn: sqlite3.Connection) -> None:
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
    def _put_run(self, conn: sqlite3.Connection, sr: StoredRun, merge: bool) -> None:
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
        def body(conn: sqlite3.Connection) -> tuple[int, int]:
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

    # the database itself -----------------------------------------------------------------------------
    def health(self, write: bool = False) -> dict[str, Any]:
        """Schema, size, integrity, permissions and (with *write*) whether the write lock can be taken."""
        from .health import sqlite_health

        return sqlite_health(self, write)


Store = SQLiteStore  # the name the rest of the code and the tests have always used


def open_store(path: str | os.PathLike[str] | None = None, create: bool = True, *, write: bool | None = None,
               verify: bool = False) -> SQLiteStore:
    """Open the database the settings name (argument > env > pyproject > default).

    ``create=False`` (or ``write=False``) opens it for reading only: a missing file is an
    error rather than a new database, and a read-only file or mount reads fine.
    """
    from ..settings import resolve_db_path

    return SQLiteStore(resolve_db_path(path), write=create if write is None else write, verify=verify)
