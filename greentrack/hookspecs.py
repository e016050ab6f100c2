"""The whole extension contract of greentrack.

A plugin is a module or object with functions marked ``@greentrack.hookimpl`` whose names
match the specs below. Plugins are found through the ``greentrack`` entry-point group, or
registered in code with ``greentrack.plugins.register(obj)``. Hooks are called through
pluggy (``pm.hook``), so ``firstresult``, ``tryfirst``/``trylast`` and ``wrapper=True`` work as
pluggy documents. Built-in behaviour (the NVML,
RAPL and mock sources, the grid-intensity table, the scenario catalogue) is written as plugins
too, registered first, so a third-party plugin takes the same path and can override them.

No hook runs per training step. A hook implementation that raises is reported once (one
line on stderr) and skipped; it never breaks the user's training loop.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("greentrack")


@hookspec
def greentrack_register_sources(register: Callable[..., None]) -> None:
    """Register power sources.

    Call ``register(name, factory, priority=0, auto=True, fallback=False)`` for each source.
    ``factory(settings)`` returns an object implementing
    :class:`greentrack.measure.sources.base.Source`; it may raise
    :class:`greentrack.measure.sources.base.SourceUnavailable` when its hardware is absent. With
    ``backend="auto"`` every source with ``auto=True`` is tried, highest priority first; a
    ``fallback=True`` source (a model, not a measurement, such as ``cpu-model``) only when no
    other source measures anything.
    A factory that raises anything else, or returns something that is not a usable source, is
    reported once and skipped (``auto``) or is a one-line configuration error (a backend named
    explicitly). A source named in the backend setting is used whatever its ``auto``.
    """


@hookspec(firstresult=True)
def greentrack_grid_intensity(region: str, at: float | None) -> Any:
    """Return the grid carbon intensity for *region* at unix time *at* (None: typical).

    Answer a :class:`greentrack.carbon.grid.Intensity` (g CO2e per kWh, with source and year)
    or None when the region is not yours. The first non-None answer wins; the built-in
    static table answers last (``trylast``), so any plugin can override it. An answer that is
    not an ``Intensity`` with a finite figure in [0, 5000] and a named source is reported once
    and skipped, as if the plugin had raised.
    """


@hookspec
def greentrack_register_scenarios(register: Callable[..., None]) -> None:
    """Register cloud / on-prem scenarios: ``register(scenario, name=None)`` for each.

    *scenario* is a :class:`greentrack.carbon.scenarios.Scenario` or a dict of its fields (PUE,
    grid region, prices, embodied carbon, each figure with its source and year); a registration
    under an existing name overrides it key by key. A registration that leaves a scenario
    unusable (a missing or out-of-range figure, a wrong type) is reported once and undone.
    """


@hookspec
def greentrack_session_start(run: Any) -> None:
    """Called when a session starts, after its sources are open and its run id is known.

    *run* is a :class:`greentrack.measure.view.RunView`: a read-only view of the run (id, name,
    tags, devices, live energy, phases so far), the same object in every hook of that run.
    """


@hookspec
def greentrack_samples(run: Any, batch: Any) -> None:
    """Called from the sampler thread at each flush with the new samples.

    *batch* is a list of ``(device_key, times_s, powers_w)`` tuples. Exporters live here.
    """


@hookspec
def greentrack_session_end(run: Any, result: Any) -> None:
    """Called when a session ends, after its totals are computed and stored.

    *result* is the run's :class:`greentrack.measure.result.RunResult`.
    """


@hookspec
def greentrack_budget_exceeded(run: Any, budget: Any, usage: Any) -> None:
    """Called once when a live budget of *run* is crossed.

    *budget* is ``{"budget": "energy_kwh" | "co2e_kg", "limit": ..., "usage": ...}``; *usage* has
    both ``energy_kwh`` and ``co2e_kg`` so far.
    """


@hookspec
def greentrack_register_commands(cli: Any) -> None:
    """Add commands to the ``greentrack`` CLI: *cli* is its ``click.Group``."""
