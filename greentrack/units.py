"""Units and how numbers and text are written: the one ``J_PER_KWH``, formatters every layer shares
(no pandas), and the escaping of text that came from users, plugins or files (:func:`one_line`,
:func:`terminal_safe`, :func:`csv_cell`)."""

from __future__ import annotations

import datetime as _dt
import re

J_PER_KWH = 3.6e6  #: joules in a kilowatt-hour


def fmt_energy(j: float | None) -> str:
    if j is None:
        return "-"
    kwh = j / J_PER_KWH
    if kwh >= 1:
        return f"{kwh:.3f} kWh"
    if kwh >= 1e-3:
        return f"{kwh * 1000:.3f} Wh"
    return f"{j:.1f} J"


def fmt_kwh(j: float | None, digits: int = 6) -> str:
    return "-" if j is None else f"{j / J_PER_KWH:.{digits}f}"


def fmt_co2(kg: float | None) -> str:
    if kg is None:
        return "-"
    if kg >= 1:
        return f"{kg:.3f} kgCO2e"
    if kg >= 1e-3:
        return f"{kg * 1000:.2f} gCO2e"
    return f"{kg * 1e6:.1f} mgCO2e"


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_watts(w: float | None) -> str:
    return "-" if w is None else f"{w:.1f}"


# C0 and C1 control characters (ESC starts terminal sequences: clear screen, window titles, OSC 52
# clipboard writes), DEL, and the Unicode bidirectional overrides that reorder what is displayed
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return {9: "\\t", 10: "\\n", 13: "\\r"}.get(c) or (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")


def one_line(text: object) -> str:
    """*text* as one printable line: control characters (newlines, ESC...) shown as ``\\n``, ``\\x1b``.

    Every name, tag, phase, note or error that a terminal view prints goes through this, so text
    stored by anyone can neither move the cursor, retitle the window nor write the clipboard.
    """
    s = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(_escape, s) if _CONTROL.search(s) else s


def terminal_safe(text: str) -> str:
    """Whole terminal output made safe: every control character but the newline escaped."""
    return _CONTROL_BUT_NEWLINE.sub(_escape, text) if _CONTROL_BUT_NEWLINE.search(text) else text


#: A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV Injection")
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_cell(text: str) -> str:
    """A text cell for CSV, neutralised as OWASP recommends against formula injection.

    A cell starting with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return, a line feed, a NUL
    (or their full-width forms) gets a leading single quote, which spreadsheets read as "this
    is text"; other control characters are escaped as in :func:`one_line` (only the newline,
    which CSV quoting carries, is kept). Numbers are never passed here: they are written as numbers.
    """
    s = _CONTROL_BUT_NEWLINE.sub(_escape, text) if _CONTROL_BUT_NEWLINE.search(text) else text
    return "'" + s if text.startswith(CSV_FORMULA_START) else s


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A plain aligned text table; every cell is made one printable line (:func:`one_line`)."""
    right = right or set()
    headers = [one_line(h) for h in headers]
    rows = [[one_line(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)
