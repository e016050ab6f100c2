"""Scenarios: where a job could run (a cloud region, an on-prem data centre) and what that implies.

A scenario holds a PUE, a grid (a region of the intensity table, or a fixed figure), a price
(per GPU-hour for cloud; electricity per kWh plus hardware amortised over its life for on-prem)
and the embodied carbon of the hardware amortised over its life. Every figure is a
:class:`Figure` with its source and year.

Definitions come, in this order (later ones override earlier ones by name, key by key):

1. the shipped ``greentrack/data/scenarios.json`` (registered by this module, a built-in plugin);
2. plugins implementing ``greentrack_register_scenarios(register)``;
3. ``[tool.greentrack.scenarios.NAME]`` tables and ``[tool.greentrack] scenario_files``;
4. files given explicitly (``--scenarios FILE``), TOML or JSON.

A definition may ``extends`` another one. A scenario marked ``template`` also answers to
``NAME:<region>`` (``onprem:DE``, ``aws:eu-west-1``): the same figures on that region's grid.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, overload

from ..errors import ConfigError, NotFoundError, suggest
from .grid import DATA_DIR, Intensity

HOURS_PER_YEAR = 8760.0
KINDS = ("cloud", "onprem")

# figure name -> (unit, lower bound, upper bound or None)
FIGURES: dict[str, tuple[str, float, float | None]] = {
    "pue": ("", 1.0, 5.0),
    "intensity_g_per_kwh": ("gCO2e/kWh", 0.0, 3000.0),
    "price_per_gpu_hour": ("USD/GPU-h", 0.0, None),
    "electricity_usd_per_kwh": ("USD/kWh", 0.0, None),
    "hardware_usd_per_gpu": ("USD", 0.0, None),
    "hardware_lifetime_years": ("years", 0.01, None),
    "hardware_use_rate": ("", 0.01, 1.0),
    "embodied_kg_per_gpu": ("kgCO2e", 0.0, None),
    "embodied_lifetime_years": ("years", 0.01, None),
    "embodied_use_rate": ("", 0.01, 1.0),
}
KIND_NAMES = {"cloud": "a cloud", "onprem": "an on-prem"}
TEXT_KEYS = {"kind", "description", "gpu", "region", "extends", "template", "abstract", "name"}
REQUIRED = {
    "cloud": ("pue", "price_per_gpu_hour", "embodied_kg_per_gpu", "embodied_lifetime_years"),
    "onprem": ("pue", "electricity_usd_per_kwh", "hardware_usd_per_gpu", "hardware_lifetime_years",
               "embodied_kg_per_gpu", "embodied_lifetime_years"),
}


class ScenarioError(ConfigError):
    """A scenario definition that cannot be used: missing or bad field, unknown parent."""


@dataclass(frozen=True)
class Figure:
    """A number with where it comes from."""

    value: float
    source: str
    year: int | None = None

    def describe(self) -> str:
        return f"{self.source}{f', {self.year}' if self.year else ''}"


@dataclass(frozen=True)
class Scenario:
    """A place to run GPU work, with every figure sourced. Build through :meth:`Catalogue.get`."""

    name: str
    kind: str
    description: str
    figures: Mapping[str, Figure]
    region: str | None = None
    gpu: str | None = None
    origin: str = "built-in"
    template: bool = False

    @overload
    def value(self, name: str, default: float) -> float: ...

    @overload
    def value(self, name: str, default: None = None) -> float | None: ...

    def value(self, name: str, default: float | None = None) -> float | None:
        """The figure's value, or *default* when the scenario does not give it."""
        f = self.figures.get(name)
        return default if f is None else f.value

    @property
    def pue(self) -> float:
        return float(self.figures["pue"].value)

    def intensity(self) -> Intensity:
        """Grid intensity: the fixed figure if the scenario has one, else its region's entry."""
        fixed = self.figures.get("intensity_g_per_kwh")
        if fixed is not None:
            return Intensity(self.region or self.name, fixed.value, fixed.source, fixed.year,
                             f"{self.name} (fixed)")
        from . import grid

        return grid.lookup(self.region)

    def embodied_kg_per_gpu_hour(self) -> float:
        """Embodied carbon of one GPU (with its server share) spread over its used hours."""
        life_h = self.value("embodied_lifetime_years", 1.0) * HOURS_PER_YEAR * self.value("embodied_use_rate", 1.0)
        return self.value("embodied_kg_per_gpu", 0.0) / life_h

    def hardware_usd_per_gpu_hour(self) -> float:
        """On-prem: purchase price of one GPU spread over its used hours (0 for cloud)."""
        if self.kind != "onprem":
            return 0.0
        life_h = self.value("hardware_lifetime_years", 1.0) * HOURS_PER_YEAR * self.value("hardware_use_rate", 1.0)
        return self.value("hardware_usd_per_gpu", 0.0) / life_h

    def cost_usd(self, facility_kwh: float, gpu_hours: float) -> dict[str, float]:
        """Cost of a job: ``{"total", "gpu_hours"|"electricity"+"hardware"}`` in USD."""
        if self.kind == "cloud":
            c = gpu_hours * self.value("price_per_gpu_hour", 0.0)
            return {"total": c, "instances": c}
        elec = facility_kwh * self.value("electricity_usd_per_kwh", 0.0)
        hw = gpu_hours * self.hardware_usd_per_gpu_hour()
        return {"total": elec + hw, "electricity": elec, "hardware": hw}

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description, "region": self.region,
                "gpu": self.gpu, "origin": self.origin, "template": self.template,
                "figures": {k: {"value": f.value, "source": f.source, "year": f.year} for k, f in self.figures.items()}}


