"""Options and parsers shared by the CLI commands."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from typing import Any, Callable

import click

from ..errors import GreentrackError


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--db", type=click.Path(dir_okay=False), default=None,
                        help="Database: a SQLite file or a postgresql:// URL (default: GREENTRACK_DB, "
                             "[tool.greentrack] db, or the user data dir).")(fn)


def parse_tags(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("k=v", ...)`` -> dict; a malformed one is a one-line error."""
    out: dict[str, str] = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k.strip():
            raise GreentrackError(f"bad tag {v!r}: use key=value")
        out[k.strip()] = val.strip()
    return out


_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None) -> float | None:
    """``7d``, ``12h``, ``30m``, ``today``, ``yesterday`` or an ISO date/time -> unix time."""
    if value is None:
        return None
    v = value.strip().lower()
    m = _REL.match(v)
    if m:
        return time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    today = dt.datetime.combine(dt.date.today(), dt.time())
    if v == "today":
        return today.timestamp()
    if v == "yesterday":
        return (today - dt.timedelta(days=1)).timestamp()
    try:
        return dt.datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise GreentrackError(f"bad date {value!r}: use an ISO date (2026-11-30), 'today', or an age like 7d, "
                              "12h") from None


def write_output(text: str, path: str | os.PathLike[str], db: str | os.PathLike[str] | None = None) -> None:
    """Write a report file; a path that cannot be written is a one-line error.

    The database (*db*, else the one the settings name), its -wal/-shm files and any other
    SQLite file are refused: a report never overwrites runs.
    """
    from pathlib import Path

    from ..settings import resolve_db
    from ..store.health import guard_output

    p = Path(path).expanduser()
    location = resolve_db(db)
    if isinstance(location, Path):  # a server database has no file to overwrite
        guard_output(p, location)
    try:
        if p.is_dir():
            raise GreentrackError(f"cannot write {p}: it is a directory")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise GreentrackError(f"cannot write {p}: {exc.strerror or exc}") from None


#: file extension -> report format
EXTENSION_FORMATS = {".html": "html", ".htm": "html", ".csv": "csv", ".json": "json", ".md": "markdown",
                     ".markdown": "markdown", ".txt": "table"}


def format_for_output(fmt: str | None, output: str | os.PathLike[str] | None, default: str = "table") -> str:
    """The format to write: *fmt* if given, else the one *output*'s extension names, else *default*.

    A *fmt* that contradicts the extension (``--format csv -o runs.html``) is a one-line error.
    """
    from pathlib import Path

    implied = EXTENSION_FORMATS.get(Path(output).suffix.lower()) if output else None
    if fmt is None:
        return implied or default
    fmt = fmt.strip().lower()
    if implied is not None and implied != fmt and implied != "table":  # a .txt may hold any text
        from ..units import article

        kind = {"html": "HTML", "csv": "CSV", "json": "JSON", "markdown": "Markdown"}.get(implied, implied)
        raise GreentrackError(f"--format {fmt} contradicts --output {output} ({article(kind)} {kind} file): drop "
                              f"--format, or name the file {Path(str(output)).with_suffix(_suffix(fmt)).name}")
    return fmt


def _suffix(fmt: str) -> str:
    return {"table": ".txt", "markdown": ".md"}.get(fmt, f".{fmt}")
