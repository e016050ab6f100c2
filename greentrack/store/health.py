"""What ``greentrack doctor`` learns of a database, checked for real, and the guards around it.

- :func:`inspect`: exists, a directory, schema version, integrity (``PRAGMA quick_check``),
  run count, permissions, read-only storage, and whether it can be written: by taking the
  write lock and rolling back (an existing file), or by creating and removing a temporary
  file in the nearest existing folder (a database not created yet). Nothing is written.
- :func:`advice`: what to do about a damaged database.
- :func:`guard_output`: a report or export never overwrites the database or its WAL/SHM.
- :func:`spool_status` and :func:`deliver_spool`: runs waiting in the spool, and delivering them.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GreentrackError

SIDECARS = ("", "-wal", "-shm", "-journal")


def can_write(path: Path) -> tuple[bool, str | None]:
    """Whether *path* (existing or not) can be written, found by trying; ``(ok, why_not)``."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return False, f"{folder} is on a read-only file system"
    except (OSError, AttributeError):
        pass
    if path.exists():
        uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=0.2, isolation_level=None)
        except sqlite3.Error as exc:
            return False, str(exc)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True, None
        except sqlite3.Error as exc:
            msg = str(exc)
            if "locked" in msg or "busy" in msg:
                return True, "locked by another process right now"
            return False, msg
        finally:
            conn.close()
    if not folder.is_dir():
        return False, f"{folder} is not a folder"
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".greentrack-doctor-")
    except OSError as exc:
        return False, f"cannot create files in {folder}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(tmp)
    return True, None


def sqlite_health(store: Any, write: bool = False) -> dict[str, Any]:
    """The health of an open :class:`~greentrack.store.sqlite.SQLiteStore`."""
    from .base import StoreError
    from .migrations import SCHEMA_VERSION

    out: dict[str, Any] = {"schema": None, "current_schema": SCHEMA_VERSION, "read_only_storage": store.immutable}
    st = os.stat(store.path)
    out["size_bytes"] = st.st_size
    out["mode"] = oct(stat.S_IMODE(st.st_mode))
    out["others_can_read"] = bool(st.st_mode & (stat.S_IROTH | stat.S_IRGRP))
    try:
        out["schema"] = store._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        res = store._read(lambda c: c.execute("PRAGMA quick_check(5)").fetchall())
        found = [" ".join(str(r[0]).replace("*** in database main ***", "").split()) for r in res]
        out["integrity"] = "ok" if found == ["ok"] else "; ".join(x for x in found if x)
    except StoreError as exc:
        out["integrity"] = str(exc)
    try:
        out["runs"] = store._read(lambda c: c.execute("SELECT count(*) FROM runs").fetchone()[0])
    except StoreError as exc:
        out["error"] = str(exc)
    if write:
        out["writable"], out["why_not_writable"] = can_write(store.path)
    return out


def inspect(path: Path) -> dict[str, Any]:
    """Everything doctor says of the database at *path*; never writes."""
    from .sqlite import SQLiteStore

    out: dict[str, Any] = {"path": str(path), "exists": path.exists()}
    if path.is_dir():
        out.update(writable=False, is_directory=True,
                   error=f"{path} is a directory, not a database file: name a file such as {path / 'greentrack.db'}")
        return out
    out["writable"], why = can_write(path)
    if why:
        out["why_not_writable"] = why
    if not path.exists():
        return out
    try:
        store = SQLiteStore(path, write=False)
    except GreentrackError as exc:
        out["error"] = str(exc)
        out["damaged"] = "damaged" in str(exc) or "not a greentrack database" in str(exc)
        return out
    try:
        h = store.health()
    finally:
        store.close()
    out.update({k: v for k, v in h.items() if k != "runs"})
    if "runs" in h:
        out["runs"] = h["runs"]
    if h.get("integrity") not in (None, "ok"):
        out["damaged"] = True
    return out


def inspect_server(url: str) -> dict[str, Any]:
    """Everything doctor says of a server database (its URL shown with the password masked); never writes."""
    from ..errors import NotFoundError
    from .location import describe, open_location

    out: dict[str, Any] = {"path": describe(url), "server": True, "exists": False, "writable": False}
    try:
        store = open_location(url, write=False)
    except NotFoundError:
        out.update(exists=False, writable=True, why_not_writable=None)
        out["note"] = "no greentrack tables yet: the first run creates them"
        return out
    except GreentrackError as exc:
        out["error"] = str(exc)
        return out
    try:
        h = store.health(write=True)
    except GreentrackError as exc:
        out["error"] = str(exc)
        return out
    finally:
        store.close()
    out.update(h)
    out["exists"] = True
    return out


def advice(path: str) -> list[str]:
    """What to do about a damaged database at *path* (doctor prints it)."""
    new = f"{path}.salvaged"
    return [
        f"copy every row that can still be read into a new database: greentrack doctor --db {path} --salvage {new}",
        f"look at it: greentrack report --db {new}; then swap: mv {path} {path}.damaged && mv {new} {path}",
        f"or move it aside (mv {path} {path}.damaged): the next run starts a new database",
        "runs that could not be written meanwhile wait in the spool; 'greentrack doctor --deliver' delivers them",
    ]


