"""Schema changes as named, decorated functions, numbered by the database's schema version.

As in simonw/llm's ``migrations.py``: each ``@migration`` function is one step, applied in the
order they appear here, and never edited once released (a change is a new function at the
end). The n-th function takes a database from schema version n-1 to n; :func:`apply` runs
the missing ones, each with its version bump, in one write transaction, so a crash or a
concurrent opener never sees half a migration. A database whose version is newer than
:data:`SCHEMA_VERSION` is refused with one line (an older greentrack must not write it).

The migrations are shared by every backend: they talk to a :class:`Target`, which each backend
provides (SQLite keeps the version in ``PRAGMA user_version``, PostgreSQL in the one-row table
``greentrack_schema``; each writes its own DDL from :mod:`.schema`). A plain
:class:`sqlite3.Connection` passed to :func:`apply` is wrapped in :class:`SQLiteTarget`.
Nothing slow at a session's first open.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Protocol, Sequence

from .schema import TABLES, Column, Table


class Target(Protocol):
    """What a migration may do to a database (inside the caller's transaction)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run portable SQL with ``?`` placeholders; returns a cursor (``fetchall``)."""

    def create_table(self, table: Table, version: int) -> None:
        """``CREATE TABLE`` with the columns that exist at schema *version*."""

    def create_index(self, table: Table, name: str, columns: Sequence[str]) -> None:
        """``CREATE INDEX name ON table (columns)``."""

    def columns(self, table: str) -> list[str]:
        """The column names *table* has now."""

    def add_column(self, table: Table, column: Column) -> None:
        """``ALTER TABLE ... ADD COLUMN``."""

    def set_version(self, version: int) -> None:
        """Record the schema version."""


class SQLiteTarget:
    """The :class:`Target` of a SQLite connection (version in ``PRAGMA user_version``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, list(params))

    def create_table(self, table: Table, version: int) -> None:
        self.conn.execute(table.create_sql(version=version))

    def create_index(self, table: Table, name: str, columns: Sequence[str]) -> None:
        self.conn.execute(f"CREATE INDEX [{name}] ON [{table.name}] ({', '.join(f'[{c}]' for c in columns)})")

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info([{table}])")]

    def add_column(self, table: Table, column: Column) -> None:
        self.conn.execute(f"ALTER TABLE [{table.name}] ADD COLUMN [{column.name}] {column.sql}")

    def set_version(self, version: int) -> None:
        self.conn.execute(f"PRAGMA user_version={int(version)}")


Migration = Callable[[Target], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register *fn* as the next schema step (its position gives its version number)."""
    MIGRATIONS.append(fn)
    return fn


def add_columns(db: Target, version: int) -> None:
    """Add the columns :mod:`.schema` marks ``since=version`` to tables that lack them."""
    for t in TABLES:
        have = set(db.columns(t.name))
        for c in t.columns:
            if c.since == version and c.name not in have:
                db.add_column(t, c)


@migration
def m001_initial(db: Target) -> None:
    """runs, run_tags, devices, phases, series and their indexes."""
    for t in TABLES:
        db.create_table(t, version=1)
        for name, cols in t.indexes:
            db.create_index(t, name, cols)


@migration
def m002_redact_stored_secrets(db: Target) -> None:
    """Redact secret-looking option values in command lines stored before redaction existed."""
    rows = db.execute("SELECT id, command FROM runs WHERE command IS NOT NULL").fetchall()
    if not rows:  # a new database (every CI run): nothing to redact
        return
    from .redact import redact_command

    for run_id, command in rows:
        if not isinstance(command, str):
            continue
        clean = redact_command(command)
        if clean != command:
            db.execute("UPDATE runs SET command=? WHERE id=?", (clean, run_id))


SCHEMA_VERSION = len(MIGRATIONS)


def pending(version: int) -> list[Migration]:
    """The migrations a database at *version* still needs."""
    return MIGRATIONS[version:]


def apply(db: Target | sqlite3.Connection, version: int) -> int:
    """Run the missing migrations on *db* (inside the caller's transaction); returns the new version."""
    target: Target = SQLiteTarget(db) if isinstance(db, sqlite3.Connection) else db
    for fn in pending(version):
        fn(target)
        version += 1
        target.set_version(version)
    return version
