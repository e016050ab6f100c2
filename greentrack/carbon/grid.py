"""Grid carbon intensity: the built-in static table, itself a plugin.

Data come from codecarbon's installed data files, read as files (codecarbon's tracker is never
imported): per-country intensity from ``global_energy_mix.json`` (Our World in Data / Ember
energy mix, year per entry) and the world average from ``carbon_intensity_per_source.json``.
Regions are ISO-3 or ISO-2 country codes or country names. Other data (hourly, live) come
from plugins implementing ``greentrack_grid_intensity``, which answer before this table.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Any

from ..errors import UnknownRegionError, suggest
from ..plugins import hookimpl

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class Intensity:
    """A grid intensity with where it comes from."""

    region: str
    g_per_kwh: float
    source: str
    year: int | None
    label: str = ""  # a person's name for the region
    fallback: bool = False  # True for the world average used when no region was given

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


def _codecarbon_version() -> str:
    try:
        import importlib.metadata as md

        return md.version("codecarbon")
    except Exception:
        return "?"


@functools.lru_cache(maxsize=1)
def world_average() -> Intensity:
    d = codecarbon_data_dir()
    if d is not None:
        try:
            data = json.loads((d / "private_infra" / "carbon_intensity_per_source.json").read_text())
            return Intensity("WORLD", float(data["world_average"]),
                             f"IEA Global Energy & CO2 Status Report 2019 via codecarbon {_codecarbon_version()}",
                             2019, "world average", fallback=True)
        except (OSError, KeyError, ValueError):
            pass
    # same figure, shipped in case codecarbon's file is missing
    return Intensity("WORLD", 475.0, "IEA Global Energy & CO2 Status Report 2019", 2019, "world average",
                     fallback=True)


@functools.lru_cache(maxsize=1)
def country_table() -> dict[str, Intensity]:
    """ISO-3 code -> Intensity, from codecarbon's global energy mix."""
    d = codecarbon_data_dir()
    out: dict[str, Intensity] = {}
    if d is None:
        return out
    try:
        mix = json.loads((d / "private_infra" / "global_energy_mix.json").read_text())
    except (OSError, ValueError):
        return out
    src = f"Our World in Data / Ember energy mix via codecarbon {_codecarbon_version()}"
    for code, row in mix.items():
        ci = row.get("carbon_intensity")
        if ci is None:
            continue
        out[code.upper()] = Intensity(code.upper(), float(ci), src, row.get("year"), row.get("country_name", code))
    return out


@functools.lru_cache(maxsize=1)
def iso2_to_iso3() -> dict[str, str]:
    return json.loads((DATA_DIR / "iso3166.json").read_text())["codes"]


def lookup_static(region: str) -> Intensity | None:
    """The static table's answer for *region*, or None."""
    table = country_table()
    key = region.strip()
    up = key.upper()
    if up in ("WORLD", "GLOBAL"):
        return world_average()
    if up in table:
        return table[up]
    if len(up) == 2 and up in iso2_to_iso3() and iso2_to_iso3()[up] in table:
        return table[iso2_to_iso3()[up]]
    low = key.lower()
    for it in table.values():
        if it.label.lower() == low:
            return it
    return None


def known_regions() -> list[str]:
    """Every code and name the static table answers to (for suggestions)."""
    table = country_table()
    return sorted(set(table) | {it.label for it in table.values()} | set(iso2_to_iso3()))


def lookup(region: str | None, at: float | None = None) -> Intensity:
    """Intensity for *region* through the plugins; None gives the labelled world average.

    Raises UnknownRegionError, with close matches, when no plugin knows the region.
    """
    if region is None or str(region).strip() == "":
        return world_average()
    from .. import plugins

    res = plugins.call("greentrack_grid_intensity", firstresult=True, region=str(region), at=at)
    if res is None:
        raise UnknownRegionError(f"unknown region {region!r}" + (suggest(str(region), known_regions())
                                 or "; see 'greentrack regions'"))
    return res


@hookimpl(trylast=True)
def greentrack_grid_intensity(region: str, at: float | None) -> Intensity | None:
    return lookup_static(region)
