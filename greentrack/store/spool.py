"""The spool: runs that could not be written wait here as files until their database takes them.

When a session cannot finish its run in the database within its time limit (locked by another
process, disk full, file deleted or damaged), the whole run (row, devices, phases and the
series chunks not yet written) is written to one JSON file in the spool folder. The next
session that writes to the same database delivers it, and so does
``greentrack doctor --deliver``; delivery merges (a run partly in the database is completed,
nothing is written twice) and removes the file.

The folder is ``GREENTRACK_SPOOL``, else ``$XDG_STATE_HOME/greentrack/spool``, else
``~/.local/state/greentrack/spool``: per user, created ``0700``, files ``0600``, each written
to a temporary name and renamed, so a crash never leaves half a file. A delivery first renames
the file to ``*.delivering-<pid>``, so two processes never deliver one file at once; a claim
whose process died is taken back by the next delivery.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import GreentrackError
from ..settings import spool_dir
from .records import StoredRun, chunk_from, device_from, phase_from, run_from

SPOOL_SCHEMA = "greentrack.spool"
SPOOL_VERSION = 1
SUFFIX = ".json"
CLAIM = ".delivering-"




def _encode(sr: StoredRun, location: str, reason: str) -> dict[str, Any]:
    import base64

    chunks = []
    for c in sr.chunks:
        d = c.as_dict()
        d["data"] = base64.b64encode(c.data).decode("ascii")
        chunks.append(d)
    return {"schema": SPOOL_SCHEMA, "version": SPOOL_VERSION, "db": location, "reason": reason,
            "spooled_at": time.time(), "pid": os.getpid(), "run": sr.run.as_dict(),
            "devices": [d.as_dict() for d in sr.devices], "phases": [p.as_dict() for p in sr.phases],
            "chunks": chunks}


def _decode(doc: Any) -> tuple[str, StoredRun]:
    if not isinstance(doc, dict) or doc.get("schema") != SPOOL_SCHEMA:
        raise ValueError("not a greentrack spool file")
    if int(doc.get("version", 0)) > SPOOL_VERSION:
        raise ValueError(f"spool version {doc.get('version')} is newer than this greentrack reads")
    import base64

    chunks = []
    for c in doc.get("chunks") or []:
        c = dict(c)
        c["data"] = base64.b64decode(c["data"])
        chunks.append(chunk_from(c))
    sr = StoredRun(run=run_from(doc["run"]), devices=[device_from(d) for d in doc.get("devices") or []],
                   phases=[phase_from(p) for p in doc.get("phases") or []], chunks=chunks)
    return str(doc["db"]), sr


def write(sr: StoredRun, location: str, reason: str, folder: Path | None = None) -> Path:
    """Spool *sr* for the database at *location*; returns the file. Raises OSError when it cannot."""
    folder = folder or spool_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{sr.run.id}{SUFFIX}"
    tmp = folder / f".{sr.run.id}.{os.getpid()}.tmp"
    data = json.dumps(_encode(sr, location, reason), default=str).encode("utf-8")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def discard(path: Path) -> bool:
    """Remove a spooled run's file that its own session has now delivered (False: it was gone or claimed)."""
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


class Entry:
    """One spooled run on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = path.name[: -len(SUFFIX)]
        self._doc: dict[str, Any] | None = None
        self.error: str | None = None

    pid: int | None = None  # the process that spooled it (set by load)

    def load(self) -> tuple[str, StoredRun] | None:
        """``(location, run)``; None (with :attr:`error` set) for a file that does not read."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            got = _decode(doc)
            pid = doc.get("pid")
            self.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
            return got
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return None

    @property
    def location(self) -> str | None:
        got = self.load()
        return None if got is None else got[0]


def entries(folder: Path | None = None) -> list[Entry]:
    """The spooled runs (stale claims of dead processes are taken back first)."""
    folder = folder or spool_dir()
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for n in names:
        if CLAIM in n:
            pid = n.rsplit(CLAIM, 1)[1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                try:
                    os.replace(folder / n, folder / n.split(CLAIM, 1)[0])
                except OSError:
                    pass
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [Entry(folder / n) for n in sorted(names) if n.endswith(SUFFIX) and not n.startswith(".")]


def deliver(entry: Entry, open_store: Callable[[str], Any], timeout_s: float | None = None,
            only: str | None = None) -> tuple[str, str | None]:
    """Deliver one entry to its database; ``(location, error)``, error None when delivered.

    *only*: deliver only if the entry is for this location (a session delivers to its own database).
    """
    got = entry.load()
    if got is None:
        return "?", entry.error
    location, sr = got
    if only is not None and location != only:
        return location, "for another database"
    if sr.run.status == "running" and entry.pid not in (None, os.getpid()) and _pid_alive(entry.pid):
        return location, "its session is still running (it delivers the run itself)"
    claim = entry.path.with_name(entry.path.name + f"{CLAIM}{os.getpid()}")
    try:
        os.replace(entry.path, claim)
    except OSError:
        return location, "taken by another process"
    try:
        store = open_store(location)
        store.deliver(sr, timeout_s=timeout_s)
    except (GreentrackError, OSError) as exc:
        try:
            os.replace(claim, entry.path)
        except OSError:
            pass
        return location, str(exc)
    try:
        os.unlink(claim)
    except OSError:
        pass
    return location, None
