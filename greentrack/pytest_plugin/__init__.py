"""pytest plugin: measure each test and the whole session, fail the build over an energy budget.

Installed with greentrack (entry point ``pytest11``, name ``greentrack``; ``-p no:greentrack``
disables it). Until enabled it only registers its options, ini keys, marker and fixture: the
measuring part (:mod:`greentrack.pytest_plugin.energy`) is imported and registered only when one of
these is given:

- ``--greentrack`` or the ini key ``greentrack = true``;
- a session budget: ``--energy-budget-kwh``, ``--energy-budget-co2e-g``,
  ``--energy-budget-regression`` or the ini keys of the same names (``energy_budget_kwh``...).

Per-test budgets use the marker ``@pytest.mark.energy_budget(kwh=..., co2e_g=..., joules=...)``;
the fixture ``greentrack_energy`` gives a test its own measurement.
"""

from __future__ import annotations

from typing import Any

import pytest

ACTIVE_NAME = "greentrack-energy"  # name of the measuring plugin object once registered

# (command-line dest, ini key, what it is) for the session budgets
_BUDGETS = (
    ("energy_budget_kwh", "energy_budget_kwh", "kWh"),
    ("energy_budget_co2e_g", "energy_budget_co2e_g", "gCO2e"),
    ("energy_budget_regression", "energy_budget_regression", "%"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the options and ini keys (cheap: nothing is measured here)."""
    g = parser.getgroup("greentrack", "energy budgets (greentrack)")
    g.addoption("--greentrack", action="store_true", default=False,
                help="measure the energy of each test and of the session, store the run, print a summary")
    g.addoption("--energy-budget-kwh", type=float, default=None, metavar="KWH",
                help="fail the session when the devices used more than KWH kWh (enables greentrack)")
    g.addoption("--energy-budget-co2e-g", type=float, default=None, metavar="G",
                help="fail the session when its emissions exceed G grams CO2e (enables greentrack)")
    g.addoption("--energy-budget-regression", type=float, default=None, metavar="PCT",
                help="fail when the tests in common with the last stored run of this suite used more than "
                     "PCT %% more energy (enables greentrack)")
    g.addoption("--greentrack-top", type=int, default=None, metavar="N",
                help="how many of the most energy-hungry tests the summary lists (default 5)")
    g.addoption("--greentrack-name", default=None, metavar="NAME",
                help="run name of this suite in the database (default: the rootdir's name)")
    parser.addini("greentrack", type="bool", default=False,
                  help="measure every pytest session with greentrack (as --greentrack)")
    parser.addini("energy_budget_kwh", type="float", default=None, help="session energy budget in kWh")
    parser.addini("energy_budget_co2e_g", type="float", default=None, help="session budget in grams CO2e")
    parser.addini("energy_budget_regression", type="float", default=None,
                  help="allowed energy increase in percent against the last stored run of this suite")
    parser.addini("greentrack_top", type="string", default="5", help="tests listed in the energy summary")
    parser.addini("greentrack_name", type="string", default="", help="run name of this suite in the database")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; register the measuring plugin only when greentrack is enabled."""
    config.addinivalue_line(
        "markers",
        "energy_budget(kwh=None, co2e_g=None, joules=None): fail the test when its call uses more "
        "energy or CO2e than this (checked when greentrack is enabled)",
    )
    opts = _resolve(config)
    if opts is None:
        return
    from .energy import EnergyPlugin

    config.pluginmanager.register(EnergyPlugin(config, opts), ACTIVE_NAME)


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except (ValueError, TypeError, pytest.UsageError) as exc:
        raise pytest.UsageError(f"greentrack: bad value for ini option {name}: {exc}") from None


def _resolve(config: pytest.Config) -> dict[str, Any] | None:
    """The plugin's settings when enabled, else None. Bad values are a one-line usage error."""
    opt = config.option
    budgets: dict[str, float | None] = {}
    for dest, ini, unit in _BUDGETS:
        val = getattr(opt, dest, None)
        src = "--" + dest.replace("_", "-")
        if val is None:
            val = _ini(config, ini)
            src = ini
        if val is not None:
            val = float(val)
            if not (val >= 0 and val != float("inf")):
                raise pytest.UsageError(f"greentrack: {src} must be a finite number >= 0 ({unit}), got {val}")
        budgets[dest] = val
    enabled = bool(opt.greentrack) or any(v is not None for v in budgets.values()) or bool(_ini(config, "greentrack"))
    if not enabled:
        return None
    top = opt.greentrack_top
    if top is None:
        raw = _ini(config, "greentrack_top")
        try:
            top = int(raw)
        except (TypeError, ValueError):
            raise pytest.UsageError(f"greentrack: greentrack_top must be a whole number, got {raw!r}") from None
    if top < 0:
        raise pytest.UsageError(f"greentrack: --greentrack-top must be >= 0, got {top}")
    name = opt.greentrack_name or _ini(config, "greentrack_name") or config.rootpath.name or "pytest"
    return dict(budgets, top=top, name=str(name))


@pytest.fixture
def greentrack_energy(request: pytest.FixtureRequest) -> Any:
    """The current test's energy measurement (a :class:`greentrack.pytest_plugin.energy.TestEnergy`).

    ``energy_j`` reads the energy used since the test's call began (live while it runs);
    ``enabled`` is False, and the figures None, when greentrack is not enabled.
    """
    plugin = request.config.pluginmanager.get_plugin(ACTIVE_NAME)
    if plugin is None:
        from .energy import TestEnergy

        return TestEnergy(request.node.nodeid, None)
    return plugin.measurement(request.node)
