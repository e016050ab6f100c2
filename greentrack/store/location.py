"""Which backend a database value names, and opening it: the one place that tells SQLite from PostgreSQL.

A plain path (or ``~/...``) is a SQLite file; a ``postgresql://`` / ``postgres://`` URL is a
PostgreSQL database (see :func:`greentrack.settings.db_location`, which refuses other URL schemes
with one line). Everything else receives a :class:`~greentrack.store.base.RunStore` and never
learns which backend it is; messages name :attr:`RunStore.location` (a URL's password masked).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..settings import db_location, is_server, mask_url, resolve_db
from .base import RunStore

Location = Path | str


def describe(location: Location) -> str:
    """What messages call the database at *location* (a file path, or the URL with its password masked)."""
    return mask_url(location) if isinstance(location, str) else str(location)


def open_location(location: Location | os.PathLike[str], *, write: bool = True, verify: bool = False,
                  timeout_s: float | None = None) -> RunStore:
    """Open the database *location* names (a :class:`Path` or path string: SQLite; a URL: its server).

    A URL with its password masked (a store's :attr:`~RunStore.location`) opens the configured
    database it stands for (``GREENTRACK_DB`` or ``[tool.greentrack] db``), credentials included.
    """
    loc = location if isinstance(location, Path) else db_location(os.fspath(location))
    if is_server(loc) and "***" in str(loc):
        loc = _unmask(str(loc))
    if is_server(loc):
        from .postgres import WRITE_TIMEOUT_S, PostgresStore

        return PostgresStore(str(loc), write=write, verify=verify,
                             timeout_s=WRITE_TIMEOUT_S if timeout_s is None else timeout_s)
    from .sqlite import WRITE_TIMEOUT_S as SQLITE_TIMEOUT_S
    from .sqlite import SQLiteStore

    return SQLiteStore(loc, write=write, verify=verify, timeout_s=SQLITE_TIMEOUT_S if timeout_s is None else timeout_s)


def _unmask(masked: str) -> str:
    """A store's :attr:`location` back to the configured URL it masks (so ``db=store.location`` works)."""
    try:
        configured = resolve_db()
    except Exception:
        return masked
    return configured if isinstance(configured, str) and mask_url(configured) == masked else masked


def open_store(db: str | os.PathLike[str] | None = None, create: bool = True, *, write: bool | None = None,
               verify: bool = False) -> RunStore:
    """Open the database the settings name (argument > ``GREENTRACK_DB`` > pyproject > default).

    ``create=False`` (or ``write=False``) opens it for reading only: a missing SQLite file (or a
    server database without greentrack's tables) is an error rather than a new database.
    """
    return open_location(resolve_db(db), write=create if write is None else write, verify=verify)


def exists(location: Location) -> bool:
    """Whether there may be runs at *location* (a file that exists; a server is asked when opened)."""
    return is_server(location) or Path(location).exists()


def spool_opener(configured: Location | None = None) -> Any:
    """A function ``location -> RunStore`` for delivering spooled runs.

    The spool records a server's location with its password masked; when that is the masked form
    of *configured* (the database the settings name), the configured URL (with its credentials)
    is used, else the masked URL itself (credentials then from a service file or PG* variables).
    """
    opened: dict[str, RunStore] = {}
    real = {describe(configured): configured} if configured is not None else {}

    def open_for(loc: str) -> RunStore:
        if loc not in opened:
            opened[loc] = open_location(real.get(loc, loc), write=True)
        return opened[loc]

    open_for.opened = opened  # type: ignore[attr-defined]
    return open_for
