"""The HTML report's charts, drawn with matplotlib (imported here, lazily) and embedded as inline SVG.

- Power over time: one line per device. Devices that draw the same power (two GPUs of one
  data-parallel job) would hide one behind the other, so each device gets its own colour, dash
  pattern and width, the first drawn widest and underneath. Phases are shaded and named at
  the top of the plot; the legend sits outside the plot, to its right, so it never covers a
  phase name or a line.
- Energy per phase: horizontal bars.

Names (runs, phases, devices) may be in any script. Text is embedded as text in the SVG
(``svg.fonttype: none``), so the browser draws it with its own fonts; for matplotlib's layout a
font that has the glyphs is looked up among the installed ones, and when none has them the
layout proceeds without matplotlib's "Glyph missing" warning.
"""

from __future__ import annotations

import functools
import io
import warnings
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from ..units import J_PER_KWH, shorten

PLOT_POINTS = 600  # bins per device line: enough for a 1200-pixel-wide chart
LINE_STYLES = [("-", 2.4), ((0, (5, 2)), 1.6), ((0, (1, 1.5)), 1.8), ((0, (6, 2, 1, 2)), 1.4)]
BASE_FONT = "DejaVu Sans"  # matplotlib's own font, always there


def matplotlib_figure() -> Any:
    """matplotlib's ``Figure`` on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except Exception:
        return None
    return Figure


@functools.lru_cache(maxsize=256)
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except Exception:
        return frozenset()


@functools.lru_cache(maxsize=64)
def font_families(chars: frozenset[str]) -> tuple[str, ...]:
    """``("DejaVu Sans", fallbacks...)``: installed fonts that hold the glyphs *chars* need, in order."""
    from matplotlib import font_manager

    base = font_manager.findfont(BASE_FONT, fallback_to_default=True)
    missing = {ord(c) for c in chars} - _charmap(base)
    families = [BASE_FONT]
    if not missing:
        return tuple(families)
    for entry in sorted(font_manager.fontManager.ttflist, key=lambda f: (f.name, f.fname)):
        if entry.name in families:
            continue
        covered = missing & _charmap(entry.fname)
        if covered:
            families.append(entry.name)
            missing -= covered
            if not missing:
                break
    return tuple(families)


#: chart text is plain text: no mathtext (a '$' in a name), no TeX
PLAIN_TEXT: Any = {"text.parse_math": False, "text.usetex": False}


@contextmanager
def text_fonts(texts: Iterable[str]) -> Iterator[None]:
    """Draw *texts* with fonts that have their glyphs; without any, quietly (the SVG keeps the text)."""
    import matplotlib

    chars = frozenset(c for t in texts for c in str(t) if not c.isspace() and ord(c) > 0x7E)
    families = list(font_families(chars)) if chars else [BASE_FONT]
    # plain text: no mathtext (a '$' in a run or phase name is a dollar) and no TeX
    with matplotlib.rc_context({"font.family": families, **PLAIN_TEXT}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"findfont: Font family", category=UserWarning)
        yield


def svg(fig: Any) -> str:
    """*fig* as inline SVG text (no XML prolog, no date: the same run gives the same bytes)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "greentrack", **PLAIN_TEXT}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.find("<svg"):]  # drop the XML prolog and doctype: inline SVG in HTML


def power_figure(Figure: Any, run: dict[str, Any], series: dict[str, tuple[Any, Any]]) -> Any:
    """The power-over-time figure (see the module docstring); call inside :func:`text_fonts`."""
    from .binning import bin_mean

    t0 = run["started_at"]
    t1 = run.get("ended_at") or max((float(t[-1]) for t, _ in series.values() if len(t)), default=t0 + 1)
    span = max(t1 - t0, 1e-9)
    unit, div = ("h", 3600.0) if span >= 7200 else ("min", 60.0) if span >= 180 else ("s", 1.0)
    fig = Figure(figsize=(10, 3.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for i, p in enumerate(run.get("phases") or []):
        ax.axvspan((p["started_at"] - t0) / div, (p["ended_at"] - t0) / div, color=f"C{i % 10}", alpha=0.08, lw=0)
        ax.text((p["started_at"] - t0) / div, 0.98, " " + shorten(p["name"], 24), transform=ax.get_xaxis_transform(),
                va="top", ha="left", fontsize=8, color="#5b6b61", gid="phase-label")
    top = 0.0
    drawn = [(k, v) for k, v in sorted(series.items()) if len(v[0])]
    for i, (key, (t, p)) in enumerate(drawn):
        n = min(PLOT_POINTS, max(2, len(t)))
        c, mean, lo, hi = bin_mean(t, p, t0, t1, n)
        x = (c - t0) / div
        style, width = LINE_STYLES[i % len(LINE_STYLES)]
        # each sample is the mean over the interval ending at it: draw it as a step over that interval
        line = ax.plot(x, mean, lw=width, ls=style, color=f"C{i % 10}", label=shorten(key, 24), zorder=2 + i,
                       drawstyle="steps-mid" if len(t) > n else "steps-pre")[0]
        if len(t) > n:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12, lw=0, zorder=1)
        top = max(top, float(p.max()))
    ax.set_xlim(0, span / div)
    ax.set_ylim(0, top * 1.22 if top > 0 else 1.0)  # headroom under the phase names
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_ylabel("power (W)")
    ax.grid(True, alpha=0.3)
    if len(drawn) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, frameon=False,
                  title="device", title_fontsize=8)
    ax.set_title(f"{shorten(run['name'], 60)} [{run['id']}]: power per device", fontsize=10, loc="left")
    return fig


def power_chart(Figure: Any, run: dict[str, Any], series: dict[str, tuple[Any, Any]]) -> str:
    """Power over time per device, as inline SVG."""
    names = [run["name"], *(p["name"] for p in run.get("phases") or []), *series]
    with text_fonts(names):
        return svg(power_figure(Figure, run, series))


def phase_chart(Figure: Any, run: dict[str, Any]) -> str | None:
    """Horizontal bars: energy per phase (and outside any phase), as inline SVG; None without phases."""
    phases = [p for p in run.get("phases") or [] if p.get("energy_j") is not None]
    if not phases:
        return None
    wh = J_PER_KWH / 1000.0
    if len(phases) > 12:  # an eval every epoch: one bar per phase name
        summed: dict[str, float] = {}
        for p in phases:
            summed[p["name"]] = summed.get(p["name"], 0.0) + p["energy_j"]
        names = [f"{shorten(k, 30)} (all {sum(1 for p in phases if p['name'] == k)})" for k in summed]
        vals = [v / wh for v in summed.values()]
    else:
        names = [shorten(p["name"], 30) for p in phases]
        vals = [p["energy_j"] / wh for p in phases]
    stats = run.get("stats") if isinstance(run.get("stats"), dict) else {}
    outside = (stats or {}).get("outside_phases_j")
    if outside is not None and outside > 0:
        names.append("(outside phases)")
        vals.append(outside / wh)
    with text_fonts(names):
        fig = Figure(figsize=(10, 0.45 * len(names) + 0.9), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        bars = ax.barh(range(len(names)), vals, color=[f"C{i % 10}" for i in range(len(names))])
        ax.set_yticks(range(len(names)), labels=names)
        ax.invert_yaxis()
        ax.set_xlabel("energy (Wh)")
        ax.bar_label(bars, labels=[f"{v:.3g} Wh" for v in vals], padding=3, fontsize=8)
        ax.margins(x=0.15)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title("energy per phase", fontsize=10)
        return svg(fig)
