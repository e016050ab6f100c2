"""Units and how numbers are written: the one ``J_PER_KWH``, and formatters every layer shares (no pandas)."""

from __future__ import annotations

import datetime as _dt

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
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_watts(w: float | None) -> str:
    return "-" if w is None else f"{w:.1f}"


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A plain aligned text table."""
    right = right or set()
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)
