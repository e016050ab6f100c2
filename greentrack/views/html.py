"""A self-contained HTML report: run table, power over time per device, energy per phase.

One file, no external resources: charts are drawn with matplotlib (imported here, lazily) and
embedded as inline SVG. Without matplotlib the report still renders, with tables only and a
note saying how to get the charts (``pip install 'greentrack[html]'``).

Every text drawn in a chart (run, phase and device names) is plain text: mathtext and TeX are
off (``text.parse_math``, ``text.usetex``), so ``cost $5 and $6`` is drawn as written. A run
whose section cannot be drawn gets a one-line note in its place; the other runs are drawn.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any, Sequence

from ..units import (
    J_PER_KWH,
    fmt_co2,
    fmt_duration,
    fmt_energy,
    fmt_time,
    fmt_watts,
    mark,
    modelled,
    one_line,
    plural,
    shorten,
)
from .charts import matplotlib_figure, phase_chart, power_chart
from .runs import MODELLED_NOTE, REPORT_COLUMNS, co2e_kg, gap_footnote, run_record, run_row, unmeasured_s
from .show import budget_text, model_lines

NAME_CHARS = 60  # a run name in the table (the whole name, up to 1,000 characters, is its tooltip)

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1400px;
color:#1d2a22;padding:0 1rem;background:#fff}
h1{color:#1f6f43;margin-bottom:.2rem}h2{border-bottom:2px solid #cfe6d7;padding-bottom:.2rem;margin-top:2rem}
h3{margin-bottom:.3rem;overflow-wrap:anywhere}.meta{color:#5b6b61;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{padding:.25rem .5rem;border-bottom:1px solid #e3ece6;text-align:left;white-space:nowrap;vertical-align:top}
th{background:#eef6f1}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.runs{width:100%}table.runs td.name{white-space:normal;overflow-wrap:anywhere;min-width:7rem;max-width:16rem}
table.runs td.started,table.runs td.devices{white-space:normal;min-width:6rem}
table.runs td.tags{white-space:normal;overflow-wrap:anywhere;min-width:9rem}
tr.failed td,tr.interrupted td,tr.lost td{color:#9b2c2c}.totals{font-weight:600}
section.run{border:1px solid #e3ece6;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.9rem}dt{color:#5b6b61}
dd{margin:0;overflow-wrap:anywhere}.chart svg{width:100%;height:auto}tr.modelled td{font-style:italic}
.wide{overflow-x:auto}
.note{color:#8a5a00;font-size:.9rem}.bad{color:#9b2c2c;font-weight:600}
table.greentrack-compare caption{caption-side:bottom;text-align:left;color:#5b6b61;font-size:.85rem}
table.greentrack-compare tr.cheapest td:first-child::after{content:" (cheapest)";color:#1f6f43}
table.greentrack-compare tr.cleanest td:first-child::after{content:" (cleanest)";color:#1f6f43}
table.greentrack-compare tr.cheapest.cleanest td:first-child::after{content:" (cheapest, cleanest)"}
"""


def default_report_path(now: _dt.datetime | None = None, folder: str | os.PathLike[str] = "reports") -> Path:
    """``reports/greentrack-report-YYYYmmdd-HHMMSS.html`` under the working directory."""
    now = now or _dt.datetime.now()
    return Path(folder) / f"greentrack-report-{now.strftime('%Y%m%d-%H%M%S')}.html"


def _e(x: Any) -> str:
    """Text for HTML: escaped, and control characters (invalid in HTML and SVG) shown as ``\\x1b``."""
    return html.escape(one_line("" if x is None else x))


