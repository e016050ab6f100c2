"""Schema changes as named, decorated functions, numbered by SQLite's ``PRAGMA user_version``.

As in simonw/llm's ``migrations.py``: each ``@migration`` function is one step, applied in the
order they appear here, and never edited once released (a change is a new function at the
end). The n-th function takes a database from schema version n-1 to n; :func:`migrate` runs
the missing ones, each with its ``user_version`` bump, in one write transaction, so a crash
or a concurrent opener never sees half a migration. A database whose version is newer than
:data:`SCHEMA_VERSION` is refused with one line (an older greentrack must not write it).

Migrations take a plain :class:`sqlite3.Connection`: no sqlite-utils, nothing slow at a
session's first open.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from .schema import TABLES

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register *fn* as the next schema step (its position gives its version number)."""
    MIGRATIONS.append(fn)
    return fn


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info([{table}])")]


def add_columns(conn: sqlite3.Connection, version: int) -> None:
    """Add the columns :mod:`.schema` marks ``since=version`` to tables that lack them."""
    for t in TABLES:
        have = set(_columns(conn, t.name))
        for c in t.columns:
            if c.since == version and c.name not in have:
                conn.execute(f"ALTER TABLE [{t.name}] ADD COLUMN [{c.name}] {c.sql}")


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    """runs, run_tags, devices, phases, series and their indexes."""
    for t in TABLES:
        conn.execute(t.create_sql(version=1))
        for name, cols in t.indexes:
            conn.execute(f"CREATE INDEX [{name}] ON [{t.name}] ({', '.join(f'[{c}]' for c in cols)})")


@migration
def m002_redact_stored_secrets(conn: sqlite3.Connection) -> None:
    """Redact secret-looking option values in command lines stored before redaction existed."""
    from .redact import redact_command

    rows = conn.execute("SELECT id, command FROM runs WHERE command IS NOT NULL").fetchall()
    for run_id, command in rows:
        if not isinstance(command, str):
            continue
        clean = redact_command(command)
        if clean != command:
            conn.execute("UPDATE runs SET command=? WHERE id=?", (clean, run_id))


SCHEMA_VERSION = len(MIGRATIONS)


def pending(version: int) -> list[Migration]:
    """The migrations a database at *version* still needs."""
    return MIGRATIONS[version:]


def apply(conn: sqlite3.Connection, version: int) -> int:
    """Run the missing migrations on *conn* (inside the caller's transaction); returns the new version."""
    for fn in pending(version):
        fn(conn)
        version += 1
        conn.execute(f"PRAGMA user_version={int(version)}")
    return version
