"""The PostgreSQL backend of :class:`~greentrack.store.base.RunStore`, through psycopg 3.

Selected by a ``postgresql://`` (or ``postgres://``) URL in ``GREENTRACK_DB``, ``[tool.greentrack] db``
or ``--db``. What differs from SQLite lives here; the reads and writes themselves are the shared,
portable ones of :class:`~greentrack.store.sqlstore.SQLStore`:

- the tables of :mod:`.schema` as PostgreSQL types (``REAL`` is ``double precision``, ``INTEGER``
  ``bigint``, ``BLOB`` ``bytea``) and text in the ``C`` collation, so ids sort and match by
  prefix byte by byte as in SQLite; the schema version in the one-row table ``greentrack_schema``;
  the shared migrations of :mod:`.migrations` run under an advisory lock (many processes may
  open a new database at once);
- one connection per store (``autocommit``; each write one transaction), shared by the threads
  of a process under a lock, never by a forked child;
- a write waits for a row lock at most its ``timeout_s`` (``SET LOCAL lock_timeout``), then
  :class:`StoreBusy`; a server that cannot be reached, or that went away mid-run, is
  :class:`StoreUnavailable` (transient: the session keeps the run and spools it, and the next
  write reconnects);
- credentials come only from the URL, a libpq service file (``?service=NAME``) or the ``PG*``
  variables; :attr:`PostgresStore.location` is the URL with its password masked, and every
  message goes through :func:`~greentrack.settings.mask_url`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Mapping, Sequence, TypeVar

from ..errors import ConfigError, NotFoundError, SchemaError
from ..settings import mask_url
from . import migrations
from .base import StoreBusy, StoreError, StoreFull, StoreUnavailable, StoreUnwritable
from .migrations import SCHEMA_VERSION
from .retry import retry
from .schema import TABLES, Column, Table
from .sqlstore import SQLStore

T = TypeVar("T")
WRITE_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5  # libpq's connect_timeout unless the URL sets one (libpq's minimum is 2)
RECONNECT_EVERY_S = 1.0  # a server that just refused a connection is not asked again sooner
PG_TYPES = {"TEXT": 'text COLLATE "C"', "REAL": "double precision", "INTEGER": "bigint", "BLOB": "bytea"}
LOCK_KEY = 0x67726E74  # advisory lock taken while migrating ("grnt")
_LOCK_CODES = ("55P03", "40P01", "40001")  # lock_not_available, deadlock_detected, serialization_failure
_orphans: list[Any] = []  # connections inherited through fork: never used, never closed (the parent's)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError("a postgresql:// database needs psycopg 3: pip install 'greentrack[postgres]' "
                          "(or pip install 'psycopg[binary]')") from None
    return psycopg


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return mask_url(text)


def translate(exc: BaseException, where: str) -> StoreError:
    """A psycopg error as the one-line :class:`StoreError` that says what it means for *where*."""
    psycopg = _psycopg()
    msg = _one_line(exc)
    code = getattr(exc, "sqlstate", None) or ""
    if code in _LOCK_CODES:
        return StoreBusy(f"database {where} is locked by another writer ({msg})")
    if code == "53100":
        return StoreFull(f"disk full on the server of database {where} ({msg})")
    if code in ("25006", "42501"):
        return StoreUnwritable(f"database {where} cannot be written ({msg})")
    if code == "3D000":
        return StoreError(f"database {where} does not exist on its server ({msg}); create it (createdb NAME) or "
                          "fix the URL")
    if code.startswith("28"):
        return StoreError(f"cannot log in to database {where} ({msg}): give the credentials in the URL, a libpq "
                          "service file or PG* variables")
    if code.startswith(("08", "57")) or isinstance(exc, psycopg.OperationalError) and not code:
        return StoreUnavailable(f"database server of {where} is unreachable ({msg})")
    return StoreError(f"database {where}: {msg}")


def _transient(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in _LOCK_CODES


class _Cursor:
    """What the shared SQL gets: ``execute`` with ``?`` placeholders (passed on as ``%s``)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), list(params) if params else None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)


