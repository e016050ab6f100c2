"""A self-contained HTML report: run table, power over time per device, energy per phase.

One file, no external resources: charts are drawn with matplotlib (imported here, lazily) and
embedded as inline SVG. Without matplotlib the report still renders, with tables only and a
note saying how to get the charts (``pip install 'greentrack[html]'``).
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import os
from pathlib import Path
from typing import Any, Sequence

from ..units import J_PER_KWH, fmt_co2, fmt_duration, fmt_energy, fmt_time, fmt_watts
from .runs import REPORT_COLUMNS, run_record, run_row

PLOT_POINTS = 600  # bins per device line: enough for a 1200-pixel-wide chart

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2a22;padding:0 1rem;background:#fff}
h1{color:#1f6f43;margin-bottom:.2rem}h2{border-bottom:2px solid #cfe6d7;padding-bottom:.2rem;margin-top:2rem}
h3{margin-bottom:.3rem}.meta{color:#5b6b61;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{padding:.25rem .6rem;border-bottom:1px solid #e3ece6;text-align:left;white-space:nowrap}th{background:#eef6f1}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td,tr.interrupted td,tr.lost td{color:#9b2c2c}.totals{font-weight:600}
section.run{border:1px solid #e3ece6;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.9rem}dt{color:#5b6b61}dd{margin:0}
.chart svg{width:100%;height:auto}.wide{overflow-x:auto}td.tags{white-space:normal}
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
    return html.escape("" if x is None else str(x))


def _matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except Exception:
        return None
    return Figure


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "greentrack"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.find("<svg"):]  # drop the XML prolog and doctype: inline SVG in HTML


def power_chart(Figure: Any, run: dict[str, Any], series: dict[str, tuple[Any, Any]]) -> str:
    """Power over time, one line per device (binned mean, min-max band), phases shaded."""
    from .binning import bin_mean

    t0 = run["started_at"]
    t1 = run.get("ended_at") or max((float(t[-1]) for t, _ in series.values() if len(t)), default=t0 + 1)
    span = max(t1 - t0, 1e-9)
    unit, div = ("h", 3600.0) if span >= 7200 else ("min", 60.0) if span >= 180 else ("s", 1.0)
    fig = Figure(figsize=(10, 3.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for i, p in enumerate(run.get("phases") or []):
        ax.axvspan((p["started_at"] - t0) / div, (p["ended_at"] - t0) / div, color=f"C{i % 10}", alpha=0.08, lw=0)
        ax.text((p["started_at"] - t0) / div, 1.0, " " + p["name"], transform=ax.get_xaxis_transform(),
                va="top", ha="left", fontsize=8, color="#5b6b61")
    for key, (t, p) in sorted(series.items()):
        if not len(t):
            continue
        n = min(PLOT_POINTS, max(2, len(t)))
        c, mean, lo, hi = bin_mean(t, p, t0, t1, n)
        x = (c - t0) / div
        # each sample is the mean over the interval ending at it: draw it as a step over that interval
        line = ax.plot(x, mean, lw=1.2, label=key, drawstyle="steps-mid" if len(t) > n else "steps-pre")[0]
        if len(t) > n:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlim(0, span / div)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_ylabel("power (W)")
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="upper right", fontsize=8, ncol=min(8, len(series)))
    ax.set_title(f"{run['name']} [{run['id']}]: power per device", fontsize=10)
    return _svg(fig)


def phase_chart(Figure: Any, run: dict[str, Any]) -> str | None:
    """Horizontal bars: energy per phase (and outside any phase)."""
    phases = [p for p in run.get("phases") or [] if p.get("energy_j") is not None]
    if not phases:
        return None
    if len(phases) > 12:  # an eval every epoch: one bar per phase name
        summed: dict[str, float] = {}
        for p in phases:
            summed[p["name"]] = summed.get(p["name"], 0.0) + p["energy_j"]
        names = [f"{k} (all {sum(1 for p in phases if p['name'] == k)})" for k in summed]
        vals = [v / 3.6e3 for v in summed.values()]
    else:
        names = [p["name"] for p in phases]
        vals = [p["energy_j"] / 3.6e3 for p in phases]  # Wh
    stats = run.get("stats") if isinstance(run.get("stats"), dict) else {}
    outside = (stats or {}).get("outside_phases_j")
    if outside is not None and outside > 0:
        names.append("(outside phases)")
        vals.append(outside / 3.6e3)
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
    return _svg(fig)


def _run_table(rows: list[dict[str, Any]]) -> str:
    cols = REPORT_COLUMNS + ["region", "tags"]
    right = {3, 5, 6, 7}
    out = ["<table class=runs><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr></thead><tbody>"]
    for r in rows:
        cells = run_row(r) + [r.get("region") or "-",
                              " ".join(f"{k}={v}" for k, v in sorted((r.get("tags") or {}).items()))]
        tds = "".join(f"<td class=num>{_e(c)}</td>" if i in right else
                      f"<td class=tags>{_e(c)}</td>" if i == len(cells) - 1 else f"<td>{_e(c)}</td>"
                      for i, c in enumerate(cells))
        anchor = f"<a href='#run-{_e(r['id'])}'>{_e(r['id'])}</a>"
        tds = tds.replace(f"<td>{_e(r['id'])}</td>", f"<td>{anchor}</td>", 1)
        out.append(f"<tr class={_e(r['status'])}>{tds}</tr>")
    tot_j = sum(r["energy_j"] for r in rows if r.get("energy_j") is not None)
    tot_c = sum(r["co2e_kg"] for r in rows if r.get("co2e_kg") is not None)
    out.append(f"<tr class=totals><td colspan=5>total of {len(rows)} runs</td>"
               f"<td class=num>{tot_j / J_PER_KWH:.6f}</td>"
               f"<td class=num>{_e(fmt_co2(tot_c))}</td><td colspan={len(cols) - 7}></td></tr>")
    out.append("</tbody></table>")
    return "<div class=wide>" + "\n".join(out) + "</div>"


def _run_section(Figure: Any, run: dict[str, Any], series: dict[str, tuple[Any, Any]]) -> str:
    rec = run_record(run)
    facts = [
        ("status", run["status"] + (f" ({run['error']})" if run.get("error") else "")),
        ("started", fmt_time(run.get("started_at"))), ("duration", fmt_duration(run.get("duration_s"))),
        ("energy", fmt_energy(run.get("energy_j"))), ("average power", f"{fmt_watts(rec['avg_power_w'])} W"),
        ("CO2e", fmt_co2(run.get("co2e_kg"))), ("region", run.get("region") or "-"),
        ("grid intensity", run.get("intensity_source") or "-"), ("PUE", run.get("pue")),
        ("budget", "EXCEEDED: " + str(run["budget"]) if rec["budget_exceeded"] else
         ("within: " + str(run["budget"]) if run.get("budget") else "none set")),
    ]
    if run.get("command"):
        facts.append(("command", run["command"]))
    st = (run.get("stats") or {}).get("step") if isinstance(run.get("stats"), dict) else None
    if st:
        extra = "".join(f", {st[k]:.4g} J/{u}" for k, u in (("j_per_sample", "sample"), ("j_per_token", "token"))
                        if st.get(k) is not None)
        facts.append(("per step", f"{st.get('steps')} steps: mean {st['mean_j']:.3f} J, p50 {st['p50_j']:.3f} J, "
                                  f"p95 {st['p95_j']:.3f} J{extra}"))
    out = [f"<section class=run id='run-{_e(run['id'])}'><h3>{_e(run['name'])} <small>[{_e(run['id'])}]</small></h3>",
           "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>"]
    devs = ["<table><thead><tr><th>device</th><th>name</th><th>method</th><th>series</th><th>energy</th>"
            "<th>avg W</th><th>peak W</th></tr></thead><tbody>"]
    for d in run["devices"]:
        devs.append(f"<tr><td>{_e(d['key'])}</td><td>{_e(d.get('name'))}</td><td>{_e(d.get('method'))}</td>"
                    f"<td>{_e(d.get('series_method'))}</td><td class=num>{_e(fmt_energy(d.get('energy_j')))}</td>"
                    f"<td class=num>{_e(fmt_watts(d.get('avg_power_w')))}</td>"
                    f"<td class=num>{_e(fmt_watts(d.get('peak_power_w')))}</td></tr>")
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
            f"<tr><td>{_e(p['name'])}</td><td class=num>{_e(fmt_duration(p['ended_at'] - p['started_at']))}</td>"
            f"<td class=num>{_e(fmt_energy(p.get('energy_j')))}</td><td class=num>{_e(p.get('steps'))}</td></tr>"
            for p in run["phases"])
        out.append("<table><thead><tr><th>phase</th><th>duration</th><th>energy</th><th>steps</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table>")
    if run.get("notes"):
        out.append("<ul class=note>" + "".join(f"<li>{_e(n)}</li>" for n in run["notes"]) + "</ul>")
    out.append("</section>")
    return "\n".join(out)


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
                comparison: Any = None, source: str | None = None, title: str = "greentrack report") -> str:
    """The whole report as one HTML document.

    *rows* are the table's runs (``greentrack.api.query_runs``); *details* the ``(run, series)``
    pairs drawn in detail (``Store.get_run`` and ``read_series_np``); *comparison* the newest
    run under scenarios; *source* names where the runs come from.
    """
    Figure = _matplotlib()
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    parts = ["<!doctype html>", "<html lang=en><head><meta charset=utf-8>",
             "<meta name=viewport content='width=device-width, initial-scale=1'>",
             f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f"<p class=meta>generated {_e(now)} · {len(rows)} runs" + (f" · {_e(source)}" if source else "") + "</p>",
             "<h2>Runs</h2>", _run_table(rows) if rows else "<p>no runs</p>"]
    if Figure is None:
        parts.append("<p class=note>charts need matplotlib: pip install 'greentrack[html]'</p>")
    if comparison is not None and rows:
        parts += [f"<h2>Scenarios for {_e(rows[0]['name'])} [{_e(rows[0]['id'])}]</h2>", scenario_section(comparison)]
    if details:
        parts.append("<h2>Runs in detail</h2>")
        parts += [_run_section(Figure, run, series) for run, series in details]
        if len(rows) > len(details):
            parts.append(f"<p class=meta>{len(rows) - len(details)} more runs in the table only (--detail N)</p>")
    parts.append("<p class=meta>energy is measured energy before PUE; CO2e = energy × PUE × grid intensity "
                  "(source per run above).</p></body></html>")
    return "\n".join(parts) + "\n"
