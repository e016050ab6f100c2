"""Where the lines go and how they are appended.

The path comes from ``GREENTRACK_JSONL``, else ``[tool.greentrack.jsonl] path`` of the nearest
pyproject.toml (relative to that file's folder); with neither, nothing is written.

Each line is encoded first, then appended with one ``os.write`` on a descriptor opened with
``O_APPEND`` for that line (so a rotated file is picked up at the next line). On a local Linux
filesystem the kernel places each such write at the end of the file, so several processes
(the ranks of a job) can share one file. POSIX only promises non-interleaving for pipes and
writes up to ``PIPE_BUF``; a ``samples`` line of many devices is larger, and network filesystems
(NFS) do not honour ``O_APPEND`` atomically: give each process its own file there.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
ENV_PATH = "GREENTRACK_JSONL"

_lock = threading.Lock()
_writers: dict[str, JsonlWriter | None] = {}
_reported: set[str] = set()


def _say_once(key: str, msg: str) -> None:
    if key in _reported:
        return
    _reported.add(key)
    print(f"greentrack: jsonl: {msg}", file=sys.stderr)


def configured_path() -> Path | None:
    """The file to append to: ``GREENTRACK_JSONL`` > ``[tool.greentrack.jsonl] path`` > None."""
    env = os.environ.get(ENV_PATH, "").strip()
    if env:
        return Path(env).expanduser()
    from greentrack.errors import GreentrackError
    from greentrack.settings import load_tool_config

    try:
        conf = load_tool_config()
    except GreentrackError as exc:
        _say_once("config", f"{exc}; no export")
        return None
    table = conf.get("jsonl")
    if not isinstance(table, dict) or not table.get("path"):
        return None
    p = Path(str(table["path"])).expanduser()
    return p if p.is_absolute() else Path(conf["_root"]) / p


def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, tuples lists, unknown objects strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    try:
        f = float(obj)  # numpy scalars
    except (TypeError, ValueError):
        return str(obj)
    return f if math.isfinite(f) else None


def encode(record: dict[str, Any]) -> bytes:
    """One record as one line of UTF-8 JSON ending in a newline."""
    return (json.dumps(clean(record), separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


class JsonlWriter:
    """Appends the lines of one run to *path*; after the first failure it stays silent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.flushes = 0
        self.broken = False
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> bool:
        if self.broken:
            return False
        data = encode(record)
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except FileNotFoundError:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                except OSError as exc:
                    return self._fail(exc)
            except OSError as exc:
                return self._fail(exc)
            try:
                view = memoryview(data)
                while view:  # a regular file takes it in one go; finish a short write all the same
                    n = os.write(fd, view)
                    view = view[n:]
            except OSError as exc:
                return self._fail(exc)
            finally:
                os.close(fd)
        return True

    def _fail(self, exc: OSError) -> bool:
        self.broken = True
        why = exc.strerror or type(exc).__name__
        _say_once(str(self.path), f"cannot write {self.path}: {why} (no export for this run; the run goes on)")
        return False


def writer_for(run_id: str, end: bool = False) -> JsonlWriter | None:
    """The writer of run *run_id*, made at its first event (the path is read then) and forgotten
    at its end (*end*); None when no path is configured."""
    with _lock:
        if run_id not in _writers:
            path = configured_path()
            _writers[run_id] = JsonlWriter(path) if path is not None else None
        return _writers.pop(run_id) if end else _writers[run_id]
