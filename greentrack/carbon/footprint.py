"""The one formula: joules, PUE and grid intensity into kWh and CO2e.

    facility kWh = energy J / J_PER_KWH × PUE
    CO2e kg      = facility kWh × intensity gCO2e/kWh / 1000

Every figure greentrack shows (sessions, the pytest plugin, ``compare``, ``estimate``) comes
from :func:`operational`, so a change of formula is a change here.
"""

from __future__ import annotations

from ..units import J_PER_KWH


class Operational:
    """Energy at the device (``it_kwh``), at the facility (``facility_kwh`` = × PUE) and its CO2e.

    Read-only. A plain class, not a frozen dataclass: the pytest plugin imports this module at every
    session's start, and a frozen dataclass's generated methods cost about 0.5 ms at import."""

    __slots__ = ("it_kwh", "pue", "facility_kwh", "intensity_g_per_kwh", "co2e_kg")
    it_kwh: float
    pue: float
    facility_kwh: float
    intensity_g_per_kwh: float
    co2e_kg: float

    def __init__(self, it_kwh: float, pue: float, facility_kwh: float, intensity_g_per_kwh: float,
                 co2e_kg: float) -> None:
        for name, value in zip(self.__slots__, (it_kwh, pue, facility_kwh, intensity_g_per_kwh, co2e_kg)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Operational is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Operational is read-only: cannot delete {name!r}")

    def _values(self) -> tuple[float, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"Operational({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"

    @property
    def co2e_g(self) -> float:
        return self.co2e_kg * 1000.0


def operational(energy_j: float, pue: float, intensity_g_per_kwh: float) -> Operational:
    """kWh and operational CO2e of *energy_j* joules measured at the device."""
    it_kwh = energy_j / J_PER_KWH
    facility = it_kwh * pue
    return Operational(it_kwh, pue, facility, intensity_g_per_kwh, facility * intensity_g_per_kwh / 1000.0)


def from_kwh(it_kwh: float, pue: float, intensity_g_per_kwh: float) -> Operational:
    """The same from device kWh (estimates work in kWh)."""
    return operational(it_kwh * J_PER_KWH, pue, intensity_g_per_kwh)