# --------------------------------------------------------------------------- definitions


@functools.lru_cache(maxsize=1)
def shipped() -> dict[str, dict[str, Any]]:
    """The scenarios of ``greentrack/data/scenarios.json`` as raw definitions."""
    return json.loads((DATA_DIR / "scenarios.json").read_text(encoding="utf-8"))["scenarios"]


def greentrack_register_scenarios(register: Callable[..., None]) -> None:
    """The shipped scenarios (registered through :class:`greentrack.carbon.ScenarioHooks`, which does not
    import this module until a scenario is asked for)."""
    for name, raw in shipped().items():
        register(raw, name=name)


def read_scenario_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Definitions from a TOML or JSON file: ``{"scenarios": {NAME: {...}}}`` or ``{NAME: {...}}``."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario file {p} is not UTF-8 text") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib

            data = tomllib.loads(text)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ScenarioError(f"cannot parse scenario file {p}: {first}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario file {p}: expected a table of scenarios")
    table = data.get("scenarios", data)
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ScenarioError(f"scenario file {p}: each scenario must be a table ([scenarios.NAME])")
    return table


def _merge(into: dict[str, tuple[dict[str, Any], str]], name: str, raw: Mapping[str, Any], origin: str) -> None:
    if name in into:
        base, _ = into[name]
        merged = {**base, **raw}
        into[name] = (merged, origin)
    else:
        into[name] = (dict(raw), origin)


def definitions(files: Iterable[str | Path] = (), conf: Mapping[str, Any] | None = None
                ) -> dict[str, tuple[dict[str, Any], str]]:
    """Every raw definition by name, with the origin of its last change."""
    from .. import plugins

    out: dict[str, tuple[dict[str, Any], str]] = {}
    pm = plugins.get_plugin_manager()
    names = [impl.plugin_name for impl in reversed(pm.hook.greentrack_register_scenarios.get_hookimpls())]
    for plugin_name in names:  # one plugin at a time, through pluggy, so each change keeps its origin
        origin = "built-in" if plugin_name == __name__ else f"plugin {plugin_name}"
        before = dict(out)
        touched: list[str] = []

        def register(scenario: Any, name: str | None = None, _origin: str = origin,
                     _plugin: str = plugin_name, _touched: list[str] = touched) -> None:
            try:
                nm, raw = _registration(scenario, name)
            except ScenarioError as exc:  # one bad registration: reported, the plugin's others still count
                from ..notify import warn_once

                warn_once(_plugin, f"greentrack_register_scenarios ({str(name or '?')[:40]})", exc)
                return
            _merge(out, nm, raw, _origin)
            _touched.append(nm)

        others = [p for n, p in pm.list_name_plugin() if n != plugin_name]
        pm.subset_hook_caller("greentrack_register_scenarios", remove_plugins=others)(register=register)
        if plugin_name != __name__:
            _drop_invalid(out, before, touched, plugin_name)
    if conf is None:
        from ..settings import load_tool_config

        conf = load_tool_config()
    root = Path(str(conf.get("_root", ".")))
    table = conf.get("scenarios") or {}
    if not isinstance(table, Mapping):
        raise ScenarioError("[tool.greentrack] scenarios must be a table of scenarios "
                            "([tool.greentrack.scenarios.NAME])")
    for name, raw in table.items():
        if not isinstance(raw, Mapping):
            raise ScenarioError(f"[tool.greentrack.scenarios.{name}] must be a table")
        _merge(out, str(name), raw, "pyproject.toml")
    conf_files = conf.get("scenario_files") or []
    if isinstance(conf_files, str):
        conf_files = [conf_files]
    paths = [p if Path(p).is_absolute() else root / p for p in map(str, conf_files)] + [Path(f) for f in files]
    for p in paths:
        for name, raw in read_scenario_file(p).items():
            _merge(out, str(name), raw, str(p))
    return out


