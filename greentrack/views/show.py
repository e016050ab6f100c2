"""``greentrack show``: one run in the terminal, with its power over time as sparklines."""

from __future__ import annotations

from typing import Any

from ..units import (
    fmt_co2,
    fmt_duration,
    fmt_energy,
    fmt_time,
    fmt_watts,
    mark,
    one_line,
    plural,
    printable,
    shorten,
    table,
    terminal_safe,
)
from ..units import width as text_width
from .runs import _iso, co2e_kg, dumps_json, run_record
from .sparkline import sparkline

MAX_PHASE_ROWS = 12
SHOW_NAME_WIDTH = 120  # the run's name on show's first line (the stored name is kept whole)
SHOW_TEXT_WIDTH = 400  # command, tags, error, notes


def build_view(run: dict[str, Any], series: dict[str, tuple[Any, Any]], width: int = 60) -> dict[str, Any]:
    """*run* (``Store.get_run``) with its power *series* binned: ``width`` bins per device."""
    from .binning import bin_mean, total_power

    t0 = run["started_at"]
    t1 = run.get("ended_at") or max((float(t[-1]) for t, _p in series.values() if len(t)), default=t0)
    power: dict[str, Any] = {}
    for key, (t, p) in series.items():
        _c, mean, lo, hi = bin_mean(t, p, t0, t1, width)
        power[key] = {"mean": mean, "min": float(p.min()) if len(p) else None,
                      "max": float(p.max()) if len(p) else None, "points": int(len(t))}
    run["power"] = power
    run["power_total"] = total_power([v["mean"] for v in power.values()]) if len(power) > 1 else None
    run["span"] = (t0, t1)
    return run


def _phase_ruler(phases: list[dict[str, Any]], t0: float, t1: float, width: int) -> str:
    """A line under the sparklines naming the phases in their columns: ``[train.....][eval]``."""
    cells = [" "] * width
    span = max(t1 - t0, 1e-9)
    for p in phases:
        a = int((p["started_at"] - t0) / span * width)
        b = int((p["ended_at"] - t0) / span * width)
        a, b = max(0, min(width - 1, a)), max(0, min(width - 1, max(a, b - 1)))
        if b - a < 1:
            cells[a] = "|"
            continue
        if b - a + 1 < 4:  # too narrow for brackets: the phase's initial in each of its columns
            seg = (printable(p["name"])[:1] or "?") * (b - a + 1)
        else:
            label = printable(p["name"])[: max(0, b - a - 1)]
            seg = "[" + label + "·" * (b - a - 1 - len(label)) + "]"
        cells[a:b + 1] = list(seg[: b - a + 1])
    return "".join(cells).rstrip()


# budget key -> (what, unit) for the budget line
BUDGET_UNITS = {"energy_kwh": ("energy", "kWh"), "co2e_kg": ("CO2e", "kg"),
                "energy_budget_kwh": ("energy (pytest session budget)", "kWh"),
                "energy_budget_co2e_g": ("CO2e (pytest session budget)", "g"),
                "energy_budget_regression": ("energy change against the last run (pytest)", "%")}


def budget_text(budget: Any) -> str:
    """``within: energy 0.0012 kWh of 0.05 kWh (2.4%)``, ``EXCEEDED: ...`` or ``none set``."""
    if not isinstance(budget, dict) or budget.get("limit") is None or budget.get("usage") is None:
        return "none set"
    what, unit = BUDGET_UNITS.get(str(budget.get("budget")), (str(budget.get("budget")), ""))
    usage, limit = float(budget["usage"]), float(budget["limit"])
    sep = "" if unit == "%" else " "
    if budget.get("exceeded", True):
        return f"EXCEEDED: {what} {usage:.6g}{sep}{unit} > limit {limit:.6g}{sep}{unit}".rstrip()
    share = f" ({usage / limit * 100:.1f}% of it)" if limit > 0 and unit != "%" else ""
    return f"within: {what} {usage:.6g}{sep}{unit} <= limit {limit:.6g}{sep}{unit}{share}".rstrip()


def model_lines(devices: list[dict[str, Any]]) -> list[str]:
    """The ``model`` block of ``show``: what a modelled device's energy was computed from."""
    out: list[str] = []
    for d in devices:
        info = d.get("info") if isinstance(d.get("info"), dict) else {}
        if d.get("method") != "model" or not info:
            continue
        cpu_s = info.get("cpu_s")
        w = info.get("watts_per_thread")
        idle = info.get("idle_share") or 0
        head = "  model      " if not out else "             "
        out.append(f"{head}{d['key']}: modelled from CPU time, not measured ({info.get('method_ref') or 'model'})")
        formula = f"{cpu_s:.3f} CPU-s" if isinstance(cpu_s, (int, float)) else "CPU seconds"
        out.append(f"             {formula} x {w:g} W per thread" if isinstance(w, (int, float)) else
                   f"             {formula} x watts per thread")
        if info.get("basis"):
            out.append(f"             watts per thread: {info['basis']}")
        out.append(f"             idle share {idle:g}: {info.get('idle_basis') or '-'}")
    return out


