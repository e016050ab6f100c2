"""Compact charts for the terminal: one-line sparklines of power over time."""

from __future__ import annotations

import math
import sys
from typing import Iterable

BLOCKS = "▁▂▃▄▅▆▇█"
ASCII = "_.-~=+*#"


def can_unicode(stream: object = None) -> bool:
    """Whether *stream* (default stdout) can print the block characters."""
    enc = getattr(stream if stream is not None else sys.stdout, "encoding", None) or ""
    return enc.lower().replace("-", "") in ("utf8", "utf16", "utf32")


def sparkline(values: Iterable[float | None], lo: float | None = None, hi: float | None = None,
              unicode: bool = True) -> str:
    """One character per value, scaled between *lo* and *hi* (default: the values' min and max).

    Missing values (None, NaN) are blanks, so gaps in a series stay visible.
    """
    vals = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else float(v) for v in values]
    present = [v for v in vals if v is not None]
    if not present:
        return " " * len(vals)
    lo = min(present) if lo is None else lo
    hi = max(present) if hi is None else hi
    chars = BLOCKS if unicode else ASCII
    top = len(chars) - 1
    span = hi - lo
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(chars[top // 2] if hi > 0 else chars[0])
        else:
            out.append(chars[max(0, min(top, int(round((v - lo) / span * top))))])
    return "".join(out)
