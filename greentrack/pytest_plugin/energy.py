"""The measuring half of the pytest plugin, imported only when greentrack is enabled.

One greentrack :class:`~greentrack.measure.tracker.Session` spans the pytest session. The call of each
test (the test function's body) is a phase named by its node id; its energy is read from the
power series right after the call (:meth:`Session.energy_between`), checked against the test's
``energy_budget`` marker, and attached to the test report as the user property ``greentrack``.
Under pytest-xdist each worker measures its own tests (and stores nothing); the controller
measures the session total, collects the workers' per-test figures from the reports, stores
the run and prints the summary.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from ..carbon.footprint import operational
from ..units import J_PER_KWH, fmt_energy

PROP = "greentrack"  # user property carried by each call report (through xdist too)
MARKER = "energy_budget"
_UNITS = {"kwh": "kWh", "co2e_g": "gCO2e", "joules": "J"}


class TestEnergy:
    """One test's measurement, as the ``greentrack_energy`` fixture gives it.

    ``energy_j`` is the energy of the devices since the test's call began: read live while the
    test runs, fixed once the call has ended. ``budget`` holds the marker's limits.
    """

    __test__ = False  # not a test class, despite its name

    def __init__(self, nodeid: str, plugin: "EnergyPlugin | None", budget: dict[str, float] | None = None) -> None:
        self.nodeid = nodeid
        self._plugin = plugin
        self.budget: dict[str, float] = dict(budget or {})
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._final_j: float | None = None

    @property
    def enabled(self) -> bool:
        """True when greentrack measures this session."""
        return self._plugin is not None and self._plugin.gsession is not None

    @property
    def session(self) -> Any:
        """The greentrack Session measuring this pytest session (None when not enabled)."""
        return self._plugin.gsession if self._plugin is not None else None

    @property
    def energy_j(self) -> float | None:
        """Joules used since the call began (None when nothing is measured)."""
        if self.ended_at is not None:
            return self._final_j
        if self.started_at is None or not self.enabled:
            return None
        return self._plugin.gsession.energy_between(self.started_at)

    @property
    def energy_kwh(self) -> float | None:
        e = self.energy_j
        return None if e is None else e / J_PER_KWH

    @property
    def co2e_g(self) -> float | None:
        e = self.energy_j
        return None if e is None or not self.enabled else self._plugin.co2e_g(e)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    def over_budget(self) -> list[str]:
        """The marker limits exceeded so far, as ``measured > limit`` phrases (empty: within)."""
        e = self.energy_j
        if e is None or not self.budget:
            return []
        used = {"joules": e, "kwh": e / J_PER_KWH, "co2e_g": self.co2e_g}
        out = []
        for key in ("joules", "kwh", "co2e_g"):
            lim = self.budget.get(key)
            if lim is not None and used[key] is not None and used[key] > lim:
                out.append(f"{used[key]:.4g} {_UNITS[key]} > {lim:.4g} {_UNITS[key]} ({key}={lim:g})")
        return out

    def __repr__(self) -> str:
        return f"<TestEnergy {self.nodeid} {fmt_energy(self.energy_j)}>"


def marker_budget(item: pytest.Item) -> dict[str, float]:
    """The closest ``energy_budget`` marker's limits; a malformed marker fails the test clearly."""
    mark = item.get_closest_marker(MARKER)
    if mark is None:
        return {}
    if mark.args:
        pytest.fail(f"{MARKER} takes keyword arguments only (kwh=, co2e_g=, joules=), got {mark.args!r}",
                    pytrace=False)
    out: dict[str, float] = {}
    for key, val in mark.kwargs.items():
        if key not in _UNITS:
            pytest.fail(f"{MARKER}: unknown limit {key!r}; use kwh=, co2e_g= or joules=", pytrace=False)
        if val is None:
            continue
        try:
            num = float(val)
        except (TypeError, ValueError):
            num = float("nan")
        if isinstance(val, bool) or not (0 <= num < float("inf")):
            pytest.fail(f"{MARKER}: {key}={val!r} is not a finite number >= 0", pytrace=False)
        out[key] = num
    if not out:
        pytest.fail(f"{MARKER} needs at least one limit: kwh=, co2e_g= or joules=", pytrace=False)
    return out


