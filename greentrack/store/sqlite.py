"""The SQLite backend of :class:`~greentrack.store.base.RunStore`: one file, WAL mode, plain ``sqlite3``.

- Writes are short ``BEGIN IMMEDIATE`` transactions; a locked database is waited for through
  :func:`.retry.retry` up to each write's ``timeout_s``, then :class:`StoreBusy` is raised.
- A new database's folder is created ``0700`` and the file ``0600`` (SQLite gives its ``-wal``
  and ``-shm`` files the same mode); an existing one keeps its permissions.
- A file this process has just created is set up (WAL mode, the schema) without waiting for the
  disk (``synchronous=OFF``), then every write is ``synchronous=NORMAL``: the setup holds no data,
  and SQLite's checksummed WAL frames leave an interrupted one to be redone at the next open. It
  saves the 4 ``fdatasync`` calls a new database's setup cost (each up to 12 ms on the machine this
  was measured on), paid on every CI run, whose database is new each time.
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
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from ..errors import ConfigError, NotFoundError, SchemaError
from ..notify import say_once
from . import migrations
from .base import StoreBusy, StoreCorrupt, StoreError, StoreFull, StoreGone, StoreUnwritable
from .migrations import SCHEMA_VERSION
from .retry import retry
from .sqlstore import SQLStore

T = TypeVar("T")
WRITE_TIMEOUT_S = 30.0  # what a command (import, doctor --deliver) waits for a locked database
READ_TIMEOUT_S = 10.0  # readers wait only while a crashed writer's WAL is recovered
BUSY_SLICE_MS = 100  # SQLite's own busy wait per try; retry() loops until the deadline
# quick-checked before a strict session starts (`greentrack run`, the pytest plugin): the tables a run's start
# writes. Not the phases (one row per test of every pytest run: a check that grows with each run, see
# `python benchmarks/bench_pytest_breakdown.py --only 6`) nor the series: both are written at the run's end,
# where a damaged table spools the run with one line
CHECKED_TABLES = ("runs", "run_tags", "devices")

__all__ = ["SQLiteStore", "Store", "SCHEMA_VERSION", "hostname", "is_busy", "translate", "open_store"]


def hostname() -> str:
    """The host name stored with runs: ``GREENTRACK_HOST``, else this machine's name."""
    from ..settings import host_name

    return host_name()


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


class SQLiteStore(SQLStore):
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
            self._local.setting_up_new = False
        else:
            # a file created here is set up without waiting for the disk, by this thread only (see the module)
            self._local.setting_up_new = self._create_file()
        self._identity = _identity(self.path)
        self._set_up(timeout_s)
        if verify:
            self.verify()

    # files and connections -----------------------------------------------------------------------
    def _create_file(self) -> bool:
        """Create the folder (0700) and an empty file (0600) when they do not exist yet; True when this
        call created the file."""
        if self.path.exists():
            return False
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create database folder {self.path.parent}: {exc.strerror or exc}") from None
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False  # another process created it first: it sets it up
        except OSError as exc:
            raise StoreUnwritable(f"cannot create database {self.path}: {exc.strerror or exc}") from None
        return True

    def _set_up(self, timeout_s: float) -> None:
        """The schema checked (and created or migrated); a new file's setup ends with its writes waiting
        for the disk again."""
        try:
            self._check_version(timeout_s)
        finally:
            if self._local.setting_up_new:
                self._local.setting_up_new = False
                conn = getattr(self._local, "conn", None)
                if conn is not None:
                    try:
                        conn.execute("PRAGMA synchronous=NORMAL")
                    except sqlite3.Error as exc:
                        raise translate(exc, self.location) from None

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
            new = getattr(self._local, "setting_up_new", False)
            conn.execute("PRAGMA synchronous=OFF" if new else "PRAGMA synchronous=NORMAL")
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
        self._local.setting_up_new = not self.read_only and self._create_file()
        self._identity = _identity(self.path)
        self._set_up(WRITE_TIMEOUT_S)

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
        """Quick-check the tables a run's start writes (:data:`CHECKED_TABLES`): a damaged file is refused
        before a run starts, at a cost that does not grow with the tests the database holds."""
        for table in CHECKED_TABLES:
            def check(c: sqlite3.Connection, t: str = table) -> list[Any]:
                return c.execute(f"PRAGMA quick_check([{t}])").fetchall()

            res = self._read(check)
            if [r[0] for r in res] != ["ok"]:
                raise StoreCorrupt(f"database {self.location} is damaged (table {table}: "
                                   f"{str(res[0][0]).splitlines()[-1]}); 'greentrack doctor' says what to do")

    # the database itself -----------------------------------------------------------------------------
    @staticmethod
    def _replace(conn: Any, table: str, row: Mapping[str, Any], pk: Sequence[str]) -> None:
        cols = list(row)
        conn.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                     [row[c] for c in cols])

    def _replace_values(self, conn: Any, table: str, cols: Sequence[str], rows: Iterable[Sequence[Any]],
                        pk: Sequence[str]) -> None:
        """One ``executemany`` over *rows* as they come (no list of them is made)."""
        if cols:
            conn.executemany(f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) "
                             f"VALUES ({', '.join('?' * len(cols))})", rows)

    def health(self, write: bool = False) -> dict[str, Any]:
        """Schema, size, integrity, permissions and (with *write*) whether the write lock can be taken."""
        from .health import sqlite_health

        return sqlite_health(self, write)


Store = SQLiteStore  # the name the rest of the code and the tests have always used


def open_store(path: str | os.PathLike[str] | None = None, create: bool = True, *, write: bool | None = None,
               verify: bool = False) -> Any:
    """Open the database the settings name (any backend: see :func:`greentrack.store.location.open_store`)."""
    from .location import open_store as open_any

    return open_any(path, create, write=write, verify=verify)