def _registration(scenario: Any, name: Any) -> tuple[str, dict[str, Any]]:
    """What a plugin's ``register(scenario, name)`` call means: ``(name, raw definition)``, or ScenarioError."""
    if isinstance(scenario, Scenario):
        raw = {"kind": scenario.kind, "description": scenario.description, "region": scenario.region,
               "gpu": scenario.gpu, "template": scenario.template,
               **{k: {"value": f.value, "source": f.source, "year": f.year} for k, f in scenario.figures.items()}}
        nm = name or scenario.name
    elif isinstance(scenario, Mapping):
        raw, nm = dict(scenario), name or scenario.get("name")
    else:
        raise ScenarioError(f"register() takes a Scenario or a dict, got {type(scenario).__name__}")
    if not nm or not isinstance(nm, str):
        raise ScenarioError(f"a registered scenario needs a name (a string), got {nm!r:.40}")
    if not all(isinstance(k, str) for k in raw):
        raise ScenarioError(f"scenario {nm!r}: field names must be strings")
    raw.pop("name", None)
    return nm, {k: v for k, v in raw.items() if v is not None}


def _drop_invalid(out: dict[str, tuple[dict[str, Any], str]], before: Mapping[str, tuple[dict[str, Any], str]],
                  touched: list[str], plugin_name: str) -> None:
    """Undo each change of one plugin that leaves a scenario unusable; the plugin is reported once.

    A definition is checked as the catalogue would use it (resolved through ``extends`` and
    built); an abstract one only for its figures. A bad plugin can so never make a shipped
    scenario, or the whole catalogue, unusable.
    """
    from ..notify import warn_once

    for nm in dict.fromkeys(touched):
        raw, _origin = out[nm]
        try:
            if raw.get("abstract"):
                for k in FIGURES:
                    if k in raw:
                        _figure(nm, k, raw[k], _origin, strict=False)
            else:
                merged, origin = _resolve(nm, out)
                build(nm, merged, origin, region=merged.get("region") if merged.get("template") else None)
        except (ScenarioError, TypeError, ValueError, RecursionError) as exc:
            warn_once(plugin_name, f"greentrack_register_scenarios ({nm[:40]})", exc)
            if nm in before:
                out[nm] = before[nm]
            else:
                del out[nm]


