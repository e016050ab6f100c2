"""Grid carbon intensity: the built-in static table, itself a plugin.

Data come from codecarbon's installed data files, read as files (codecarbon is never imported):

- countries: ``global_energy_mix.json`` (Our World in Data / Ember, year per entry), answering to
  ISO-3 and ISO-2 codes and country names; the world average from ``carbon_intensity_per_source.json``;
- US states ``US-CA``: EPA eGRID 2023 (``usa_emissions.json``, lbs/MWh converted to g/kWh);
- Canadian provinces ``CA-QC``: 2023 generation mix (``canada_energy_mix.json``) turned into an
  intensity the way codecarbon does it (fossil shares times combustion factors);
- Chinese provinces ``CN-BJ``: MEE/NBS 2023 factors; Nordic bidding zones ``SE1``-``SE4``, ``NO1``-``NO5``;
- cloud regions ``provider:region``: GCP regions from codecarbon's ``cloud/impact.csv`` (Google's
  2023 figures); AWS and Azure regions (and GCP regions missing there) through
  ``greentrack/data/cloud_regions.json``, which maps each region to its location and names its source.

Other data (hourly, live) come from plugins implementing ``greentrack_grid_intensity``, which
answer before this table.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .. import plugins as _plugins
from ..errors import UnknownRegionError, suggest
from ..lean_dataclass import LeanDataclass, lean_dataclass
from ..plugins import hookimpl

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237  # 1 lb = 0.45359237 kg; per MWh -> per kWh: kg/MWh == g/kWh
CLOUD_PROVIDERS = {"aws": "aws", "amazon": "aws", "azure": "azure", "microsoft": "azure", "gcp": "gcp",
                   "google": "gcp"}
CA_PROVINCES = {
    "alberta": "AB", "british columbia": "BC", "manitoba": "MB", "new brunswick": "NB",
    "newfoundland and labrador": "NL", "nova scotia": "NS", "northwest territories": "NT", "nunavut": "NU",
    "ontario": "ON", "prince edward island": "PE", "quebec": "QC", "saskatchewan": "SK", "yukon": "YT",
}


@lean_dataclass(frozen=True)
class Intensity(LeanDataclass):
    """A grid intensity with where it comes from. A frozen dataclass that writes its own ``__init__`` (see
    greentrack.lean_dataclass)."""

    region: str
    g_per_kwh: float
    source: str
    year: int | None
    label: str = ""  # a person's name for the region
    fallback: bool = False  # True for the world average used when no region was given
    kind: str = ""  # country, us-state, ca-province, cn-province, bidding-zone, cloud, world
    location: str = ""  # for cloud regions: the region key whose figure is used

    def __init__(self, region: str, g_per_kwh: float, source: str, year: int | None, label: str = "",
                 fallback: bool = False, kind: str = "", location: str = "") -> None:
        setattr_ = object.__setattr__
        setattr_(self, "region", region)
        setattr_(self, "g_per_kwh", g_per_kwh)
        setattr_(self, "source", source)
        setattr_(self, "year", year)
        setattr_(self, "label", label)
        setattr_(self, "fallback", fallback)
        setattr_(self, "kind", kind)
        setattr_(self, "location", location)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        yr = f", {self.year}" if self.year else ""
        return f"{self.g_per_kwh:.0f} gCO2e/kWh ({self.label or self.region}; {self.source}{yr})"


def codecarbon_data_dir() -> Path | None:
    """codecarbon's data folder, located without importing codecarbon."""
    try:
        spec = importlib.util.find_spec("codecarbon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if d.is_dir() else None


@functools.lru_cache(maxsize=1)
def _codecarbon_version() -> str:
    """codecarbon's version, read from its ``_version.py`` (no importlib.metadata: ~20 ms)."""
    d = codecarbon_data_dir()
    if d is not None:
        try:
            text = (d.parent / "_version.py").read_text(encoding="utf-8")
            m = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
            if m:
                return m.group(1)
        except OSError:
            pass
    try:
        import importlib.metadata as md

        return md.version("codecarbon")
    except Exception:
        return "?"


def _via() -> str:
    return f"via codecarbon {_codecarbon_version()}"


def _read_json(*parts: str) -> Any:
    d = codecarbon_data_dir()
    if d is None:
        return None
    try:
        return json.loads(d.joinpath(*parts).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def world_average() -> Intensity:
    data = _read_json("private_infra", "carbon_intensity_per_source.json")
    try:
        g = float(data["world_average"])
        src = f"IEA Global Energy & CO2 Status Report 2019 {_via()}"
    except (TypeError, KeyError, ValueError):
        g, src = 475.0, "IEA Global Energy & CO2 Status Report 2019"  # same figure, in case the file is missing
    return Intensity("WORLD", g, src, 2019, "world average", fallback=True, kind="world")


@functools.lru_cache(maxsize=1)
def country_table() -> dict[str, Intensity]:
    """ISO-3 code -> Intensity, from codecarbon's global energy mix."""
    mix = _read_json("private_infra", "global_energy_mix.json") or {}
    out: dict[str, Intensity] = {}
    src = f"Our World in Data / Ember energy mix {_via()}"
    for code, row in mix.items():
        ci = row.get("carbon_intensity") if isinstance(row, dict) else None
        if ci is None:
            continue
        out[code.upper()] = Intensity(code.upper(), float(ci), src, row.get("year"), row.get("country_name", code),
                                      kind="country")
    return out


@functools.lru_cache(maxsize=1)
def iso2_to_iso3() -> dict[str, str]:
    return json.loads((DATA_DIR / "iso3166.json").read_text())["codes"]


def _us_states() -> dict[str, Intensity]:
    data = _read_json("private_infra", "2023", "usa_emissions.json") or {}
    meta = data.get("_source", {}) if isinstance(data, dict) else {}
    src = f"{meta.get('name', 'EPA eGRID')} {_via()}"
    out = {}
    for name, row in data.items():
        if name.startswith("_") or not isinstance(row, dict) or len(str(row.get("regionCode", ""))) != 2:
            continue
        key = f"US-{row['regionCode'].upper()}"
        out[key] = Intensity(key, float(row["emissions"]) * LBS_PER_MWH_TO_G_PER_KWH, src, meta.get("year", 2023),
                             name.title(), kind="us-state")
    return out


def _ca_provinces() -> dict[str, Intensity]:
    """Provinces from their generation mix, as codecarbon computes them (fossil shares only)."""
    data = _read_json("private_infra", "2023", "canada_energy_mix.json") or {}
    factors = {"coal": 995.725971, "petroleum": 816.6885263, "naturalGas": 743.8415916}  # g/kWh, as codecarbon
    src = ("Canadian provincial generation mix 2023, fossil shares x combustion factors (coal 996, oil 817, "
           f"gas 744 g/kWh; responsibleproblemsolving/energy-usage) {_via()}")
    out = {}
    for name, mix in data.items():
        code = CA_PROVINCES.get(name.lower())
        if code is None or not isinstance(mix, dict) or not mix.get("total"):
            continue
        g = sum(mix.get(k, 0.0) / mix["total"] * f for k, f in factors.items())
        out[f"CA-{code}"] = Intensity(f"CA-{code}", g, src, 2023, name.title(), kind="ca-province")
    return out


def _cn_provinces() -> dict[str, Intensity]:
    data = _read_json("private_infra", "2023", "china_provincial_emissions.json") or {}
    meta = data.get("metadata", {})
    src = ("China MEE/NBS provincial electricity CO2 factors (announcement "
           f"{meta.get('announcement', '2025 No. 47')}; CO2 only) {_via()}")
    out = {}
    for code, row in (data.get("data") or {}).items():
        out[code.upper()] = Intensity(code.upper(), float(row["emission_factor"]), src, row.get("year"),
                                      row.get("description", code), kind="cn-province")
    return out


def _nordic_zones() -> dict[str, Intensity]:
    data = _read_json("private_infra", "nordic_emissions.json") or {}
    src = f"ENTSO-E generation per bidding zone, production-based {_via()}"
    out = {}
    for code, row in (data.get("data") or {}).items():
        if len(code) != 3:  # the FI entry duplicates the country
            continue
        out[code.upper()] = Intensity(code.upper(), float(row["emission_factor"]), src, row.get("year"),
                                      row.get("description", code), kind="bidding-zone")
    return out


@functools.lru_cache(maxsize=1)
def subdivision_table() -> dict[str, Intensity]:
    """US states, Canadian and Chinese provinces and Nordic bidding zones, by key (``US-CA``, ``SE3``)."""
    out: dict[str, Intensity] = {}
    for part in (_us_states, _ca_provinces, _cn_provinces, _nordic_zones):
        out.update(part())
    return out


@functools.lru_cache(maxsize=1)
def cloud_mapping() -> dict[str, Any]:
    """``greentrack/data/cloud_regions.json``: provider -> region -> location."""
    return json.loads((DATA_DIR / "cloud_regions.json").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def cloud_table() -> dict[str, Intensity]:
    """``provider:region`` -> Intensity, direct figures first, then regions mapped to their location."""
    out: dict[str, Intensity] = {}
    d = codecarbon_data_dir()
    if d is not None:
        try:
            with open(d / "cloud" / "impact.csv", newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
        except OSError:
            rows = []
        for row in rows:
            prov = (row.get("provider") or "").strip().lower()
            reg = (row.get("region") or "").strip().lower()
            try:
                g = float(row["impact"])
            except (KeyError, TypeError, ValueError):
                continue
            city = row.get("city") or row.get("country_name") or reg
            src = (f"{row.get('providerName') or prov} region grid carbon intensity 2023 ({row.get('source', '')}) "
                   f"{_via()}")
            it = Intensity(f"{prov}:{reg}", g, src, 2023, f"{prov.upper()} {reg} ({city})", kind="cloud")
            out[it.region] = it
    if "gcp:me-cenrtal1" in out and "gcp:me-central1" not in out:  # codecarbon's spelling, kept as an alias
        it = out["gcp:me-cenrtal1"]
        out["gcp:me-central1"] = replace(it, region="gcp:me-central1", label=it.label.replace("cenrtal", "central"))
    for prov, regions in cloud_mapping().items():
        if prov.startswith("_"):
            continue
        for reg, info in regions.items():
            key = f"{prov}:{reg}"
            if reg.startswith("_") or key in out:
                continue
            loc = _lookup_place(info["location"])
            if loc is None:
                continue
            where = regions["_source"].split(" (")[0]
            src = (f"{loc.source} [{loc.region}, {loc.year or 'year n/a'}]; region location per {where} "
                   f"{regions['_year']}")
            out[key] = Intensity(key, loc.g_per_kwh, src, loc.year,
                                 f"{prov.upper()} {reg} ({info.get('city', '')}, {loc.region})", kind="cloud",
                                 location=loc.region)
    return out


def _lookup_place(region: str) -> Intensity | None:
    """Country, subdivision or world entry for *region* (no cloud regions)."""
    key = region.strip()
    up = key.upper()
    if up in ("WORLD", "GLOBAL"):
        return world_average()
    sub = subdivision_table()
    if up in sub:
        return sub[up]
    table = country_table()
    if up in table:
        return table[up]
    if len(up) == 2 and up in iso2_to_iso3() and iso2_to_iso3()[up] in table:
        return table[iso2_to_iso3()[up]]
    low = key.lower()
    for group in (table, sub):  # country names win over subdivisions (Georgia)
        for it in group.values():
            if it.label.lower() == low:
                return it
    return None


def lookup_static(region: str) -> Intensity | None:
    """The static table's answer for *region*, or None."""
    key = region.strip()
    if ":" in key:
        prov, _, reg = key.partition(":")
        prov = CLOUD_PROVIDERS.get(prov.strip().lower(), prov.strip().lower())
        return cloud_table().get(f"{prov}:{reg.strip().lower()}")
    return _lookup_place(key)


def all_regions() -> list[Intensity]:
    """Every entry of the static table: world average, countries, subdivisions, cloud regions."""
    return [world_average(), *sorted(country_table().values(), key=lambda i: i.region),
            *sorted(subdivision_table().values(), key=lambda i: i.region),
            *sorted(cloud_table().values(), key=lambda i: i.region)]


def search_regions(query: str | None = None) -> list[Intensity]:
    """Entries whose key, name, kind or source contain *query* (case-insensitive); all without one.

    A query that is itself a known region (``FR``, ``fr``, ``US-CA``) also returns that entry first.
    """
    items = all_regions()
    if not query:
        return items
    q = query.strip().lower()
    exact = lookup_static(query)

    def match(it: Intensity) -> bool:
        label = it.label.lower()
        words = label.replace("(", " ").replace(",", " ").split()
        return (q in it.region.lower() or q == it.kind or any(w.startswith(q) for w in words)
                or (len(q) >= 4 and q in label))

    hits = [it for it in items if match(it)]
    if exact is not None:
        hits = [exact] + [h for h in hits if h.region != exact.region]
    return hits


def known_regions() -> list[str]:
    """Every code and name the static table answers to (for suggestions)."""
    table = country_table()
    sub = subdivision_table()
    iso2 = {code for code, iso3 in iso2_to_iso3().items() if iso3 in table}  # only codes the table answers
    return sorted(set(table) | {it.label for it in table.values()} | iso2 | set(sub)
                  | {it.label for it in sub.values()} | set(cloud_table()))


MAX_G_PER_KWH = 5000.0  # no grid emits more (lignite ~1,100 g/kWh): a larger answer is a unit mistake


def check_intensity(value: Any) -> Intensity:
    """A plugin's answer to ``greentrack_grid_intensity``, checked: an :class:`Intensity` whose figure is a
    finite number of gCO2e/kWh in [0, 5000] and whose source is named; else TypeError/ValueError."""
    if not isinstance(value, Intensity):
        raise TypeError(f"returned {type(value).__name__} {str(value)[:40]!r}, not a greentrack Intensity")
    g = value.g_per_kwh
    if isinstance(g, bool) or not isinstance(g, (int, float)):
        raise TypeError(f"returned an Intensity whose g_per_kwh is {type(g).__name__}, not a number")
    if not (0.0 <= g <= MAX_G_PER_KWH):  # NaN fails too
        raise ValueError(f"returned an Intensity of {g!r} gCO2e/kWh (expected 0 to {MAX_G_PER_KWH:.0f})")
    if not isinstance(value.region, str) or not isinstance(value.source, str) or not value.source.strip():
        raise ValueError("returned an Intensity without a region or a source (every figure names its source)")
    if value.year is not None and (isinstance(value.year, bool) or not isinstance(value.year, int)):
        raise TypeError(f"returned an Intensity whose year is {value.year!r}, not an integer")
    return value if isinstance(g, float) else replace(value, g_per_kwh=float(g))


def lookup(region: str | None, at: float | None = None) -> Intensity:
    """Intensity for *region* through the plugins; None gives the labelled world average.

    Raises UnknownRegionError, with close matches, when no plugin knows the region. A plugin
    that fails or answers something that is not a valid :class:`Intensity` is reported once and
    skipped (the next plugin, and last the static table, answers).
    """
    if region is None or str(region).strip() == "":
        return world_average()
    from .. import plugins
    from ..notify import warn_once

    try:
        res = plugins.hook().greentrack_grid_intensity(region=str(region), at=at)
    except Exception as exc:  # an old-style hookwrapper (not isolated by pluggy's design) that raised
        warn_once("greentrack_grid_intensity", "a hook wrapper", exc)
        res = None
    if res is not None:
        try:
            res = check_intensity(res)
        except (TypeError, ValueError) as exc:  # only a hookwrapper's forced result gets here
            warn_once("greentrack_grid_intensity", "a hook wrapper", exc)
            res = None
    if res is None:  # no plugin knew it, or a hook wrapper failed: the static table answers
        res = lookup_static(str(region))
    if res is None:
        if codecarbon_data_dir() is None and str(region).strip().upper() in iso2_to_iso3():
            raise UnknownRegionError(f"no grid intensity for region {region!r}: the regional figures come from "
                                     "codecarbon's data files, which were not found (pip install codecarbon)")
        raise UnknownRegionError(f"unknown region {region!r}" + (suggest(str(region), known_regions())
                                 or "; see 'greentrack regions'"))
    return res


@hookimpl(trylast=True)
def greentrack_grid_intensity(region: str, at: float | None) -> Intensity | None:
    return lookup_static(region)


_plugins.check_results("greentrack_grid_intensity", check_intensity)