class EnergyPlugin:
    """Registered as ``greentrack-energy`` when the plugin is enabled."""

    def __init__(self, config: pytest.Config, opts: dict[str, Any]) -> None:
        self.config = config
        self.opts = opts
        self.gsession: Any = None
        self.result: Any = None
        self.worker = hasattr(config, "workerinput")
        self.tests: list[dict[str, Any]] = []  # one record per measured call, in report order
        self.lines: list[tuple[str, bool]] = []  # summary lines (text, is_failure)
        self.failed_budget = False
        self._measurements: dict[str, TestEnergy] = {}

    # lifecycle -------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.config.option.collectonly:
            return
        from ..errors import GreentrackError
        from ..measure.tracker import Session

        args = " ".join(str(a) for a in self.config.invocation_params.args)
        gs = Session(self.opts["name"], tags={"runner": "pytest"}, store=not self.worker, strict=True,
                     command=f"pytest {args}".strip())
        try:
            gs.start()
        except GreentrackError as exc:
            raise pytest.UsageError(f"greentrack: {exc}") from None
        self.gsession = gs
        if self.controller:
            self.lines.append(("pytest-xdist: the controller measures the session total; each worker measures "
                               "its own tests (a test's energy includes what other workers ran meanwhile on "
                               "shared devices)", False))

    @property
    def controller(self) -> bool:
        return not self.worker and self.config.pluginmanager.hasplugin("dsession")

    def co2e_g(self, energy_j: float) -> float | None:
        gs = self.gsession
        if gs is None or gs.intensity is None:
            return None
        return operational(energy_j, gs.pue, gs.intensity.g_per_kwh).co2e_g

    def measurement(self, item: pytest.Item) -> TestEnergy:
        m = self._measurements.get(item.nodeid)
        if m is None:
            m = self._measurements[item.nodeid] = TestEnergy(item.nodeid, self)
        return m

    # each test -------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        gs = self.gsession
        if gs is None:
            return (yield)
        m = self.measurement(item)
        try:
            m.budget = marker_budget(item)
        except BaseException:  # a malformed marker fails the test before its call: nothing is measured
            self._measurements.pop(item.nodeid, None)
            raise
        m.started_at = time.time()
        try:
            res = yield
        except BaseException:
            self._end(item, m)
            raise
        over = self._end(item, m)
        if over:
            pytest.fail("energy budget exceeded: " + "; ".join(over), pytrace=False)
        return res

    def _end(self, item: pytest.Item, m: TestEnergy) -> list[str]:
        t1 = time.time()
        try:
            m._final_j = self.gsession.energy_between(m.started_at, t1)
        except Exception as exc:  # measuring must never break the test run
            _say(f"cannot read the energy of {item.nodeid}: {exc}")
            m._final_j = None
        m.ended_at = t1
        over = m.over_budget()
        item.user_properties.append((PROP, {
            "t0": m.started_at, "t1": t1, "energy_j": m._final_j, "co2e_g": m.co2e_g,
            "budget": m.budget or None, "over": bool(over)}))
        self._measurements.pop(item.nodeid, None)
        return over

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or self.worker or self.gsession is None:
            return
        for name, val in report.user_properties:
            if name == PROP and isinstance(val, dict):
                rec = dict(val, nodeid=report.nodeid, outcome=report.outcome)
                self.tests.append(rec)
                self.gsession.mark_phase(report.nodeid, rec["t0"], rec["t1"])

    # end of the session ----------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        try:
            res = yield
        except KeyboardInterrupt:
            self._stop("interrupted", "KeyboardInterrupt")
            raise
        except BaseException:
            self._stop("finished")  # -x, collection errors: the tests that ran were measured
            raise
        self._stop("finished")
        if not self.worker and self._check_session():
            session.testsfailed += 1
        return res

    def _stop(self, status: str, error: str | None = None) -> None:
        gs = self.gsession
        if gs is None or gs.result is not None:
            return
        try:
            self.result = gs.stop(status, error)
        except Exception as exc:
            _say(f"cannot finish the measurement: {exc}")

    def pytest_sessionfinish(self) -> None:
        self._stop("finished")  # when the test loop never ran (e.g. an error before it)

    def pytest_unconfigure(self) -> None:
        self._stop("interrupted")

    def _check_session(self) -> bool:
        """Session budgets and regression; returns True when one is exceeded."""
        r = self.result
        if r is None:
            return False
        exceeded: dict[str, Any] | None = None
        checks = (("energy_budget_kwh", r.energy_kwh, "kWh"), ("energy_budget_co2e_g", r.co2e_g, "gCO2e"))
        for key, used, unit in checks:
            lim = self.opts.get(key)
            if lim is None:
                continue
            if used is None:
                self.lines.append((f"{key} not checked: no power was measured", False))
                continue
            if used > lim:
                self.lines.append((f"session over its energy budget: {used:.4g} {unit} > {lim:.4g} {unit} ({key})",
                                   True))
                exceeded = exceeded or {"budget": key, "limit": lim, "usage": used}
        if self.opts.get("energy_budget_regression") is not None:
            from .report import check_regression

            msg, usage = check_regression(self.gsession, r, self.opts["energy_budget_regression"])
            self.lines.append((msg, usage is not None))
            if usage is not None:
                exceeded = exceeded or usage
        if exceeded is not None and self.gsession.store is not None:
            try:
                self.gsession.store.finish_run(r.run_id, {"budget": exceeded}, [], [])
            except Exception as exc:
                _say(f"cannot record the exceeded budget in run {r.run_id}: {exc}")
        self.failed_budget = exceeded is not None
        return self.failed_budget

    # the summary -----------------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker or self.gsession is None:
            return
        from .report import summary_lines

        tr = terminalreporter
        tr.write_sep("-", "greentrack energy")
        for text in summary_lines(self):
            tr.write_line(text)
        for text, bad in self.lines:
            tr.write_line(f"greentrack: {text}", red=bad, bold=bad)


def _say(msg: str) -> None:
    print(f"greentrack: {msg}", file=sys.stderr)


__all__ = ["TestEnergy", "EnergyPlugin", "marker_budget", "PROP", "MARKER"]
