"""pytest plugin: measure each test and the whole session, fail the build over an energy budget.

Installed with greentrack (entry point ``pytest11``, name ``greentrack``; ``-p no:greentrack``
disables it). Until enabled it only registers its options, ini keys, marker and fixture, and
after collection looks for tests that need it: the measuring part
(:mod:`greentrack.pytest_plugin.energy`) is imported and registered only when

- ``--greentrack`` or the ini key ``greentrack = true`` is given;
- a session budget, a baseline or an output is asked for: ``--energy-budget-kwh``,
  ``--energy-budget-co2e-g``, ``--energy-budget-regression``, ``--energy-baseline``,
  ``--energy-baseline-save``, ``--greentrack-json`` or their ini keys;
- or a collected test carries the ``energy_budget`` marker or uses the ``greentrack_energy``
  fixture: a budget is never silently ignored (measuring then starts after collection).

Per-test budgets use the marker ``@pytest.mark.energy_budget(kwh=..., co2e_g=..., joules=...)``;
the fixture ``greentrack_energy`` gives a test its own measurement. Where a budget cannot be
checked (nothing measures or models power), the summary says so, and ``--energy-budget-strict``
(ini ``energy_budget_strict``) makes that a failure. CO2e is energy x PUE x the grid intensity of the
session's region; ``--greentrack-pue`` (ini ``greentrack_pue``) sets the PUE, else ``GREENTRACK_PUE`` or
``[tool.greentrack] pue``, else 1.0 (not applied). See docs/pytest-ci.md.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

ACTIVE_NAME = "greentrack-energy"  # name of the measuring plugin object once registered
MARKER = "energy_budget"
FIXTURE = "greentrack_energy"

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
                help="allowed energy increase in percent: per test and in total against --energy-baseline "
                     "(default there: 60), else against the last stored run of this suite (enables greentrack)")
    g.addoption("--energy-baseline", default=None, metavar="PATH",
                help="compare each test and the total with the baseline JSON file PATH, committed in the "
                     "repository (enables greentrack)")
    g.addoption("--energy-baseline-save", default=None, metavar="PATH",
                help="write this run's per-test energies into the baseline JSON file PATH (created or updated; "
                     "other hardware's entries are kept)")
    g.addoption("--energy-budget-strict", action="store_true", default=None,
                help="fail where a budget, marker or baseline cannot be checked (nothing measured, no baseline "
                     "for this hardware)")
    g.addoption("--greentrack-json", default=None, metavar="PATH",
                help="write the session, each test's energy and the checks as JSON to PATH (a CI artifact)")
    g.addoption("--greentrack-top", type=int, default=None, metavar="N",
                help="how many of the most energy-hungry tests the summary lists (default 5)")
    g.addoption("--greentrack-name", default=None, metavar="NAME",
                help="run name of this suite in the database (default: the rootdir's name)")
    g.addoption("--greentrack-pue", default=None, metavar="PUE",
                help="power usage effectiveness of the data centre, a number >= 1.0: CO2e (per test, session, "
                     "--energy-budget-co2e-g) is energy x PUE x grid intensity (default: GREENTRACK_PUE, "
                     "[tool.greentrack] pue, else 1.0: not applied)")
    parser.addini("greentrack", type="bool", default=False,
                  help="measure every pytest session with greentrack (as --greentrack)")
    parser.addini("energy_budget_kwh", type="float", default=None, help="session energy budget in kWh")
    parser.addini("energy_budget_co2e_g", type="float", default=None, help="session budget in grams CO2e")
    parser.addini("energy_budget_regression", type="float", default=None,
                  help="allowed energy increase in percent against the baseline or the last stored run")
    parser.addini("energy_baseline", type="string", default="",
                  help="baseline JSON file to compare with (relative to the rootdir)")
    parser.addini("energy_budget_strict", type="bool", default=False,
                  help="fail where a budget cannot be checked (as --energy-budget-strict)")
    parser.addini("greentrack_json", type="string", default="", help="write the energy report as JSON here")
    parser.addini("greentrack_top", type="string", default="5", help="tests listed in the energy summary")
    parser.addini("greentrack_name", type="string", default="", help="run name of this suite in the database")
    parser.addini("greentrack_pue", type="string", default="",
                  help="power usage effectiveness applied to CO2e, a number >= 1.0 (default 1.0: not applied)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; register the measuring plugin only when greentrack is enabled."""
    config.addinivalue_line(
        "markers",
        "energy_budget(kwh=None, co2e_g=None, joules=None): fail the test when its call uses more "
        "energy or CO2e than this (a test carrying it is always measured)",
    )
    opts = _resolve(config)
    if opts is None:
        return
    _leave_unrewritten(config)
    from .energy import EnergyPlugin

    config.pluginmanager.register(EnergyPlugin(config, opts), ACTIVE_NAME)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Not enabled yet: a test that carries ``energy_budget`` or uses the fixture enables measuring."""
    if config.option.collectonly or config.pluginmanager.has_plugin(ACTIVE_NAME):
        return
    marked = fixtures = 0
    for item in items:
        if closest_marker(item, MARKER) is not None:
            marked += 1
        elif FIXTURE in getattr(item, "fixturenames", ()):
            fixtures += 1
    if not (marked or fixtures):
        return
    why = " and ".join(x for x in (f"{marked} energy_budget marker(s)" if marked else "",
                                   f"{fixtures} test(s) using the {FIXTURE} fixture" if fixtures else "") if x)
    opts = _resolve(config, force=True)
    assert opts is not None
    opts["enabled_by"] = why
    _leave_unrewritten(config)
    from .energy import EnergyPlugin

    plugin = EnergyPlugin(config, opts)
    config.pluginmanager.register(plugin, ACTIVE_NAME)
    plugin.begin()


def closest_marker(item: Any, name: str) -> Any:
    """``item.get_closest_marker(name)``: the first marker of that name on the item, else on its parents,
    nearest first (markers added during the run included); None when there is none.

    The same walk over each node's ``own_markers`` without pytest's three nested generators: it runs
    for every collected test (the installed plugin's look for budgets) and before every measured call."""
    node = item
    while node is not None:
        for m in node.own_markers:
            if getattr(m, "name", None) == name:
                return m
        node = node.parent
    return None


def _leave_unrewritten(config: pytest.Config) -> None:
    """Import greentrack's modules as Python does, not through pytest's assertion rewriting.

    pytest marks every top-level package of a distribution that provides a ``pytest11`` entry
    point for assertion rewriting, so each greentrack module the measuring part imports would go
    through pytest's import hook: a second path search, and the cached code read with
    ``marshal.load`` from a file object, slower than Python's own loader. Their ``assert``
    statements are internal checks, not test assertions, and gain nothing from it. Measured:
    importing the plugin's 16 modules inside pytest, 29 ms marked against 16.5 ms (part 5 of
    ``python benchmarks/bench_pytest_breakdown.py``). pytest has no public way to take back a
    mark; where its hook is not the one expected, nothing changes.
    """
    marks = getattr(getattr(config.pluginmanager, "rewrite_hook", None), "_must_rewrite", None)
    if isinstance(marks, set):
        marks.discard("greentrack")


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except (ValueError, TypeError, pytest.UsageError) as exc:
        raise pytest.UsageError(f"greentrack: bad value for ini option {name}: {exc}") from None


def _path(config: pytest.Config, value: str | None, ini: str | None) -> str | None:
    """A file option: the command line as given, an ini value relative to the rootdir."""
    if value:
        return str(value)
    raw = _ini(config, ini) if ini else ""
    if raw:
        return raw if os.path.isabs(raw) else str(config.rootpath / raw)
    return None


def _resolve(config: pytest.Config, force: bool = False) -> dict[str, Any] | None:
    """The plugin's settings when enabled (or *force*), else None. Bad values are a one-line usage error."""
    opt = config.option
    budgets: dict[str, Any] = {}
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
    files = {"baseline": _path(config, opt.energy_baseline, "energy_baseline"),
             "baseline_save": _path(config, opt.energy_baseline_save, None),
             "json": _path(config, opt.greentrack_json, "greentrack_json")}
    enabled = (force or bool(opt.greentrack) or any(v is not None for v in budgets.values())
               or any(files.values()) or bool(_ini(config, "greentrack")))
    if not enabled:
        return None
    if files["baseline"]:
        from .baseline import BaselineError, load

        try:
            load(files["baseline"])  # a broken file is a usage error now, not a surprise after the tests
        except BaselineError as exc:
            raise pytest.UsageError(f"greentrack: --energy-baseline: {exc}") from None
    top = opt.greentrack_top
    if top is None:
        raw = _ini(config, "greentrack_top")
        try:
            top = int(raw)
        except (TypeError, ValueError):
            raise pytest.UsageError(f"greentrack: greentrack_top must be a whole number, got {raw!r}") from None
    if top < 0:
        raise pytest.UsageError(f"greentrack: --greentrack-top must be >= 0, got {top}")
    strict = opt.energy_budget_strict if opt.energy_budget_strict is not None else _ini(config, "energy_budget_strict")
    name = opt.greentrack_name or _ini(config, "greentrack_name") or config.rootpath.name or "pytest"
    return dict(budgets, top=top, name=str(name), strict=bool(strict), pue=_pue(config), enabled_by=None, **files)


def _pue(config: pytest.Config) -> float | None:
    """``--greentrack-pue``, else the ini key ``greentrack_pue``: a number >= 1.0; None when neither is given
    (the session then reads ``GREENTRACK_PUE``, ``[tool.greentrack] pue``, else 1.0: not applied)."""
    from ..errors import ConfigError
    from ..settings import resolve_pue

    raw: Any = config.option.greentrack_pue
    src = "--greentrack-pue"
    if raw is None:
        raw, src = _ini(config, "greentrack_pue"), "greentrack_pue"
        if not str(raw).strip():
            return None
    try:
        return resolve_pue(raw, conf={}, source=src)
    except ConfigError as exc:
        raise pytest.UsageError(f"greentrack: {exc}") from None


@pytest.fixture
def greentrack_energy(request: pytest.FixtureRequest) -> Any:
    """The current test's energy measurement (a :class:`greentrack.pytest_plugin.energy.TestEnergy`).

    ``energy_j`` reads the energy used since the test's call began (live while it runs); it is a
    number whenever a source measures or models power (``method`` says which). A test using
    this fixture is measured even when nothing else enabled greentrack. ``enabled`` is False, and
    the figures None, only when greentrack is not measuring (the fixture requested dynamically).
    """
    plugin = request.config.pluginmanager.get_plugin(ACTIVE_NAME)
    if plugin is None:
        from .energy import TestEnergy

        return TestEnergy(request.node.nodeid, None)
    return plugin.measurement(request.node)
