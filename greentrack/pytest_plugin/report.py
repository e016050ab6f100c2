"""The pytest plugin's terminal summary and its regression check against the last stored run."""

from __future__ import annotations

from typing import Any

from ..units import fmt_co2, fmt_duration, fmt_energy, fmt_time, mark, plural


def summary_lines(plugin: Any) -> list[str]:
    """Lines of the ``greentrack energy`` summary: session totals, then the hungriest tests.

    Modelled figures (the CPU model) carry ``~`` and a line says what the model multiplied.
    """
    gs, r = plugin.gsession, plugin.result
    if r is None:
        return ["the measurement did not finish"]
    how = plugin.energy_method
    out = [f"session {r.name!r} (run {r.run_id}): {fmt_duration(r.duration_s)}, {mark(fmt_energy(r.energy_j), how)}"
           + (f" ({mark(f'{r.energy_kwh:.4g}', how)} kWh)" if r.energy_kwh is not None else "")
           + f", {mark(fmt_co2(r.co2e_kg), how)}, backend {gs.backend}"]
    if r.energy_j is None:
        why = next((n for n in r.notes if "region" not in n), None) or "no power source"
        out.append(f"nothing was measured: {why}")
    else:
        if how in ("model", "mixed"):
            hw = plugin.hardware
            out.append(f"~ modelled, not measured: CPU time of pytest and its children x "
                       f"{hw.get('watts_per_thread'):g} W per thread ({hw.get('model_basis')}); "
                       f"see greentrack show {r.run_id}")
        if r.intensity_source:
            out.append(f"CO2e: {r.intensity_source}, {pue_text(r.pue)}")
    tests = plugin.tests
    measured = [t for t in tests if t.get("energy_j") is not None]
    if measured:
        calls_j = sum(t["energy_j"] for t in measured)
        line = f"{plural(len(measured), 'test')} measured, {mark(fmt_energy(calls_j), how)} in their calls"
        if r.energy_j is not None and not plugin.controller:
            line += (f"; outside the calls (collection, fixtures, pytest): "
                     f"{mark(fmt_energy(max(0.0, r.energy_j - calls_j)), how)}")
        out.append(line)
        top = plugin.opts.get("top", 5)
        if top:
            hungry = sorted(measured, key=lambda t: -t["energy_j"])[:top]
            out.append("most energy-hungry tests (energy of the call):")
            for t in hungry:
                flag = "  OVER BUDGET" if t.get("over") else ""
                out.append(f"  {mark(_j(t['energy_j']), how):>12}  {_dur(t['t1'] - t['t0']):>7}  "
                           f"{t['nodeid']}{flag}")
    over = [t for t in tests if t.get("over")]
    if over:
        out.append(f"{plural(len(over), 'test')} over {'its' if len(over) == 1 else 'their'} energy_budget marker")
    unchecked = [t for t in tests if t.get("budget") and t.get("energy_j") is None]
    if unchecked:
        out.append(f"{plural(len(unchecked), 'energy_budget marker')} not checked: no power was measured")
    if gs.store is not None:
        out.append(f"stored in {gs.store.location} (greentrack report --name {r.name!r})")
    return out


def _j(j: float) -> str:
    return f"{j * 1000:.1f} mJ" if abs(j) < 1 else fmt_energy(j)


def _dur(s: float) -> str:
    return f"{s * 1000:.0f}ms" if s < 1 else fmt_duration(s)


def _by_test(phases: Any, energy: Any) -> dict[str, float]:
    """``{test: joules}`` from phases given as rows or ``(name, t0, t1)``; *energy(t0, t1)*."""
    out: dict[str, float] = {}
    for p in phases:
        name, t0, t1 = (p["name"], p["started_at"], p["ended_at"]) if isinstance(p, dict) else p
        e = energy(t0, t1)
        if e is not None:
            out[name] = out.get(name, 0.0) + e
    return out


def _series_energy(series: dict[str, tuple[list[float], list[float]]]) -> Any:
    """*energy(t0, t1)* over a stored run's power series (all devices), None without one."""
    from ..measure.energy import cumulative_at, cumulative_from_averages

    curves = [(ts, cumulative_from_averages(ts, ps), ps[0], ps[-1]) for ts, ps in series.values() if ts]

    def energy(t0: float, t1: float) -> float | None:
        if not curves:
            return None
        return sum(cumulative_at(ts, cs, t1, p0, p1) - cumulative_at(ts, cs, t0, p0, p1) for ts, cs, p0, p1 in curves)

    return energy


def check_regression(gs: Any, result: Any, pct: float) -> tuple[str, dict[str, Any] | None]:
    """Compare the tests in common with the last stored finished run of the same suite.

    Both sides are integrated from the power series over each test's call, the same way (not
    reconciled to the counter, whose 10 Hz updates make short sessions' scale factors noisy).
    Returns ``(line, exceeded)``; *exceeded* is None when within ``+pct`` % or not comparable.
    """
    store = gs.store
    if store is None:
        return "energy_budget_regression not checked: the run is not stored", None
    if result.energy_j is None:
        return "energy_budget_regression not checked: no power was measured or modelled", None
    prev = None
    for row in store.list_runs(last=50, name=gs.name):
        tags = row.get("tags") if isinstance(row.get("tags"), dict) else {}
        if row["id"] != gs.id and row.get("status") == "finished" and tags.get("runner") == "pytest":
            prev = row
            break
    if prev is None:
        return f"no earlier run of suite {gs.name!r} to compare with; regression not checked", None
    if prev.get("backend") != gs.backend:
        return (f"the last run of {gs.name!r} ({prev['id']}) was measured with backend {prev.get('backend')!r}, "
                f"this one with {gs.backend!r}; regression not checked"), None
    old_run = store.get_run(prev["id"])
    old = _by_test(old_run["phases"], _series_energy(store.read_series(prev["id"])))
    new = _by_test(((p.name, p.started_at, p.ended_at) for p in result.phases),
                   lambda a, b: gs.energy_between(a, b))
    common = sorted(set(old) & set(new))
    if not common:
        return f"no test in common with run {prev['id']}; regression not checked", None
    a = sum(old[n] for n in common)
    b = sum(new[n] for n in common)
    if a <= 0:
        return f"the tests in common with run {prev['id']} used no energy then; regression not checked", None
    change = (b / a - 1.0) * 100.0
    worst = max(common, key=lambda n: new[n] - old[n])
    text = (f"the {plural(len(common), 'test')} in common with run {prev['id']} ({fmt_time(prev.get('started_at'))}) "
            f"used {fmt_energy(b)} against {fmt_energy(a)}: {change:+.1f}% (limit +{pct:g}%)")
    if change > pct:
        text = (f"energy regression: {text}; largest increase: {worst} ({fmt_energy(old[worst])} -> "
                f"{fmt_energy(new[worst])})")
        return text, {"budget": "energy_budget_regression", "limit": pct, "usage": change, "against": prev["id"]}
    return text, None


def pue_text(pue: float) -> str:
    """``PUE 1.5`` (``--greentrack-pue``, ini ``greentrack_pue``, ``GREENTRACK_PUE``, ``[tool.greentrack] pue``);
    ``PUE 1 (not applied)`` at the default."""
    return f"PUE {pue:g}" + (" (not applied)" if pue == 1.0 else "")
