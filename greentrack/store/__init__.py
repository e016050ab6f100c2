"""The store: every run, its devices, phases and power series. The only place with SQL.

SQLite by default (:mod:`.sqlite`); schema and migrations, writes, queries and the series
codec live here and nowhere else. Callers get :class:`Store` from :func:`open_store`.
"""

from .sqlite import Store, hostname, open_store

__all__ = ["Store", "open_store", "hostname"]