def render_show(run: dict[str, Any], unicode: bool = True) -> str:
    """The text of ``greentrack show``: every stored text shown as one printable line (no control
    character from a name, tag, phase, command or error reaches the terminal)."""
    return terminal_safe(_render_show(run, unicode))


def _render_show(run: dict[str, Any], unicode: bool = True) -> str:
    e = one_line
    rec = run_record(run)
    out: list[str] = []
    name = shorten(run["name"], SHOW_NAME_WIDTH)
    if name.endswith("…") and text_width(run["name"]) > SHOW_NAME_WIDTH:
        name += f" ({len(run['name']):,} characters; --format json has it whole)"
    out.append(f"{name}  [{run['id']}]  {run['status']}")
    started = fmt_time(run.get("started_at"))
    out.append(f"  started    {started}   duration {fmt_duration(run.get('duration_s'))}"
               + (f"   host {e(run['host'])}" if run.get("host") else ""))
    if run.get("command"):
        out.append(f"  command    {shorten(run['command'], SHOW_TEXT_WIDTH)}")
    if run.get("job_id"):
        out.append(f"  job        {e(run['job_id'])}" + (f"  rank {e(run['rank'])}/{e(run['world_size'])}"
                                                         if run.get("rank") is not None else ""))
    peak = sum(d["peak_power_w"] for d in run["devices"] if d.get("peak_power_w") is not None) or None
    how = rec["energy_method"]
    out.append(f"  energy     {mark(fmt_energy(run.get('energy_j')), how)}"
               + (f" ({rec['energy_kwh']:.6f} kWh)" if rec["energy_kwh"] is not None and rec["energy_kwh"] < 1 else "")
               + f"   avg {mark(fmt_watts(rec['avg_power_w']), how)} W   peak {mark(fmt_watts(peak), how)} W"
               + f"   backend {run.get('backend') or '-'}")
    if rec.get("unmeasured_s"):
        out.append(f"  unmeasured {fmt_duration(rec['unmeasured_s'])} of sensor data gaps: their energy is not "
                   "in the total (see notes)")
    co2 = co2e_kg(run)
    so_far = ""
    if run.get("co2e_kg") is None and co2 is not None:
        so_far = (" (from the energy measured until the run was lost)" if run.get("status") == "lost"
                  else " (so far)")
    out.append(f"  CO2e       {mark(fmt_co2(co2), how)}{so_far}   region {run.get('region') or '-'}"
               f"   PUE {run.get('pue') if run.get('pue') is not None else '-'}")
    out += model_lines(run["devices"])
    out.append(f"  intensity  {run.get('intensity_source') or '-'}")
    out.append(f"  budget     {budget_text(run.get('budget'))}")
    if run.get("tags"):
        out.append("  tags       " + shorten(" ".join(f"{k}={v}" for k, v in sorted(run["tags"].items())),
                                              SHOW_TEXT_WIDTH))
    if run.get("error"):
        out.append(f"  error      {shorten(run['error'], SHOW_TEXT_WIDTH)}")

    if run["devices"]:
        out += ["", "devices"]
        rows = [[d["key"], d.get("name") or "-", d.get("method") or "-", d.get("series_method") or "-",
                 mark(fmt_energy(d.get("energy_j")), d.get("method")),
                 mark(fmt_watts(d.get("avg_power_w")), d.get("method")),
                 mark(fmt_watts(d.get("peak_power_w")), d.get("method")),
                 str(d.get("n_samples") or 0)] for d in run["devices"]]
        out += ["  " + ln for ln in table(["key", "name", "method", "series", "energy", "avg W", "peak W", "samples"],
                                          rows, right={4, 5, 6, 7}).splitlines()]

    power = run.get("power") or {}
    t0, t1 = run["span"]
    if power:
        width = len(next(iter(power.values()))["mean"])
        lo = min((v["min"] for v in power.values() if v["min"] is not None), default=0.0)
        hi = max((v["max"] for v in power.values() if v["max"] is not None), default=0.0)
        col = (t1 - t0) / width
        out += ["", f"power over time (W; each column {fmt_duration(col) if col >= 1 else f'{col * 1000:.0f} ms'}, "
                    f"one scale {min(lo, 0.0):.0f}-{hi:.0f} W for all devices)"]
        label_w = max(5, *(len(e(k)) for k in power))
        for key, v in sorted(power.items()):
            rng = "-" if v["min"] is None else f"{v['min']:.0f}-{v['max']:.0f} W"
            out.append(f"  {e(key):<{label_w}} {sparkline(v['mean'], lo=min(lo, 0.0), hi=hi, unicode=unicode)}  {rng}")
        total = run.get("power_total")
        if total is not None:
            import numpy as np

            tmax = float(np.nanmax(total)) if np.isfinite(total).any() else 0.0
            line = sparkline(total, lo=0.0, hi=tmax, unicode=unicode)
            out.append(f"  {'total':<{label_w}} {line}  peak {tmax:.0f} W")
        ruler = _phase_ruler(run["phases"], t0, t1, width)
        if ruler.strip():
            out.append(f"  {'':<{label_w}} {ruler}")
        out.append(f"  {'':<{label_w}} 0s{' ' * max(1, width - 2 - len(fmt_duration(t1 - t0)))}{fmt_duration(t1 - t0)}")

    if run["phases"]:
        total_j = run.get("energy_j")
        rows = []
        phases, grouped = run["phases"], len(run["phases"]) > MAX_PHASE_ROWS
        if grouped:  # many phases (an eval every epoch): one row per phase name
            by: dict[str, dict[str, Any]] = {}
            for p in phases:
                g = by.setdefault(p["name"], {"name": p["name"], "n": 0, "dur": 0.0, "energy_j": None, "steps": 0,
                                              "started_at": p["started_at"]})
                g["n"] += 1
                g["dur"] += p["ended_at"] - p["started_at"]
                g["steps"] += p.get("steps") or 0
                if p.get("energy_j") is not None:
                    g["energy_j"] = (g["energy_j"] or 0.0) + p["energy_j"]
            phases = list(by.values())
        for p in phases:
            dur = p["dur"] if grouped else p["ended_at"] - p["started_at"]
            share = f"{p['energy_j'] / total_j * 100:.1f}%" if (p.get("energy_j") is not None and total_j) else "-"
            per_step = (fmt_energy(p["energy_j"] / p["steps"]) if (p.get("energy_j") is not None and p.get("steps"))
                        else "-")
            start = f"{p['n']}x" if grouped else f"+{fmt_duration(p['started_at'] - t0)}"
            rows.append([shorten(p["name"]), start, fmt_duration(dur),
                         mark(fmt_energy(p.get("energy_j")), how), share, str(p.get("steps") or 0),
                         mark(per_step, how)])
        stats = run.get("stats") if isinstance(run.get("stats"), dict) else {}
        outside = (stats or {}).get("outside_phases_j")
        if outside is not None:
            rows.append(["(outside phases)", "", "", mark(fmt_energy(outside), how),
                         f"{outside / total_j * 100:.1f}%" if total_j else "-", "", ""])
        out += ["", f"phases ({len(run['phases'])}, summed per name)" if grouped else "phases"]
        out += ["  " + ln for ln in table(["phase", "times" if grouped else "start", "duration", "energy", "share",
                                           "steps", "per step"],
                                          rows, right={1, 2, 3, 4, 5, 6}).splitlines()]

    stats = run.get("stats") if isinstance(run.get("stats"), dict) else {}
    st = (stats or {}).get("step")
    if st:
        line = (f"  {plural(st.get('steps', run.get('steps')) or 0, 'step')}: mean {st['mean_j']:.3f} J, "
                f"p50 {st['p50_j']:.3f} J, "
                f"p95 {st['p95_j']:.3f} J")
        if st.get("j_per_sample") is not None:
            line += f"; {st['j_per_sample']:.4g} J/sample"
        if st.get("j_per_token") is not None:
            line += f"; {st['j_per_token']:.4g} J/token"
        out += ["", "per step", line]
    elif run.get("steps"):
        out += ["", "per step", f"  {plural(run['steps'], 'step')} (no per-step energy: nothing was measured)"]
    if run.get("notes"):
        out += ["", "notes"] + [f"  - {shorten(n, SHOW_TEXT_WIDTH)}" for n in run["notes"]]
    return "\n".join(out)