def _run_table(rows: list[dict[str, Any]]) -> str:
    cols = REPORT_COLUMNS + ["region", "tags"]
    right = {3, 5, 6, 7}
    kinds = {1: "name", 2: "started", 8: "devices", len(cols) - 1: "tags"}
    out = ["<table class=runs><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr></thead><tbody>"]
    for r in rows:
        cells = run_row(r) + [r.get("region") or "-",
                              shorten(" ".join(f"{k}={v}" for k, v in sorted((r.get("tags") or {}).items())), 300)]
        cells[1] = shorten(r["name"], NAME_CHARS)
        tds = []
        for i, c in enumerate(cells):
            if i == 0:
                tds.append(f"<td><a href='#run-{_e(r['id'])}'>{_e(r['id'])}</a></td>")
            elif i == 1:
                tds.append(f"<td class=name title='{_e(shorten(r['name'], 1000))}'>{_e(c)}</td>")
            else:
                tds.append(f"<td class={'num' if i in right else kinds.get(i, 'text')}>{_e(c)}</td>")
        out.append(f"<tr class={_e(r['status'])}>{''.join(tds)}</tr>")
    tot_j = sum(r["energy_j"] for r in rows if r.get("energy_j") is not None)
    tot_c = sum(c for c in (co2e_kg(r) for r in rows) if c is not None)
    out.append(f"<tr class=totals><td colspan=5>total of {plural(len(rows), 'run')}</td>"
               f"<td class=num>{tot_j / J_PER_KWH:.6f}</td>"
               f"<td class=num>{_e(fmt_co2(tot_c))}</td><td colspan={len(cols) - 7}></td></tr>")
    out.append("</tbody></table>")
    note = gap_footnote(rows)
    if note:
        out.append(f"<p class=note>{_e(note)}</p>")
    return "<div class=wide>" + "\n".join(out) + "</div>"


def _run_section(Figure: Any, run: dict[str, Any], series: dict[str, tuple[Any, Any]]) -> str:
    rec = run_record(run)
    how = rec["energy_method"]
    facts = [
        ("status", run["status"] + (f" ({run['error']})" if run.get("error") else "")),
        ("started", fmt_time(run.get("started_at"))), ("duration", fmt_duration(run.get("duration_s"))),
        ("energy", mark(fmt_energy(run.get("energy_j")), how)),
        ("average power", f"{mark(fmt_watts(rec['avg_power_w']), how)} W"),
        ("CO2e", mark(fmt_co2(co2e_kg(run)), how)), ("region", run.get("region") or "-"),
        ("grid intensity", run.get("intensity_source") or "-"), ("PUE", run.get("pue")),
        ("budget", budget_text(run.get("budget"))),
    ]
    if run.get("command"):
        facts.append(("command", run["command"]))
    if unmeasured_s(run):
        facts.append(("unmeasured", f"{fmt_duration(unmeasured_s(run))} of sensor data gaps: their energy is not "
                                    "in the total (see the notes)"))
    model = [ln.strip() for ln in model_lines(run["devices"])]
    if model:
        facts.append(("energy method", " · ".join(ln.removeprefix("model").strip() for ln in model)))
    st = (run.get("stats") or {}).get("step") if isinstance(run.get("stats"), dict) else None
    if st:
        extra = "".join(f", {st[k]:.4g} J/{u}" for k, u in (("j_per_sample", "sample"), ("j_per_token", "token"))
                        if st.get(k) is not None)
        facts.append(("per step", f"{plural(st.get('steps') or 0, 'step')}: mean {st['mean_j']:.3f} J, "
                                  f"p50 {st['p50_j']:.3f} J, "
                                  f"p95 {st['p95_j']:.3f} J{extra}"))
    out = [f"<section class=run id='run-{_e(run['id'])}'><h3>{_e(shorten(run['name'], 200))} "
           f"<small>[{_e(run['id'])}]</small></h3>",
           "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>"]
    devs = ["<table><thead><tr><th>device</th><th>name</th><th>method</th><th>series</th><th>energy</th>"
            "<th>avg W</th><th>peak W</th></tr></thead><tbody>"]
    for d in run["devices"]:
        m = d.get("method")
        cls = " class=modelled" if m == "model" else ""
        devs.append(f"<tr{cls}><td>{_e(d['key'])}</td><td>{_e(d.get('name'))}</td><td>{_e(m)}</td>"
                    f"<td>{_e(d.get('series_method'))}</td>"
                    f"<td class=num>{_e(mark(fmt_energy(d.get('energy_j')), m))}</td>"
                    f"<td class=num>{_e(mark(fmt_watts(d.get('avg_power_w')), m))}</td>"
                    f"<td class=num>{_e(mark(fmt_watts(d.get('peak_power_w')), m))}</td></tr>")
    devs.append("</tbody></table>")
    out.append("\n".join(devs))
    if Figure is not None:
        if series:
            out.append(f"<div class='chart power'>{power_chart(Figure, run, series)}</div>")
        else:
            out.append("<p class=note>no power series was stored for this run</p>")
        ph = phase_chart(Figure, run)
        if ph:
            out.append(f"<div class='chart phases'>{ph}</div>")
    if run.get("phases"):
        rows = "".join(
            f"<tr><td>{_e(shorten(p['name'], NAME_CHARS))}</td>"
            f"<td class=num>{_e(fmt_duration(p['ended_at'] - p['started_at']))}</td>"
            f"<td class=num>{_e(mark(fmt_energy(p.get('energy_j')), how))}</td>"
            f"<td class=num>{_e(p.get('steps'))}</td></tr>"
            for p in run["phases"])
        out.append("<table><thead><tr><th>phase</th><th>duration</th><th>energy</th><th>steps</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table>")
    if run.get("notes"):
        out.append("<ul class=note>" + "".join(f"<li>{_e(n)}</li>" for n in run["notes"]) + "</ul>")
    out.append("</section>")
    return "\n".join(out)