def salvage(src: Path, dst: Path, batch: int = 512) -> dict[str, tuple[int, list[tuple[int, int]]]]:
    """Copy every row of *src* that still reads into a new database *dst*.

    Returns ``{table: (rows copied, [unreadable rowid ranges])}``.

    Each table is read by rowid ranges; a range that fails is halved until the unreadable rows
    are isolated and skipped, so a damaged page costs only the rows on it. *dst* gets the
    current schema; rows are copied as they are (reading cleans bad values as usual).
    """
    from .schema import TABLES
    from .sqlite import SQLiteStore

    if dst.exists():
        raise ConfigError(f"{dst} exists already: give a new file for the salvaged database")
    if not src.is_file():
        raise ConfigError(f"no database file at {src}")
    con = sqlite3.connect("file:" + urllib.parse.quote(str(src.resolve())) + "?mode=ro", uri=True)
    out = SQLiteStore(dst, write=True)
    report: dict[str, tuple[int, list[tuple[int, int]]]] = {}
    try:
        for table in TABLES:
            try:
                have = [r[1] for r in con.execute(f"PRAGMA table_info([{table.name}])")]
            except sqlite3.Error:
                have = []
            cols = [c for c in table.names if c in have]
            if not cols:
                report[table.name] = (0, [])
                continue
            room = max(1000, src.stat().st_size // 4)  # rowids count inserts: never far beyond what the file holds
            try:
                top = int(con.execute(f"SELECT max(rowid) FROM [{table.name}]").fetchone()[0] or 0)
            except (sqlite3.Error, TypeError, ValueError):
                top = room
            top = min(top, room)  # a damaged page can claim any rowid
            select = f"SELECT {', '.join(cols)} FROM [{table.name}] WHERE rowid BETWEEN ? AND ?"
            insert = f"INSERT OR IGNORE INTO [{table.name}] ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            copied = 0
            lost: list[tuple[int, int]] = []
            todo = [(lo, min(lo + batch - 1, top)) for lo in range(1, top + 1, batch)][::-1]
            while todo:
                lo, hi = todo.pop()
                try:
                    rows = con.execute(select, (lo, hi)).fetchall()
                except sqlite3.Error:
                    if lo == hi:
                        if lost and lost[-1][1] == lo - 1:
                            lost[-1] = (lost[-1][0], lo)
                        else:
                            lost.append((lo, lo))
                    else:
                        mid = (lo + hi) // 2
                        todo += [(mid + 1, hi), (lo, mid)]
                    continue
                def put(c: sqlite3.Connection, rows: list[Any] = rows, sql: str = insert) -> None:
                    c.executemany(sql, rows)

                out._write(put)
                copied += len(rows)
            report[table.name] = (copied, lost)
    finally:
        con.close()
        out.close()
    return report


def guard_output(target: str | os.PathLike[str], db: str | os.PathLike[str], sqlite_export: bool = False) -> None:
    """Refuse to write a report or export over the database *db*, its -wal/-shm/-journal files,
    or any other SQLite file (a link to the database included). With *sqlite_export*, an
    earlier ``export --format sqlite`` file (it has a ``_greentrack_export`` table) may be updated."""
    t = Path(target).expanduser()
    dbp = Path(db).expanduser()
    try:
        t_res = t.resolve()
        for suffix in SIDECARS:
            side = Path(str(dbp) + suffix)
            if t_res == side.resolve() or (t.exists() and side.exists() and os.path.samefile(t, side)):
                what = "the database" if not suffix else f"the database's {suffix[1:]} file"
                raise ConfigError(f"refusing to write to {t}: it is {what} ({dbp}); choose another output file")
        if t.is_file():
            with open(t, "rb") as fh:
                if fh.read(16) == b"SQLite format 3\x00" and not (sqlite_export and _is_export(t)):
                    raise ConfigError(f"refusing to write to {t}: it is an SQLite database; choose another output file")
    except OSError:
        return  # an unreadable target: the write itself will say why


def _is_export(path: Path) -> bool:
    """Whether *path* is a database ``export --format sqlite`` wrote (never greentrack's own)."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = con.execute("PRAGMA user_version").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return "_greentrack_export" in names and version == 0


def spool_status() -> dict[str, Any]:
    """The spool folder and the runs waiting in it, grouped by database."""
    from . import spool

    folder = spool.spool_dir()
    waiting: dict[str, list[str]] = {}
    unreadable = []
    for e in spool.entries(folder):
        loc = e.location
        if loc is None:
            unreadable.append(f"{e.path.name}: {e.error}")
        else:
            waiting.setdefault(loc, []).append(e.run_id)
    return {"folder": str(folder), "waiting": waiting, "unreadable": unreadable}


def deliver_spool() -> list[tuple[str, str, str | None]]:
    """Deliver every spooled run to its own database: ``[(run_id, location, error or None)]``."""
    from ..settings import resolve_db
    from . import spool
    from .location import spool_opener
    from .sqlite import WRITE_TIMEOUT_S

    try:
        configured: Any = resolve_db()
    except GreentrackError:
        configured = None
    open_for = spool_opener(configured)
    results = []
    for e in spool.entries():
        loc, err = spool.deliver(e, open_for, timeout_s=WRITE_TIMEOUT_S)
        results.append((e.run_id, loc, err))
    for st in open_for.opened.values():
        st.close()
    return results
