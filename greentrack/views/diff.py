"""``greentrack diff``: what changed between two runs, in total and per unit of work.

Normalising matters: a bf16 run that trains more tokens per second may use more power and
less energy per token. Each figure is B against A: ``change = B - A``, ``pct = (B - A) / A``.
"""

from __future__ import annotations

from typing import Any

from ..units import J_PER_KWH, fmt_co2, fmt_duration, fmt_energy, fmt_money, one_line, shorten, table, terminal_safe
from .runs import co2e_kg, run_record


def _per(x: float | None, n: float | None) -> float | None:
    return None if (x is None or not n) else x / n


def _cost(run: dict[str, Any], price_per_kwh: float | None) -> float | None:
    if price_per_kwh is None or run.get("energy_j") is None:
        return None
    return run["energy_j"] / J_PER_KWH * float(run.get("pue") or 1.0) * price_per_kwh


def metrics(run: dict[str, Any], price_per_kwh: float | None = None) -> list[tuple[str, str, float | None]]:
    """``(key, unit, value)`` for one run, in display order; None where not recorded."""
    ej, co2 = run.get("energy_j"), co2e_kg(run)
    dur = run.get("duration_s")
    cost = _cost(run, price_per_kwh)
    steps, samples, tokens = run.get("steps") or None, run.get("samples") or None, run.get("tokens") or None
    out: list[tuple[str, str, float | None]] = [
        ("duration", "s", dur),
        ("energy", "kWh", None if ej is None else ej / J_PER_KWH),
        ("co2e", "kg", co2),
        ("cost", "per kWh price", cost),
        ("avg_power", "W", _per(ej, dur)),
        ("steps", "", float(steps) if steps else None),
        ("samples", "", samples),
        ("tokens", "", tokens),
        ("energy_per_step", "J", _per(ej, steps)),
        ("energy_per_sample", "J", _per(ej, samples)),
        ("energy_per_token", "J", _per(ej, tokens)),
        ("co2e_per_sample", "g", _per(None if co2 is None else co2 * 1000, samples)),
        ("co2e_per_token", "mg", _per(None if co2 is None else co2 * 1e6, tokens)),
        ("cost_per_sample", "", _per(cost, samples)),
        ("cost_per_token", "", _per(cost, tokens)),
    ]
    for p in run.get("phases") or []:
        out.append((f"phase:{p['name']}", "J", p.get("energy_j")))
    return out


def diff_runs(a: dict[str, Any], b: dict[str, Any], price_per_kwh: float | None = None,
              currency: str = "USD") -> dict[str, Any]:
    """Compare two runs (``Store.get_run`` dicts): rows of ``metric, unit, a, b, change, pct``.

    Cost rows are in *currency* (the price's: ``--currency``, ``GREENTRACK_CURRENCY``, else USD).
    """
    ma = {k: (u, v) for k, u, v in metrics(a, price_per_kwh)}
    mb = {k: (u, v) for k, u, v in metrics(b, price_per_kwh)}
    keys = list(ma) + [k for k in mb if k not in ma]
    rows = []
    for k in keys:
        unit = (ma.get(k) or mb.get(k))[0]  # type: ignore[index]
        va, vb = (ma.get(k) or (unit, None))[1], (mb.get(k) or (unit, None))[1]
        if va is None and vb is None:
            continue
        change = (vb - va) if (va is not None and vb is not None) else None
        pct = (change / va * 100.0) if (change is not None and va) else None
        rows.append({"metric": k, "unit": unit, "a": va, "b": vb, "change": change, "pct": pct})
    for r in rows:
        if str(r["metric"]).startswith("cost"):
            r["unit"] = currency
    same = a["id"] == b["id"]
    return {"a": _ident(a), "b": _ident(b), "price_per_kwh": price_per_kwh, "currency": currency, "rows": rows,
            "same_run": same, "verdict": None if same else verdict(rows), "notes": _notes(a, b)}


def _ident(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "name": r["name"], "status": r["status"], "tags": r.get("tags") or {},
            "devices": run_record(r)["devices"], "region": r.get("region")}


def _notes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    if a["id"] == b["id"]:
        return [f"A and B are the same run ({a['name']} [{a['id']}]): it is compared with itself, so nothing changed; "
                "name two runs, e.g. 'greentrack diff -2 last'"]
    notes = []
    if a.get("region") != b.get("region"):
        notes.append(f"regions differ ({a.get('region')} vs {b.get('region')}): CO2e changes with the grid too")
    if (a.get("pue") or 1.0) != (b.get("pue") or 1.0):
        notes.append(f"PUE differs ({a.get('pue')} vs {b.get('pue')})")
    for r, label in ((a, "A"), (b, "B")):
        if r.get("status") != "finished":
            notes.append(f"run {label} is {r.get('status')}: its totals cover only part of the work")
    return notes


