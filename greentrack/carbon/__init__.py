"""Grid carbon intensity, scenarios and estimates. Data files carry source and year."""

from __future__ import annotations

from typing import Callable

from ..plugins import hookimpl


class ScenarioHooks:
    """The built-in plugin ``greentrack.carbon.scenarios``: the shipped scenarios, registered without
    importing the catalogue's module until a scenario is asked for."""

    @staticmethod
    @hookimpl(tryfirst=True)
    def greentrack_register_scenarios(register: Callable[..., None]) -> None:
        from .scenarios import greentrack_register_scenarios as shipped

        shipped(register)
