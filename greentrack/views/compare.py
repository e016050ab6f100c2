"""A scenario comparison (:class:`greentrack.carbon.compare.Comparison`) as text and HTML."""

from __future__ import annotations

import html

from ..carbon.compare import Comparison
from ..units import J_PER_KWH, one_line, table, terminal_safe


def _num(v: float | None, big: str = ",.3f") -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    return format(v, big) if abs(v) >= 1 else f"{v:.3g}"


def _kwh(v: float) -> str:
    return _num(v)


def _kg(v: float | None) -> str:
    return _num(v)


def _usd(v: float | None) -> str:
    return _num(v, ",.2f")


HEADERS = ["scenario", "kind", "PUE", "kWh", "gCO2e/kWh", "kgCO2e op", "kgCO2e emb", "kgCO2e total", "cost USD"]


def table_rows(c: Comparison) -> list[list[str]]:
    """The comparison as rows of strings under :data:`HEADERS`."""
    return [[r.scenario, r.kind, f"{r.pue:.2f}", _kwh(r.facility_kwh), f"{r.intensity_g_per_kwh:.0f}",
             _kg(r.operational_kg), _kg(r.embodied_kg), _kg(r.total_kg if r.kind != "measured" else r.operational_kg),
             _usd(r.cost_usd)] for r in c.rows]


def render_text(c: Comparison, sources: bool = True) -> str:
    """A plain-text table plus cheapest / cleanest and, with *sources*, where each grid figure comes from."""
    from ..units import fmt_duration, plural, shorten

    e = one_line
    head = (f"run {e(c.run_id or '-')} {shorten(c.run_name or '', 60)}: {_kwh(c.energy_j / J_PER_KWH)} kWh "
            "measured over "
            f"{fmt_duration(c.duration_s)} on {plural(c.n_gpus, 'GPU')} = "
            f"{c.rows[0].gpu_hours if c.rows else 0:.4g} GPU-hours")
    out = [head, "", table(HEADERS, table_rows(c), right=set(range(2, len(HEADERS))))]
    out.append("")
    out.append(f"cheapest: {e(c.cheapest or '-')}    cleanest (operational + embodied): {e(c.cleanest or '-')}")
    for n in c.notes:
        out.append(f"note: {e(n)}")
    for r in c.rows:
        for n in r.notes:
            out.append(f"note: {e(r.scenario)}: {e(n)}")
    if sources:
        out.append("")
        out.append("grid figures:")
        for r in c.rows:
            out.append(f"  {e(r.scenario)}: {e(r.intensity_source)}")
    return terminal_safe("\n".join(out))


def render_html(c: Comparison) -> str:
    """An HTML ``<table>`` fragment (class ``greentrack-compare``), cheapest and cleanest marked."""
    e = html.escape
    cells = "".join(f"<th>{e(h)}</th>" for h in HEADERS)
    body = []
    for r, cols in zip(c.rows, table_rows(c)):
        mark = []
        if r.scenario == c.cheapest:
            mark.append("cheapest")
        if r.scenario == c.cleanest:
            mark.append("cleanest")
        cls = f' class="{" ".join(mark)}"' if mark else ""
        tds = "".join(f'<td title="{e(r.intensity_source)}">{e(v)}</td>' if i == 4 else f"<td>{e(v)}</td>"
                      for i, v in enumerate(cols))
        body.append(f"<tr{cls}>{tds}</tr>")
    caption = f"cheapest: {e(c.cheapest or '-')}; cleanest: {e(c.cleanest or '-')}"
    return (f'<table class="greentrack-compare"><caption>{caption}</caption><thead><tr>{cells}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")
