"""The one formula: joules, PUE and grid intensity into kWh and CO2e.

    facility kWh = energy J / J_PER_KWH × PUE
    CO2e kg      = facility kWh × intensity gCO2e/kWh / 1000

Every figure greentrack shows (sessions, the pytest plugin, ``compare``, ``estimate``) comes
from :func:`operational`, so a change of formula is a change here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..units import J_PER_KWH


@dataclass(frozen=True)
class Operational:
    """Energy at the device (``it_kwh``), at the facility (``facility_kwh`` = × PUE) and its CO2e."""

    it_kwh: float
    pue: float
    facility_kwh: float
    intensity_g_per_kwh: float
    co2e_kg: float

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