class _Target(_Cursor):
    """The :class:`~greentrack.store.migrations.Target` of a PostgreSQL connection."""

    def create_table(self, table: Table, version: int) -> None:
        cols = [c for c in table.columns if c.since <= version]
        body = ", ".join(f'"{c.name}" {PG_TYPES[c.sql]}' for c in cols)
        self.conn.execute(f'CREATE TABLE "{table.name}" ({body}, PRIMARY KEY ({", ".join(table.pk)}))')

    def create_index(self, table: Table, name: str, columns: Sequence[str]) -> None:
        cols = ", ".join(f'"{c}"' for c in columns)
        self.conn.execute(f'CREATE INDEX "{name}" ON "{table.name}" ({cols})')

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                 "AND table_schema = current_schema()", [table]).fetchall()
        return [r[0] for r in rows]

    def add_column(self, table: Table, column: Column) -> None:
        self.conn.execute(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {PG_TYPES[column.sql]}')

    def set_version(self, version: int) -> None:
        self.conn.execute("UPDATE greentrack_schema SET version = %s", [int(version)])


class PostgresStore(SQLStore):
    """A greentrack database on a PostgreSQL server (see the module docstring)."""

    page_rows = 64
    glob_hint = False  # the planner chooses; a regular expression cannot use the name index anyway

    def __init__(self, url: str, *, write: bool = True, verify: bool = False,
                 timeout_s: float = WRITE_TIMEOUT_S) -> None:
        self.url = url
        self.location = mask_url(url)
        self.read_only = not write
        self._lock = threading.RLock()
        self._conn: Any = None
        self._pid = os.getpid()
        self._down_until = 0.0
        self._down_error: StoreError | None = None
        self._check_version(timeout_s)
        if verify:
            self._read(lambda c: c.execute("SELECT count(*) FROM runs").fetchone())

    # connections ---------------------------------------------------------------------------------
    def _connect(self) -> Any:
        psycopg = _psycopg()
        if time.monotonic() < self._down_until and self._down_error is not None:
            raise self._down_error
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": "greentrack"}
        if "connect_timeout" not in self.url:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        try:
            conn = psycopg.connect(self.url, **kwargs)
        except psycopg.Error as exc:
            err = translate(exc, self.location)
            if isinstance(err, StoreUnavailable):
                self._down_until, self._down_error = time.monotonic() + RECONNECT_EVERY_S, err
            raise err from None
        except Exception as exc:  # a malformed URL: libpq's own words, password masked
            raise ConfigError(f"bad PostgreSQL URL {self.location}: {_one_line(exc)}") from None
        self._down_until, self._down_error = 0.0, None
        return conn

    def _connection(self) -> Any:
        if self._pid != os.getpid():  # a forked child: the parent's connection is not ours to use or close
            if self._conn is not None:
                _orphans.append(self._conn)
            self._conn, self._pid = None, os.getpid()
            self._lock = threading.RLock()
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            self._drop()
            conn = None
        if conn is None:
            conn = self._conn = self._connect()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._drop()
            else:
                self._conn = None

    def reopen(self) -> None:
        """Reconnect (after the server restarted) and check the schema again."""
        with self._lock:
            self._drop()
            self._down_until = 0.0
        self._check_version(WRITE_TIMEOUT_S)

    # transactions ----------------------------------------------------------------------------------
    def _run(self, fn: Callable[[Any], T]) -> T:
        psycopg = _psycopg()
        with self._lock:
            conn = self._connection()
            try:
                return fn(conn)
            except psycopg.Error:
                if conn.closed or conn.broken:
                    self._drop()
                raise

    def _read(self, fn: Callable[[Any], T]) -> T:
        psycopg = _psycopg()
        try:
            return self._run(lambda conn: fn(_Cursor(conn)))
        except psycopg.Error as exc:
            raise translate(exc, self.location) from None

    def _write(self, body: Callable[[Any], T], timeout_s: float | None = None) -> T:
        """Run *body* in one transaction, waiting at most *timeout_s* for another writer's row locks."""
        if self.read_only:
            raise StoreUnwritable(f"database {self.location} was opened for reading only")
        psycopg = _psycopg()
        limit = WRITE_TIMEOUT_S if timeout_s is None else max(0.0, timeout_s)

        def attempt(conn: Any) -> T:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = {max(1, int(limit * 1000))}")
                return body(_Cursor(conn))

        try:
            return retry(lambda: self._run(attempt), timeout_s=limit, transient=_transient)
        except psycopg.Error as exc:
            raise translate(exc, self.location) from None

    # the schema --------------------------------------------------------------------------------------
    def _version(self, c: Any) -> int | None:
        """The schema version, None when the database has no greentrack schema yet."""
        row = c.execute("SELECT to_regclass('greentrack_schema') IS NOT NULL, "
                        "to_regclass('runs') IS NOT NULL").fetchone()
        if not row[0]:
            if row[1]:
                raise SchemaError(f"{self.location} holds a 'runs' table that greentrack did not create")
            return None
        got = c.execute("SELECT max(version) FROM greentrack_schema").fetchone()
        return int(got[0] or 0)

    def _check_version(self, timeout_s: float) -> None:
        version = self._read(self._version)
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaError(f"database {self.location} has schema v{version}, newer than this greentrack "
                              f"understands (v{SCHEMA_VERSION}); upgrade greentrack")
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            if version is None:
                raise NotFoundError(f"no greentrack database at {self.location} (no greentrack tables yet)")
            return  # an older schema reads fine: columns added since read as null
        self._write(self._migrate, max(timeout_s, WRITE_TIMEOUT_S))

    def _migrate(self, c: _Cursor) -> None:
        c.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")  # concurrent openers of a new database queue here
        version = self._version(c)  # again, under the lock
        if version is None:
            c.execute("CREATE TABLE greentrack_schema (version integer NOT NULL)")
            c.execute("INSERT INTO greentrack_schema (version) VALUES (0)")
            version = 0
        if version > SCHEMA_VERSION:
            raise SchemaError(f"database {self.location} has schema v{version}, newer than this greentrack "
                              f"understands (v{SCHEMA_VERSION}); upgrade greentrack")
        migrations.apply(_Target(c.conn), version)

    # the dialect -------------------------------------------------------------------------------------
    def _glob(self, pattern: str, common: bool) -> tuple[str, Any]:
        return "name ~ ?", glob_regex(pattern)

    @staticmethod
    def _replace(conn: Any, table: str, row: Mapping[str, Any], pk: Sequence[str]) -> None:
        SQLStore._upsert(conn, table, row, pk)

    # the database itself -----------------------------------------------------------------------------
    def health(self, write: bool = False) -> dict[str, Any]:
        """Server, schema version, run count, size and (with *write*) whether the tables can be written."""
        out: dict[str, Any] = {"schema": None, "current_schema": SCHEMA_VERSION, "read_only_storage": False}

        def q(c: _Cursor) -> None:
            out["server"] = "PostgreSQL " + str(c.execute("SHOW server_version").fetchone()[0]).split()[0]
            out["schema"] = self._version(c)
            out["runs"] = int(c.execute("SELECT count(*) FROM runs").fetchone()[0])
            out["size_bytes"] = int(c.execute("SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0) "
                                              "FROM unnest(?::text[]) AS t", [[t.name for t in TABLES]]).fetchone()[0])
            out["integrity"] = "ok"
            if write:
                ok = c.execute("SELECT bool_and(has_table_privilege(t, 'INSERT,UPDATE,DELETE')) "
                               "FROM unnest(?::text[]) AS t", [[t.name for t in TABLES]]).fetchone()[0]
                out["writable"] = bool(ok) and not c.execute("SHOW transaction_read_only").fetchone()[0] == "on"
                if not out["writable"]:
                    out["why_not_writable"] = ("this role may not write the greentrack tables, or the server is "
                                               "read-only")

        self._read(q)
        return out


def glob_regex(pattern: str) -> str:
    """A shell glob (``*``, ``?``, ``[...]``, ``[!...]``) as an anchored POSIX regular expression."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            k = pattern.find("]", j)
            if k < 0:
                out.append("\\[")
            else:
                body = pattern[i + 1:k].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = k
        else:
            out.append("\\" + ch if not ch.isalnum() and ch != "_" else ch)
        i += 1
    return "".join(out) + "$"
