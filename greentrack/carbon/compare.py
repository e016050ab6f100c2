"""Replay a measured run under other scenarios: energy with PUE, operational and embodied CO2e, cost.

The measured IT energy (what the devices drew) and the GPU-hours (GPUs x duration) are kept;
each scenario supplies its PUE, grid, prices and embodied carbon::

    facility kWh   = measured kWh x PUE
    operational kg = facility kWh x grid gCO2e/kWh / 1000
    embodied kg    = GPU-hours x embodied kg per GPU / (lifetime hours x use rate)
    cost           = GPU-hours x price per GPU-hour                                  (cloud)
                   = facility kWh x electricity price + GPU-hours x hardware per GPU-hour   (on-prem)

``compare_run(run, names)`` gives a :class:`Comparison` (rows, cheapest, cleanest);
``render_text`` and ``render_html`` turn it into a table.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import GreentrackError
from ..format import table
from .scenarios import Catalogue, Scenario

J_PER_KWH = 3.6e6


@dataclass
class Row:
    """One scenario's replay of the run (all quantities for the whole run)."""

    scenario: str
    kind: str  # cloud, onprem, or measured
    description: str
    gpu_hours: float
    it_kwh: float
    pue: float
    facility_kwh: float
    intensity_g_per_kwh: float
    intensity_source: str
    operational_kg: float
    embodied_kg: float | None
    cost_usd: float | None
    cost_parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total_kg(self) -> float:
        return self.operational_kg + (self.embodied_kg or 0.0)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_kg"] = self.total_kg
        return d


@dataclass
class Comparison:
    """The measured run and its replay under each scenario."""

    run_id: str | None
    run_name: str | None
    energy_j: float
    duration_s: float
    n_gpus: int
    gpu_names: list[str]
    rows: list[Row]
    cheapest: str | None
    cleanest: str | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_name": self.run_name, "energy_j": self.energy_j,
                "duration_s": self.duration_s, "n_gpus": self.n_gpus, "gpu_names": self.gpu_names,
                "rows": [r.as_dict() for r in self.rows], "cheapest": self.cheapest, "cleanest": self.cleanest,
                "notes": self.notes}


def _gpu_family(name: str) -> str:
    return name.split("-")[0].upper()


def compare_run(run: Mapping[str, Any], scenario_names: Sequence[str | Scenario], *, files: Iterable[str | Path] = (),
                include_measured: bool = True) -> Comparison:
    """Replay *run* (a dict as ``Store.get_run`` returns it) under each scenario (a name or a Scenario).

    Raises :class:`~greentrack.errors.GreentrackError` (one line) when the run has no measured
    energy, and ``NotFoundError`` / ``ScenarioError`` for an unknown or invalid scenario.
    """
    energy_j = run.get("energy_j")
    rid = run.get("id")
    if energy_j is None:
        raise GreentrackError(f"run {rid or run.get('name')!r} has no measured energy: nothing to replay")
    duration_s = float(run.get("duration_s") or 0.0)
    gpus = [d for d in run.get("devices") or [] if d.get("kind") == "gpu"]
    n_gpus = len(gpus)
    notes: list[str] = []
    if n_gpus == 0:
        notes.append("the run recorded no GPU: GPU-hours (cost, embodied carbon) count one GPU")
    gpu_hours = max(n_gpus, 1) * duration_s / 3600.0
    it_kwh = float(energy_j) / J_PER_KWH
    names = [str(d.get("name") or "") for d in gpus]
    rows: list[Row] = []
    if include_measured:
        pue = float(run.get("pue") or 1.0)
        g = run.get("intensity_g_per_kwh")
        op = run.get("co2e_kg")
        if op is None and g is not None:
            op = it_kwh * pue * float(g) / 1000.0
        rows.append(Row("measured", "measured", f"as recorded (region {run.get('region') or 'none'})", gpu_hours,
                        it_kwh, pue, it_kwh * pue, float(g or 0.0), str(run.get("intensity_source") or "-"),
                        float(op or 0.0), None, None))
    if not scenario_names:
        raise GreentrackError("name at least one scenario (--scenario NAME); 'greentrack compare --list' lists them")
    cat = Catalogue.load(files) if any(isinstance(n, str) for n in scenario_names) else None
    mismatch: list[str] = []
    for name in scenario_names:
        sc = name if isinstance(name, Scenario) else cat.get(name)  # type: ignore[union-attr]
        it = sc.intensity()
        facility = it_kwh * sc.pue
        row_notes: list[str] = []
        if sc.gpu and names and not any(_gpu_family(sc.gpu) in n.upper() for n in names):
            mismatch.append(f"{sc.name} ({sc.gpu})")
        cost = sc.cost_usd(facility, gpu_hours)
        rows.append(Row(sc.name, sc.kind, sc.description, gpu_hours, it_kwh, sc.pue, facility, it.g_per_kwh,
                        it.describe(), facility * it.g_per_kwh / 1000.0, gpu_hours * sc.embodied_kg_per_gpu_hour(),
                        cost["total"], {k: v for k, v in cost.items() if k != "total"}, row_notes))
    if mismatch:
        notes.append(f"the run used {', '.join(sorted(set(names)))}; these scenarios price another GPU: "
                     f"{', '.join(mismatch)} (energy is replayed as measured)")
    scen = [r for r in rows if r.kind != "measured"]
    cheapest = min(scen, key=lambda r: (r.cost_usd if r.cost_usd is not None else float("inf"))).scenario if scen else None
    cleanest = min(scen, key=lambda r: r.total_kg).scenario if scen else None
    return Comparison(rid, run.get("name"), float(energy_j), duration_s, n_gpus, names, rows, cheapest, cleanest,
                      notes)


def compare(ref: str, scenario_names: Sequence[str], db: str | None = None,
            files: Iterable[str | Path] = ()) -> Comparison:
    """Load run *ref* (id, prefix, ``last``) from the store and :func:`compare_run` it."""
    from ..store import open_store

    if not scenario_names:
        raise GreentrackError("name at least one scenario (--scenario NAME); 'greentrack compare --list' lists them")
    cat = Catalogue.load(files)
    resolved = [cat.get(n) for n in scenario_names]  # bad scenarios are reported before the run is read
    store = open_store(db, create=False)
    try:
        run = store.get_run(ref)
    finally:
        close = getattr(store, "close", None)
        if close:
            close()
    return compare_run(run, resolved)


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
    from ..format import fmt_duration

    head = (f"run {c.run_id or '-'} {c.run_name or ''}: {_kwh(c.energy_j / J_PER_KWH)} kWh measured over "
            f"{fmt_duration(c.duration_s)} on {c.n_gpus} GPU(s) = {c.rows[0].gpu_hours if c.rows else 0:.4g} GPU-hours")
    out = [head, "", table(HEADERS, table_rows(c), right=set(range(2, len(HEADERS))))]
    out.append("")
    out.append(f"cheapest: {c.cheapest or '-'}    cleanest (operational + embodied): {c.cleanest or '-'}")
    for n in c.notes:
        out.append(f"note: {n}")
    for r in c.rows:
        for n in r.notes:
            out.append(f"note: {r.scenario}: {n}")
    if sources:
        out.append("")
        out.append("grid figures:")
        for r in c.rows:
            out.append(f"  {r.scenario}: {r.intensity_source}")
    return "\n".join(out)


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