def verdict(rows: list[dict[str, Any]]) -> str | None:
    """One sentence on energy, per the finest unit of work both runs recorded."""
    by = {r["metric"]: r for r in rows}
    for key, what in (("energy_per_token", "per token"), ("energy_per_sample", "per sample"),
                      ("energy_per_step", "per step"), ("energy", "in total")):
        r = by.get(key)
        if r and r["pct"] is not None:
            word = "less" if r["pct"] < 0 else "more"
            return f"B used {abs(r['pct']):.1f}% {word} energy {what} than A"
    return None


def _fmt(metric: str, unit: str, v: float | None) -> str:
    if v is None:
        return "-"
    if metric == "duration":
        return fmt_duration(v)
    if metric == "energy":
        return fmt_energy(v * J_PER_KWH)
    if metric == "co2e":
        return fmt_co2(v)
    if metric in ("steps", "samples", "tokens"):
        return f"{v:,.0f}"
    if metric.startswith("phase:"):
        return fmt_energy(v)
    if metric.startswith("cost"):
        return fmt_money(v, unit)
    return f"{v:.4g} {unit}".strip()


LABELS = {
    "duration": "duration", "energy": "energy", "co2e": "CO2e", "cost": "cost", "avg_power": "average power",
    "steps": "steps", "samples": "samples", "tokens": "tokens", "energy_per_step": "energy / step",
    "energy_per_sample": "energy / sample", "energy_per_token": "energy / token",
    "co2e_per_sample": "CO2e / sample", "co2e_per_token": "CO2e / token", "cost_per_sample": "cost / sample",
    "cost_per_token": "cost / token",
}


PER_MANY = {"cost_per_token": ("cost / 1M tokens", 1e6), "cost_per_sample": ("cost / 1k samples", 1e3)}


def render_diff(d: dict[str, Any]) -> str:
    """The text of ``greentrack diff`` (stored text shown as printable lines, like every terminal view)."""
    a, b = d["a"], d["b"]

    def ident(x: dict[str, Any]) -> str:
        tags = " ".join(f"{k}={v}" for k, v in sorted(x["tags"].items()))
        return f"{shorten(x['name'], 80)} [{x['id']}] {x['status']}" + (f"  {shorten(tags, 200)}" if tags else "")

    notes = list(d.get("notes") or [])
    out = [f"A  {ident(a)}", f"B  {ident(b)}", ""]
    if d.get("same_run") and notes:
        out[2:2] = [f"note: {notes.pop(0)}"]
    rows = []
    for r in d["rows"]:
        m = r["metric"]
        label = LABELS.get(m, "phase " + shorten(m[6:]) + " energy" if m.startswith("phase:") else m)
        ch = "-"
        if r["change"] is not None:
            ch = _fmt(m, r["unit"], abs(r["change"]))
            ch = ("+" if r["change"] > 0 else "-" if r["change"] < 0 else "±") + ch
        pct = "-" if r["pct"] is None else f"{r['pct']:+.1f}%"
        scale = PER_MANY.get(m)
        if scale is not None:  # a cost per token is a tiny sum: shown per million tokens, per thousand samples
            label, k = scale
            ch = "-" if r["change"] is None else (("+" if r["change"] > 0 else "-" if r["change"] < 0 else "±")
                                                  + _fmt(m, r["unit"], abs(r["change"]) * k))
            rows.append([label, _fmt(m, r["unit"], None if r["a"] is None else r["a"] * k),
                         _fmt(m, r["unit"], None if r["b"] is None else r["b"] * k), ch, pct])
            continue
        rows.append([label, _fmt(m, r["unit"], r["a"]), _fmt(m, r["unit"], r["b"]), ch, pct])
    out += table(["", "A", "B", "B - A", "change"], rows, right={1, 2, 3, 4}).splitlines()
    if d.get("price_per_kwh") is None:
        out.append("(cost: give --price-per-kwh, or set GREENTRACK_PRICE_PER_KWH)")
    else:
        out.append(f"(cost at {d['price_per_kwh']:g} {d.get('currency') or 'USD'} per kWh, times PUE)")
    if d.get("verdict"):
        out += ["", d["verdict"]]
    out += [f"note: {one_line(n)}" for n in notes]
    return terminal_safe("\n".join(out))


def diff_json(d: dict[str, Any]) -> str:
    """Strict JSON: a number that is not finite is written as null, with a note (see views.runs.dumps_json)."""
    from .runs import dumps_json

    return dumps_json(d)
