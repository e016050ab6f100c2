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


MODELLED_MARK = "~"  #: before a figure that is modelled (the CPU model), not measured


def modelled(method: str | None) -> bool:
    """True when a figure of this energy method (``model``, ``mixed``) is modelled, wholly or partly."""
    return method in ("model", "mixed")


def mark(text: str, method: str | None) -> str:
    """*text* with ``~`` before it when *method* says the figure is modelled (``-`` stays ``-``)."""
    return MODELLED_MARK + text if modelled(method) and text != "-" else text


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
    """Local time with its zone: ``2026-12-05 13:48:45 CET`` (``UTC+05:30`` where the zone has no name).

    Tables show local time and say which; JSON and CSV carry ISO 8601 UTC instead.
    """
    if ts is None:
        return "-"
    local = _dt.datetime.fromtimestamp(ts).astimezone()
    return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {zone_name(local)}"


def zone_name(local: _dt.datetime) -> str:
    """The zone of an aware datetime as people read it: its abbreviation, else ``UTC+HH:MM``."""
    name = local.tzname() or ""
    if name and name[0] not in "+-" and not name.startswith("UTC+") and not name.startswith("UTC-"):
        return name
    off = local.utcoffset() or _dt.timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def plural(n: float, word: str, many: str | None = None) -> str:
    """``plural(1, "step")`` -> ``1 step``; ``plural(3, "run")`` -> ``3 runs``; counts with thousands separators."""
    shown = f"{n:,}" if isinstance(n, int) else f"{n:,.4g}"
    return f"{shown} {word if n == 1 else (many or word + 's')}"


def article(word: str) -> str:
    """``a`` or ``an`` for *word* as it is said: an on-prem, an H100, a cloud, a US region."""
    w = word.strip().lower()
    if not w:
        return "a"
    if w[0].isdigit():
        return "an" if w[0] == "8" or w.startswith(("11", "18")) else "a"
    letter_said_with_vowel = "fhlmnrsx"  # an F..., an H100, an L4, an M..., an S3, an X
    if len(w) > 1 and (w[1].isdigit() or w[1] in "-_" or w.isupper() or word.strip()[:2].isupper()):
        return "an" if w[0] in "aeio" + letter_said_with_vowel else "a"
    return "an" if w[0] in "aeio" or (w[0] == "u" and not w.startswith(("uni", "use", "usu", "uti"))) else "a"


def fmt_money(v: float | None, currency: str = "USD") -> str:
    """``0.0000484 USD``, ``12.35 EUR``: three significant digits for small sums, never an exponent."""
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1 or a == 0:
        text = f"{v:,.2f}"
    else:
        import math

        digits = min(12, 2 - math.floor(math.log10(a)))
        text = f"{v:.{digits}f}"
    return f"{text} {currency}"


def fmt_watts(w: float | None) -> str:
    return "-" if w is None else f"{w:.1f}"


# C0 and C1 control characters (ESC starts terminal sequences: clear screen, window titles, OSC 52
# clipboard writes), DEL, and the Unicode bidirectional overrides that reorder what is displayed
# (patterns, compiled by re on first use: every one of these characters is one str.isprintable() rejects,
# so printable text, nearly all of it, never needs them)
_CONTROL = "[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
_CONTROL_BUT_NEWLINE = "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return {9: "\\t", 10: "\\n", 13: "\\r"}.get(c) or (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")


def one_line(text: object) -> str:
    """*text* as one printable line: control characters (newlines, ESC...) shown as ``\\n``, ``\\x1b``.

    Every name, tag, phase, note or error that a terminal view prints goes through this, so text
    stored by anyone can neither move the cursor, retitle the window nor write the clipboard.
    """
    s = text if isinstance(text, str) else str(text)
    return s if s.isprintable() else re.sub(_CONTROL, _escape, s)


def terminal_safe(text: str) -> str:
    """Whole terminal output made safe: every control character but the newline escaped."""
    return text if text.isprintable() else re.sub(_CONTROL_BUT_NEWLINE, _escape, text)


#: A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV Injection")
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_cell(text: str) -> str:
    """A text cell for CSV, neutralised as OWASP recommends against formula injection.

    A cell starting with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return, a line feed, a NUL
    (or their full-width forms) gets a leading single quote, which spreadsheets read as "this
    is text"; other control characters are escaped as in :func:`one_line` (only the newline,
    which CSV quoting carries, is kept). Numbers are never passed here: they are written as numbers.
    """
    s = text if text.isprintable() else re.sub(_CONTROL_BUT_NEWLINE, _escape, text)
    return "'" + s if text.startswith(CSV_FORMULA_START) else s


NAME_WIDTH = 40  #: run and phase names in tables are cut to this many columns (the stored name is kept)
CELL_WIDTH = 80  #: any table cell is cut to this many columns


def printable(text: object) -> str:
    """:func:`one_line` of *text*, with None shown as an empty string."""
    return "" if text is None else one_line(text)


def width(text: str) -> int:
    """Terminal columns of *text*: East Asian wide and full-width characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def shorten(text: object, limit: int | None = NAME_WIDTH) -> str:
    """:func:`printable` *text*, cut to *limit* columns with an ellipsis when longer (None: no limit)."""
    s = printable(text)
    if limit is None or width(s) <= limit:
        return s
    out, used = [], 0
    for c in s:
        w = width(c)
        if used + w > limit - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None,
          max_width: int | None = CELL_WIDTH) -> str:
    """A plain aligned text table; cells are made :func:`printable` and cut to *max_width* columns."""
    right = right or set()
    rows = [[shorten(c, max_width) for c in r] for r in rows]
    widths = [width(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], width(c))

    def pad(c: str, i: int) -> str:
        fill = " " * (widths[i] - width(c))
        return fill + c if i in right else c + fill

    def line(cells: list[str]) -> str:
        return "  ".join(pad(c, i) for i, c in enumerate(cells)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)