def _safe_section(Figure: Any, run: dict[str, Any], series: dict[str, tuple[Any, Any]]) -> str:
    """One run's section; a run that cannot be drawn gets a note, and never blocks the others."""
    try:
        return _run_section(Figure, run, series)
    except Exception as exc:  # one odd run (a name, a corrupt series) must not cost the whole report
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return (f"<section class=run id='run-{_e(run.get('id'))}'><h3>{_e(run.get('name'))} "
                f"<small>[{_e(run.get('id'))}]</small></h3><p class=note>this run could not be drawn "
                f"({_e(type(exc).__name__)}: {_e(first)}); the table above has its figures</p></section>")


def scenario_section(comparison: Any) -> str:
    """The scenario comparison of a run (a :class:`greentrack.carbon.compare.Comparison`)."""
    from .compare import render_html as comparison_html

    out = [comparison_html(comparison)]
    out += [f"<p class=note>{_e(n)}</p>" for n in comparison.notes]
    if comparison.rows:
        out.append("<details><summary>grid figures and their sources</summary><ul>"
                   + "".join(f"<li>{_e(r.scenario)}: {_e(r.intensity_source)}</li>" for r in comparison.rows)
                   + "</ul></details>")
    return "\n".join(out)


def render_html(rows: list[dict[str, Any]], details: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
                comparison: Any = None, source: str | None = None, title: str = "greentrack report",
                study: tuple[str, list[dict[str, Any]]] | None = None) -> str:
    """The whole report as one HTML document.

    *rows* are the table's runs (``greentrack.api.query_runs``); *details* the ``(run, series)``
    pairs drawn in detail (``Store.get_run`` and ``read_series_np``); *comparison* the newest
    run under scenarios; *source* names where the runs come from; *study* ``(id, rows)`` a study or
    tuning sweep (``greentrack.api.study_comparison``) shown as one table and chart.
    """
    Figure = matplotlib_figure()
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    parts = ["<!doctype html>", "<html lang=en><head><meta charset=utf-8>",
             "<meta name=viewport content='width=device-width, initial-scale=1'>",
             f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f"<p class=meta>generated {_e(now)} · {plural(len(rows), 'run')}"
             + (f" · {_e(source)}" if source else "") + "</p>",
             "<h2>Runs</h2>", _run_table(rows) if rows else "<p>no runs</p>"]
    if Figure is None:
        parts.append("<p class=note>charts need matplotlib: pip install 'greentrack[html]'</p>")
    if comparison is not None and rows:
        parts += [f"<h2>Scenarios for {_e(shorten(rows[0]['name'], 200))} [{_e(rows[0]['id'])}]</h2>",
                  scenario_section(comparison)]
    if study is not None:
        from .study import comparison_chart, render_comparison

        parts += [f"<h2>Study {_e(study[0])}</h2>", f"<pre>{_e(render_comparison(*study))}</pre>"]
        if Figure is not None:
            parts.append(f"<div class='chart study'>{comparison_chart(Figure, *study)}</div>")
    if details:
        parts.append("<h2>Runs in detail</h2>")
        parts += [_safe_section(Figure, run, series) for run, series in details]
        if len(rows) > len(details):
            parts.append(f"<p class=meta>{plural(len(rows) - len(details), 'more run', 'more runs')} in the table "
                         "only (--detail N)</p>")
    if any(modelled(r.get("energy_method")) for r in rows):
        parts.append(f"<p class='note modelled'>{_e(MODELLED_NOTE)}</p>")
    parts.append("<p class=meta>energy is measured energy before PUE, except figures marked ~ (modelled); "
                  "CO2e = energy × PUE × grid intensity (source per run above).</p></body></html>")
    return "\n".join(parts) + "\n"