def show_json(run: dict[str, Any]) -> str:
    """``show --format json``: the stable run record plus devices, phases, step stats and binned power."""
    rec = run_record(run)
    t0, t1 = run["span"]
    width = len(next(iter(run["power"].values()))["mean"]) if run.get("power") else 0

    def clean(a: Any) -> list[float | None]:
        return [None if x != x else round(float(x), 2) for x in a]

    rec.update(
        devices=[{k: d.get(k) for k in ("key", "kind", "idx", "name", "uuid", "method", "series_method", "energy_j",
                                        "avg_power_w", "peak_power_w", "n_samples")} for d in run["devices"]],
        phases=[{"name": p["name"], "started_at": _iso(p["started_at"]), "ended_at": _iso(p["ended_at"]),
                 "duration_s": p["ended_at"] - p["started_at"], "energy_j": p.get("energy_j"), "steps": p.get("steps")}
                for p in run["phases"]],
        step_stats=(run.get("stats") or {}).get("step") if isinstance(run.get("stats"), dict) else None,
        budget=run.get("budget"), notes=run.get("notes") or [],
        power={"bin_s": (t1 - t0) / width if width else None,
               "devices": {k: clean(v["mean"]) for k, v in sorted((run.get("power") or {}).items())}},
    )
    return dumps_json(rec)
