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

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import GreentrackError
from ..units import J_PER_KWH
from .footprint import operational
from .scenarios import Catalogue, Scenario


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
            op = operational(float(energy_j), pue, float(g)).co2e_kg
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
        op_fp = operational(float(energy_j), sc.pue, it.g_per_kwh)
        facility = op_fp.facility_kwh
        row_notes: list[str] = []
        if sc.gpu and names and not any(_gpu_family(sc.gpu) in n.upper() for n in names):
            mismatch.append(f"{sc.name} ({sc.gpu})")
        cost = sc.cost_usd(facility, gpu_hours)
        rows.append(Row(sc.name, sc.kind, sc.description, gpu_hours, it_kwh, sc.pue, facility, it.g_per_kwh,
                        it.describe(), op_fp.co2e_kg, gpu_hours * sc.embodied_kg_per_gpu_hour(),
                        cost["total"], {k: v for k, v in cost.items() if k != "total"}, row_notes))
    if mismatch:
        notes.append(f"the run used {', '.join(sorted(set(names)))}; these scenarios price another GPU: "
                     f"{', '.join(mismatch)} (energy is replayed as measured)")
    scen = [r for r in rows if r.kind != "measured"]
    cheapest = (min(scen, key=lambda r: r.cost_usd if r.cost_usd is not None else float("inf")).scenario
                if scen else None)
    cleanest = min(scen, key=lambda r: r.total_kg).scenario if scen else None
    return Comparison(rid, run.get("name"), float(energy_j), duration_s, n_gpus, names, rows, cheapest, cleanest,
                      notes)