def _figure(name: str, field_name: str, raw: Any, origin: str, strict: bool) -> Figure:
    where = f"scenario {name!r} ({origin})"
    if isinstance(raw, Mapping):
        if "value" not in raw:
            raise ScenarioError(f"{where}: {field_name} needs a 'value'")
        value, source, year = raw["value"], raw.get("source"), raw.get("year")
    else:
        value, source, year = raw, None, None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: {field_name} must be a number, got {value!r}")
    _, lo, hi = FIGURES[field_name]
    if value < lo or (hi is not None and value > hi) or (lo == 0.0 and value < 0):
        rng = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        raise ScenarioError(f"{where}: {field_name} = {value!r} must be {rng}")
    if strict and (not source or not year):
        raise ScenarioError(f"{where}: {field_name} must name its source and year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
        raise ScenarioError(f"{where}: {field_name} year must be an integer, got {year!r}")
    return Figure(float(value), str(source) if source else f"set in {origin}", year)


def _resolve(name: str, defs: Mapping[str, tuple[dict[str, Any], str]], seen: tuple[str, ...] = ()
             ) -> tuple[dict[str, Any], str]:
    raw, origin = defs[name]
    parent = raw.get("extends")
    if not parent:
        return dict(raw), origin
    if not isinstance(parent, str):
        raise ScenarioError(f"scenario {name!r} ({origin}): 'extends' must name a scenario, got {parent!r:.40}")
    if parent in seen or parent == name:
        raise ScenarioError(f"scenario {name!r} ({origin}): 'extends' loops through {parent!r}")
    if parent not in defs:
        raise ScenarioError(f"scenario {name!r} ({origin}): extends unknown scenario {parent!r}"
                            + suggest(str(parent), list(defs)))
    base, _ = _resolve(str(parent), defs, seen + (name,))
    for k in ("template", "abstract"):
        base.pop(k, None)
    merged = {**base, **{k: v for k, v in raw.items() if k != "extends"}}
    return merged, origin


def build(name: str, raw: Mapping[str, Any], origin: str = "built-in", region: str | None = None) -> Scenario:
    """Validate a resolved definition into a :class:`Scenario` (one clear line on any problem)."""
    where = f"scenario {name!r} ({origin})"
    unknown = [k for k in raw if k not in FIGURES and k not in TEXT_KEYS]
    if unknown:
        raise ScenarioError(f"{where}: unknown field {unknown[0]!r}"
                            + suggest(unknown[0], list(FIGURES) + sorted(TEXT_KEYS)))
    kind = raw.get("kind")
    if kind is None:
        raise ScenarioError(f"{where}: missing field 'kind' (cloud or onprem)")
    if kind not in KINDS:
        raise ScenarioError(f"{where}: kind must be cloud or onprem, got {kind!r}")
    for req in REQUIRED[kind]:
        if req not in raw:
            raise ScenarioError(f"{where}: missing field {req!r} ({KIND_NAMES[kind]} scenario needs "
                                + ", ".join(REQUIRED[kind]) + ")")
    reg = region or raw.get("region")
    if not reg and "intensity_g_per_kwh" not in raw:
        raise ScenarioError(f"{where}: missing field 'region' (or 'intensity_g_per_kwh')")
    strict = origin == "built-in"
    figures = {k: _figure(name, k, raw[k], origin, strict) for k in FIGURES if k in raw}
    return Scenario(name=name, kind=kind, description=str(raw.get("description", "")), figures=figures,
                    region=str(reg) if reg else None, gpu=raw.get("gpu"), origin=origin,
                    template=bool(raw.get("template")))


@dataclass
class Catalogue:
    """Every scenario definition known to this process (plus the given files)."""

    defs: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)

    @classmethod
    def load(cls, files: Iterable[str | Path] = (), conf: Mapping[str, Any] | None = None) -> "Catalogue":
        return cls(definitions(files, conf))

    def names(self) -> list[str]:
        """Usable names (abstract definitions left out); templates listed as ``NAME:<region>`` too."""
        return [n for n, (raw, _) in self.defs.items() if not raw.get("abstract")]

    def get(self, name: str) -> Scenario:
        """The scenario *name*; ``TEMPLATE:<region>`` instantiates a template on that region's grid."""
        if name not in self.defs:
            name = name.strip()
        if name in self.defs and not self.defs[name][0].get("abstract"):
            raw, origin = _resolve(name, self.defs)
            return build(name, raw, origin)
        prefix, sep, where = name.partition(":")
        if sep and prefix in self.defs:
            raw, origin = _resolve(prefix, self.defs)
            if raw.get("template"):
                base_region = str(raw.get("region") or "")
                region = f"{base_region.split(':')[0]}:{where}" if ":" in base_region else where
                from . import grid

                grid.lookup(region)  # an unknown region is an error here, with close matches
                sc = build(name, {**raw, "template": False}, origin, region=region)
                desc = f"{sc.description} (template {prefix!r} on the {region} grid)"
                return Scenario(sc.name, sc.kind, desc, sc.figures, sc.region, sc.gpu, sc.origin, False)
        templates = [f"{n}:<region>" for n, (raw, _) in self.defs.items() if raw.get("template")]
        raise NotFoundError(f"unknown scenario {name!r}" + (suggest(name, self.names()) or
                            f"; known: {', '.join(self.names()[:8])}, or {', '.join(templates)}"))

    def all(self, strict: bool = True) -> list[Scenario]:
        """Every usable scenario, validated (with *strict* False, invalid ones are skipped)."""
        out = []
        for n in self.names():
            try:
                out.append(self.get(n))
            except ConfigError:
                if strict:
                    raise
        return out
