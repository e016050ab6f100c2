"""The measuring half of the pytest plugin, imported only when greentrack is enabled.

One greentrack :class:`~greentrack.measure.tracker.Session` spans the pytest session. The call of each
test (the test function's body) is a phase named by its node id; its energy is read right after the
call: from the CPU model's readings at the call's two edges where it is the one source
(:meth:`Session.edge`; the phase keeps that figure), else from the power series
(:meth:`Session.energy_between`); checked against the test's
``energy_budget`` marker, written to the JUnit XML report as properties (``greentrack_energy_j``,
``greentrack_energy_method``...) and, in a pytest-xdist worker, carried to the controller by the report itself. Under
pytest-xdist each worker measures its own tests (and stores nothing); the controller measures
the session total, collects the workers' per-test figures from the reports, stores the run,
checks the session budgets and the baseline, and prints the summary.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import pytest

from ..carbon.footprint import operational
from ..units import J_PER_KWH, fmt_energy, mark, one_line, terminal_safe
from . import closest_marker

PROP = "greentrack"  # attribute of a pytest-xdist worker's call reports carrying the test's figures
MARKER = "energy_budget"
_UNITS = {"kwh": "kWh", "co2e_g": "gCO2e", "joules": "J"}


class TestEnergy:
    """One test's measurement, as the ``greentrack_energy`` fixture gives it.

    ``energy_j`` is the energy since the test's call began: read live while the test runs, fixed
    once the call has ended. It is a number whenever a source measures or models power (on a
    machine with no GPU and no RAPL, the CPU model); ``method`` says which (``model`` figures
    are estimated from CPU time, not measured). ``budget`` holds the marker's limits.
    """

    __test__ = False  # not a test class, despite its name

    def __init__(self, nodeid: str, plugin: "EnergyPlugin | None", budget: dict[str, float] | None = None) -> None:
        self.nodeid = nodeid
        self._plugin = plugin
        self.budget: dict[str, float] = dict(budget or {})
        self.started_at: float | None = None
        self.started_j: float | None = None  # the joules of the edge reading the call began at (None: no edge)
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
    def method(self) -> str | None:
        """``measured``, ``model`` (estimated from CPU time, not measured) or ``mixed``; None when nothing is."""
        plugin = self._plugin
        return plugin.energy_method if plugin is not None and plugin.gsession is not None else None

    @property
    def modelled(self) -> bool:
        """True when the figure is modelled (the CPU model), wholly or partly."""
        return self.method in ("model", "mixed")

    @property
    def energy_j(self) -> float | None:
        """Joules used since the call began (None when nothing is measured or modelled)."""
        if self.ended_at is not None:
            return self._final_j
        plugin = self._plugin
        if self.started_at is None or plugin is None or plugin.gsession is None:
            return None
        if self.started_j is not None:  # the call began at an edge reading: read another one now
            edge = plugin._edge()
            if edge is not None:
                return edge[1] - self.started_j
        return plugin.gsession.energy_between(self.started_at)

    @property
    def energy_kwh(self) -> float | None:
        e = self.energy_j
        return None if e is None else e / J_PER_KWH

    @property
    def co2e_g(self) -> float | None:
        e, plugin = self.energy_j, self._plugin
        return None if e is None or plugin is None else plugin.co2e_g(e)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    def over_budget(self) -> list[str]:
        """The marker limits exceeded so far, as ``measured > limit`` phrases (empty: within)."""
        return over_budget(self.energy_j, self.budget, self._plugin)

    def __repr__(self) -> str:
        return f"<TestEnergy {self.nodeid} {mark(fmt_energy(self.energy_j), self.method)}>"


def over_budget(e: float | None, budget: dict[str, float], plugin: "EnergyPlugin | None") -> list[str]:
    """The limits of *budget* that *e* joules exceed, as ``measured > limit`` phrases (empty: within)."""
    if e is None or not budget:
        return []
    co2e = plugin.co2e_g(e) if plugin is not None and "co2e_g" in budget else None
    used: dict[str, float | None] = {"joules": e, "kwh": e / J_PER_KWH, "co2e_g": co2e}
    tilde = "~" if plugin is not None and plugin.energy_method in ("model", "mixed") else ""
    out = []
    for key in ("joules", "kwh", "co2e_g"):
        lim, val = budget.get(key), used[key]
        if lim is not None and val is not None and val > lim:
            out.append(f"{tilde}{val:.4g} {_UNITS[key]} > {lim:.4g} {_UNITS[key]} ({key}={lim:g})")
    return out


def marker_budget(item: pytest.Item) -> dict[str, float]:
    """The closest ``energy_budget`` marker's limits; a malformed marker fails the test clearly."""
    mark_ = closest_marker(item, MARKER)
    if mark_ is None:
        return {}
    if mark_.args:
        pytest.fail(f"{MARKER} takes keyword arguments only (kwh=, co2e_g=, joules=), got {mark_.args!r}",
                    pytrace=False)
    out: dict[str, float] = {}
    for key, val in mark_.kwargs.items():
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
        self.checks: list[Any] = []  # session-level checks (greentrack.pytest_plugin.checks.Check)
        self.failed_budget = False
        self.energy_method: str | None = None  # measured | model | mixed (None: nothing)
        self.test_method = "none"  # how a test's figure is obtained: the series method(s), e.g. "model"
        self.hardware: dict[str, Any] = {}
        self._measurements: dict[str, TestEnergy] = {}
        self._records: dict[str, tuple[Any, ...]] = {}  # a call's figures until its report is logged
        self._done: list[tuple[str, str, tuple[Any, ...]]] = []  # (nodeid, outcome, figures) of logged calls
        self._sampler_cpu: Callable[[], float] | None = None  # the sampler thread's CPU seconds (None: no thread)
        self._edge: Callable[[], tuple[float, float] | None] = _no_edge  # Session.edge, bound once
        self._edge_cpu: Callable[[], float] = time.process_time  # the process's CPU clock at the latest edge

    # lifecycle -------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not self.opts.get("enabled_by"):
            self.begin()

    def begin(self) -> None:
        """Start measuring (at session start, or after collection when a marker or the fixture enabled it)."""
        if self.config.option.collectonly or self.gsession is not None:
            return
        from ..errors import GreentrackError
        from ..measure.tracker import Session

        args = " ".join(str(a) for a in self.config.invocation_params.args)
        gs = Session(self.opts["name"], tags={"runner": "pytest"}, store=not self.worker, strict=True,
                     command=f"pytest {args}".strip(), pue=self.opts.get("pue"),
                     background=False)  # the CPU model is read at each test's edges: no sampler thread for it
        try:
            gs.start()
        except GreentrackError as exc:
            raise pytest.UsageError(f"greentrack: {exc}") from None
        self.gsession = gs
        self._edge = gs.edge_function()
        self._edge_cpu = gs.edge_process_clock() or time.process_time
        self._sampler_cpu = gs.sampler.cpu_time_reader()
        self._describe_hardware(gs)
        if self.opts.get("enabled_by") and not self.worker:
            self.lines.append((f"enabled by {self.opts['enabled_by']} (--greentrack measures every run; "
                               "-p no:greentrack turns the plugin off)", False))
        if self.controller:
            self.lines.append(("pytest-xdist: the controller measures the session total; each worker measures "
                               "its own tests (a test's energy includes what other workers ran meanwhile on "
                               "shared devices)", False))

    def _describe_hardware(self, gs: Any) -> None:
        from ..store.records import energy_method

        devices = [d for s in gs.sources for d in s.devices]
        self.energy_method = energy_method(d.method for d in devices)
        self.test_method = "+".join(sorted({d.series_method for d in devices})) or "none"
        hw: dict[str, Any] = {"energy_method": self.energy_method, "backend": gs.backend,
                              "devices": sorted(d.name for d in devices), "series_method": self.test_method}
        for d in devices:
            if d.series_method == "model":
                hw["watts_per_thread"] = d.info.get("watts_per_thread")
                hw["cpu"] = d.info.get("cpu")
                hw["model_basis"] = d.info.get("basis")
        self.hardware = hw

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
        # the test's figures live in this frame: a TestEnergy exists only for a test that asked for the
        # fixture, so a test keeps no extra object alive through its call (each one outliving the call's
        # allocations is promoted to Python's oldest generation, and enough of them add a full collection)
        m = self._measurements.get(item.nodeid)
        try:
            budget = marker_budget(item)
        except BaseException:  # a malformed marker fails the test before its call: nothing is measured
            self._measurements.pop(item.nodeid, None)
            raise
        # the window starts at a sample of the sources derived at each read (the CPU model, RAPL): the
        # CPU model's one device is read cheaply (Session.edge), any other source is polled
        edge = self._edge()
        if edge is None:
            gs.poll_edges()
            t0, j0, cpu0 = time.time(), None, time.process_time()
        else:
            t0, j0 = edge
            cpu0 = self._edge_cpu()  # the process's CPU clock as that reading read it
        sampler_cpu = self._sampler_cpu
        thread0, sampler0 = time.thread_time(), sampler_cpu() if sampler_cpu else 0.0
        if m is not None:
            m.budget, m.started_at, m.started_j = budget, t0, j0
        try:
            res = yield
        except BaseException:
            self._end(item, m, budget, t0, j0, cpu0, thread0, sampler0)
            raise
        over, unchecked = self._end(item, m, budget, t0, j0, cpu0, thread0, sampler0)
        if over:
            pytest.fail("energy budget exceeded: " + "; ".join(over), pytrace=False)
        if unchecked and self.opts.get("strict"):
            pytest.fail("energy budget not checked: no power was measured or modelled (--energy-budget-strict)",
                        pytrace=False)
        return res

    def _end(self, item: pytest.Item, m: TestEnergy | None, budget: dict[str, float], t0: float, j0: float | None,
             cpu0: float, thread0: float, sampler0: float) -> tuple[list[str], bool]:
        e: float | None
        edge = self._edge() if j0 is not None else None
        if edge is not None and j0 is not None:
            edged, t1, e = True, edge[0], edge[1] - j0
            cpu = self._edge_cpu() - cpu0  # the process's CPU seconds in the call
        else:
            edged = False
            cpu = time.process_time() - cpu0
            t1 = time.time()
            try:
                e = self.gsession.energy_between(t0, t1)
            except Exception as exc:  # measuring must never break the test run
                _say(f"cannot read the energy of {item.nodeid}: {exc}")
                e = None
        if self._sampler_cpu is not None:  # less greentrack's sampler thread's
            cpu -= self._sampler_cpu() - sampler0
        other = max(0.0, cpu - (time.thread_time() - thread0))  # CPU seconds on the process's other threads
        if m is not None:
            m._final_j, m.ended_at = e, t1
            self._measurements.pop(item.nodeid, None)
        over = over_budget(e, budget, self) if budget else []
        unchecked = bool(budget) and e is None
        # the figures as they are: made into the test's record at the stop (see _take_done)
        self._records[item.nodeid] = (t0, t1, e, budget or None, bool(over), unchecked, cpu, other, edged)
        props = item.user_properties  # JUnit XML <property> elements (--junitxml)
        if e is not None:
            props.append(("greentrack_energy_j", f"{e:.6g}"))
            props.append(("greentrack_energy_method", self.test_method))
        if budget:
            props.append(("greentrack_energy_budget", ",".join(f"{k}={v:g}" for k, v in sorted(budget.items()))))
            props.append(("greentrack_energy_budget_status",
                          "exceeded" if over else "not checked" if unchecked else "within"))
        return over, unchecked

    @pytest.hookimpl(tryfirst=True)  # in a pytest-xdist worker: before the report is sent to the controller
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or self.gsession is None:
            return
        raw = self._records.pop(report.nodeid, None)
        if self.worker:
            if raw is not None:
                setattr(report, PROP, self._record(raw))  # serialised with the report by pytest-xdist
            return
        if raw is not None:
            self._done.append((report.nodeid, report.outcome, raw))
            return
        val = getattr(report, PROP, None)  # the controller: a worker's figures
        if isinstance(val, dict):
            self._take_done()  # (none here in practice) the records stay in report order
            val = dict(val)
            val["nodeid"], val["outcome"] = report.nodeid, report.outcome
            self.tests.append(val)
            self.gsession.mark_phase(report.nodeid, val["t0"], val["t1"])

    def _record(self, raw: tuple[Any, ...]) -> dict[str, Any]:
        """A call's record (``tests`` in the JSON output, the baseline's input) from its figures."""
        t0, t1, e, budget, over, unchecked, cpu, other, _edged = raw
        return {"t0": t0, "t1": t1, "energy_j": e, "budget": budget, "over": over, "unchecked": unchecked,
                "method": self.test_method,  # CO2e: computed when reported
                # the share of the process's CPU time in the call spent on its other threads
                "other_threads": round(other / cpu, 2) if cpu > 0 else 0.0, "other_threads_cpu_s": round(other, 6)}

    def _take_done(self) -> None:
        """The calls logged so far become records (:attr:`tests`) and phases of the run, in one loop at the
        stop: a loop over 500 calls costs less than the same work done at each test, where greentrack's code
        and data are out of the CPU's caches after the test's own work (docs/pytest-ci.md, "What it costs")."""
        done, self._done = self._done, []
        gs = self.gsession
        running = gs is not None and gs.result is None
        for nodeid, outcome, raw in done:
            rec = self._record(raw)
            rec["nodeid"], rec["outcome"] = nodeid, outcome
            self.tests.append(rec)
            if running:  # a figure read at the call's edges is the phase's own (not attributed from the series)
                gs.mark_phase(nodeid, raw[0], raw[1], raw[2] if raw[8] else None)

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
        self._take_done()
        gs = self.gsession
        if gs is None or gs.result is not None:
            return
        try:
            self.result = gs.stop(status, error)
        except Exception as exc:
            _say(f"cannot finish the measurement: {exc}")

    def _check_session(self) -> bool:
        """Session budgets, regression, baseline, strict; returns True when one fails the session."""
        from .checks import run_checks

        self.checks = run_checks(self)
        self.failed_budget = any(c.failed for c in self.checks)
        return self.failed_budget

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._stop("finished")  # when the test loop never ran (e.g. an error before it)
        if self.worker or self.gsession is None:
            return
        from .ci import write_outputs

        write_outputs(self)

    def pytest_unconfigure(self) -> None:
        self._stop("interrupted")
        self._release()

    def _release(self) -> None:
        """The plugin is done: close the database connection and let go of the run (each test's record,
        the power series, the phases) now, not at the interpreter's exit, where pytest's own last garbage
        collections would walk them again (docs/pytest-ci.md, "What it costs")."""
        store = getattr(self.gsession, "store", None)
        if store is not None:
            try:
                store.close()
            except Exception:  # nothing is left to write: a failing close changes nothing
                pass
        self.gsession = self.result = None
        self._edge, self._edge_cpu = _no_edge, time.process_time
        self.tests, self.checks, self.lines = [], [], []
        self._records.clear()
        self._done.clear()
        self._measurements.clear()

    # the summary -----------------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker or self.gsession is None:
            return
        from .ci import add_to_short_summary
        from .report import summary_lines

        tr = terminalreporter
        tr.write_sep("-", "greentrack energy")
        for text in summary_lines(self):
            tr.write_line(terminal_safe(text))
        for text, bad in self.lines:
            tr.write_line(f"greentrack: {one_line(text)}", red=bad, bold=bad)
        for c in self.checks:
            tr.write_line(f"greentrack: {one_line(c.text)}", red=c.failed, bold=c.failed)
            for d in c.detail:
                tr.write_line(f"  {one_line(d)}", red=c.failed)
        add_to_short_summary(self, tr)


def _no_edge() -> None:
    return None


def _say(msg: str) -> None:
    print(f"greentrack: {one_line(msg)}", file=sys.stderr)


__all__ = ["TestEnergy", "EnergyPlugin", "marker_budget", "over_budget", "PROP", "MARKER"]
