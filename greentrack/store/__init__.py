"""The store: every run, its devices, phases and power series. The only place with SQL.

- :mod:`.schema`: the one definition of the tables and columns (and their value rules);
- :mod:`.migrations`: schema changes as named functions, numbered by ``PRAGMA user_version``;
- :mod:`.records`: typed rows (run, device, phase, series chunk) used by writers and readers;
- :mod:`.base`: the :class:`RunStore` interface every backend implements, and its errors;
- :mod:`.sqlstore` (+ :mod:`.queries`): the reads and writes both backends share, in portable SQL;
- :mod:`.sqlite`: the SQLite backend, plain ``sqlite3``, WAL mode (the default);
- :mod:`.postgres`: the PostgreSQL backend, psycopg 3 (a ``postgresql://`` URL);
- :mod:`.location`: which backend a database value names, and opening it;
- :mod:`.writer` and :mod:`.spool`: a session's bounded writes, and the runs that wait to be delivered;
- :mod:`.transfer`: export and import files (validated field by field, one transaction per file);
- :mod:`.codec`, :mod:`.series`: the compressed power series; :mod:`.redact`: secrets out of command lines.

Callers get a :class:`RunStore` from :func:`open_store` and never learn which backend it is.
"""

from __future__ import annotations

from .base import (
    RunStore,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreGone,
    StoreUnavailable,
    StoreUnwritable,
)
from .location import open_location, open_store
from .sqlite import SQLiteStore, Store, hostname

__all__ = ["RunStore", "Store", "SQLiteStore", "open_store", "open_location", "hostname", "StoreError", "StoreBusy",
           "StoreFull", "StoreGone", "StoreUnwritable", "StoreCorrupt", "StoreUnavailable"]
