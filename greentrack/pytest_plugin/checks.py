"""The session-level checks of the pytest plugin, run once the tests have run.

Each check ends as a :class:`Check`: ``ok``, ``exceeded`` (a budget), ``regressed`` (against the
baseline or the last stored run), or ``unchecked`` (it could not be checked, and says why). A
check that is exceeded or regressed fails the session; an unchecked one too under
``--energy-budget-strict``. Failed checks also appear in pytest's short test summary and final
line (:func:`greentrack.pytest_plugin.ci.add_to_short_summary`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..units import fmt_energy, mark
from .energy import _say

#: default of --energy-budget-regression with --energy-baseline: the run-to-run spread measured on a
#: shared 2-core CI machine (docs/pytest-ci.md, benchmarks/bench_pytest_ci.py) with a margin
DEFAULT_REGRESSION_PCT = 60.0


class Check:
    """One session-level check and its outcome (a plain class: see
    :class:`greentrack.measure.sampler.DeviceState`).

    *name*: energy_budget_kwh, energy_budget_co2e_g, energy_regression, energy_baseline or
    energy_budget_strict; *status*: ok, exceeded, regressed or unchecked. *entries* are the
    ``(node id, message)`` of its lines in pytest's short test summary when it failed: a regressed
    test under its own node id, so that the name is never cut off; by default ``greentrack::<name>``.
    """

    def __init__(self, name: str, status: str, text: str, failed: bool = False, detail: list[str] | None = None,
                 data: dict[str, Any] | None = None, entries: list[tuple[str, str]] | None = None) -> None:
        self.name = name
        self.status = status
        self.text = text
        self.failed = failed
        self.detail: list[str] = [] if detail is None else detail
        self.data: dict[str, Any] = {} if data is None else data
        self.entries: list[tuple[str, str]] = [] if entries is None else entries

    def __repr__(self) -> str:
        return f"Check({self.name!r}, {self.status!r}, {self.text!r}, failed={self.failed})"

    def summary_entries(self) -> list[tuple[str, str]]:
        return self.entries or [(f"greentrack::{self.name}", self.text)]

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "failed": self.failed, "text": self.text,
                "detail": self.detail, **({"data": self.data} if self.data else {})}


def run_checks(plugin: Any) -> list[Check]:
    """Every session-level check that the options ask for, in a stable order."""
    out: list[Check] = []
    r = plugin.result
    strict = bool(plugin.opts.get("strict"))
    how = plugin.energy_method
    checks = (("energy_budget_kwh", r.energy_kwh if r else None, "kWh"),
              ("energy_budget_co2e_g", r.co2e_g if r else None, "gCO2e"))
    for key, used, unit in checks:
        lim = plugin.opts.get(key)
        if lim is None:
            continue
        if used is None:
            out.append(Check(key, "unchecked", f"{key} not checked: no power was measured or modelled", strict,
                             entries=[(f"greentrack::{key}", "not checked: no power was measured or modelled")]))
        elif used > lim:
            over = f"{mark(f'{used:.4g}', how)} {unit} > {lim:.4g} {unit}"
            out.append(Check(key, "exceeded", f"session over its energy budget: {over} ({key})", True,
                             data={"limit": lim, "usage": used, "unit": unit},
                             entries=[(f"greentrack::{key}", f"session {over}")]))
        else:
            out.append(Check(key, "ok", f"session within its energy budget: {mark(f'{used:.4g}', how)} {unit} "
                                        f"<= {lim:.4g} {unit} ({key})", data={"limit": lim, "usage": used}))
    if plugin.opts.get("baseline"):
        out.append(baseline_check(plugin, strict))
    elif plugin.opts.get("energy_budget_regression") is not None:
        out.append(last_run_check(plugin, strict))
    unchecked = [t for t in plugin.tests if t.get("unchecked")]
    if unchecked:
        text = f"{len(unchecked)} energy_budget marker(s) not checked: no power was measured or modelled"
        if strict:
            text += " (--energy-budget-strict: those tests failed)"
        out.append(Check("energy_budget_marker", "unchecked", text, False,
                         detail=[t["nodeid"] for t in unchecked[:10]]))
    if plugin.opts.get("baseline_save"):
        out.append(save_baseline(plugin))
    _record(plugin, out)
    return out


def _fine(j: float) -> str:
    """Joules for one test: mJ below 1 J (a test's figure is often a few millijoules)."""
    return f"{j * 1000:.3g} mJ" if abs(j) < 1 else fmt_energy(j)


def _record(plugin: Any, checks: list[Check]) -> None:
    """Keep the budget outcome with the stored run: the first failed budget, else the first one that held
    (``greentrack show`` says which, and by how much)."""
    gs, r = plugin.gsession, plugin.result
    bad = next((c for c in checks if c.failed and c.status in ("exceeded", "regressed")), None)
    held = next((c for c in checks if c.status == "ok" and c.data.get("limit") is not None), None)
    chosen = bad or held
    if chosen is None or gs is None or gs.store is None or r is None:
        return
    budget = {"budget": chosen.data.get("budget", chosen.name), "limit": chosen.data.get("limit"),
              "usage": chosen.data.get("usage"), "exceeded": bad is not None}
    budget.update({k: v for k, v in chosen.data.items() if k in ("against", "baseline")})
    try:
        gs.store.update_run(r.run_id, {"budget": budget})
    except Exception as exc:
        _say(f"cannot record the budget outcome in run {r.run_id}: {exc}")


def call_energies(plugin: Any, passed_only: bool = False) -> dict[str, float]:
    """``{nodeid: joules}`` of the measured calls (a test run twice, e.g. rerun, is summed)."""
    out: dict[str, float] = {}
    for t in plugin.tests:
        if t.get("energy_j") is None or (passed_only and t.get("outcome") != "passed"):
            continue
        out[t["nodeid"]] = out.get(t["nodeid"], 0.0) + t["energy_j"]
    return out


def thread_shares(plugin: Any, passed_only: bool = False) -> dict[str, float]:
    """``{nodeid: share}``: the share of each measured call's CPU that ran on other threads, as the baseline's
    rule reads it (:func:`greentrack.pytest_plugin.baseline.threaded_share`; a test run twice: the higher)."""
    from .baseline import threaded_share

    out: dict[str, float] = {}
    for t in plugin.tests:
        if "other_threads" not in t or t.get("energy_j") is None or (passed_only and t.get("outcome") != "passed"):
            continue
        out[t["nodeid"]] = max(out.get(t["nodeid"], 0.0), threaded_share(t))
    return out


def baseline_check(plugin: Any, strict: bool) -> Check:
    """This run against ``--energy-baseline PATH``."""
    from . import baseline as B

    path = plugin.opts["baseline"]
    pct = plugin.opts.get("energy_budget_regression")
    pct = DEFAULT_REGRESSION_PCT if pct is None else pct
    how = plugin.energy_method
    saving_here = plugin.opts.get("baseline_save") == path
    if plugin.result is None or plugin.result.energy_j is None:
        return Check("energy_baseline", "unchecked", f"baseline {path} not compared: no power was measured or "
                                                     "modelled", strict)
    try:
        doc = B.load(path)
    except B.BaselineError as exc:
        return Check("energy_baseline", "unchecked", f"baseline not compared: {exc}", strict)
    cmp = B.compare(doc, str(path), plugin.hardware, call_energies(plugin), pct, plugin.test_method,
                    thread_shares(plugin))
    data = {"baseline": str(path), "comparison": cmp.as_dict(), "limit": pct}
    if cmp.status == "no-file":
        return Check("energy_baseline", "unchecked",
                     f"no baseline at {path} yet; regression not checked"
                     + (" (this run saves it)" if saving_here else f" (save one with --energy-baseline-save {path})"),
                     strict and not saving_here, data=data)
    if cmp.status == "other-hardware":
        return Check("energy_baseline", "unchecked",
                     f"baseline {path} was made on other hardware or with another method; not compared "
                     f"(this run: {cmp.key})", strict and not saving_here,
                     detail=[f"in the file: {k}" for k in cmp.other_keys[:5]], data=data)
    if cmp.status == "empty":
        return Check("energy_baseline", "unchecked", f"baseline {path} holds no test for {cmp.key}; not compared",
                     strict and not saving_here, data=data)
    detail: list[str] = []
    for rg in cmp.regressions[:20]:
        detail.append(f"{rg.nodeid}: {mark(_fine(rg.before_j), how)} -> {mark(_fine(rg.after_j), how)} "
                      f"({rg.change_pct:+.0f}%; highest saved {mark(_fine(rg.highest_j), how)}) [{rg.method}]")
    if len(cmp.regressions) > 20:
        detail.append(f"... and {len(cmp.regressions) - 20} more")
    for label, names in (("new since the baseline (not compared)", cmp.added),
                         ("in the baseline, not run (removed or deselected)", cmp.removed)):
        if names:
            detail.append(f"{len(names)} test(s) {label}: " + ", ".join(names[:5])
                          + (f", ... ({len(names) - 5} more)" if len(names) > 5 else ""))
    if cmp.not_compared:
        detail.append(not_compared_line(cmp.not_compared, how))
    total = cmp.total_change_pct
    summary = (f"{cmp.common} tests in common with baseline {path} ({cmp.saves} saved run(s), {cmp.key}): "
               f"{mark(fmt_energy(cmp.total_after_j), how)} against {mark(fmt_energy(cmp.total_before_j), how)}"
               + (f" ({total:+.1f}%)" if total is not None else "")
               + (f" without the {len(cmp.not_compared)} not compared" if cmp.not_compared else "")
               + f"; limit +{pct:g}% per test and in total")
    data.update(usage=total)
    entries = [(rg.nodeid, f"energy regression: {rg.change_pct:+.0f}% over baseline {Path(path).name} "
                           f"({mark(_fine(rg.before_j), how)} -> {mark(_fine(rg.after_j), how)}, {rg.method})")
               for rg in cmp.regressions]
    if cmp.total_regressed:
        entries.append(("greentrack::energy_regression", f"total {total:+.0f}% over baseline {Path(path).name} "
                                                         f"({cmp.common - len(cmp.not_compared)} tests compared)"))
    if cmp.failed:
        n = len(cmp.regressions)
        what = (f"{n} test(s) over the baseline" if n else "") + (" and " if n and cmp.total_regressed else "") \
            + ("the total over the baseline" if cmp.total_regressed else "")
        first = f"; largest: {cmp.regressions[0].nodeid} ({cmp.regressions[0].change_pct:+.0f}%)" if n else ""
        return Check("energy_regression", "regressed", f"energy regression: {what}{first}; {summary}", True,
                     detail=detail, data=data, entries=entries)
    return Check("energy_baseline", "ok", f"no energy regression: {summary}", detail=detail, data=data)


def not_compared_line(nc: list[Any], how: str | None, show: int = 5) -> str:
    """The scheduling-dependent tests not compared, as one detail line."""
    from .baseline import THREADED_MIN_SAVES, THREADED_SHARE

    def one(x: Any) -> str:
        return (f"{x.nodeid} ({x.share * 100:.0f}% on other threads, {x.saves} save(s), "
                f"{mark(_fine(x.before_j), how)} -> {mark(_fine(x.after_j), how)})")

    return (f"{len(nc)} test(s) not compared: {THREADED_SHARE * 100:.0f}% or more of their CPU ran on other "
            "threads, whose CPU time varies with scheduling (measured up to 6x apart in identical runs); compared "
            f"once the baseline holds {THREADED_MIN_SAVES} saves (--energy-baseline-save on more runs): "
            + ", ".join(one(x) for x in nc[:show]) + (f", ... ({len(nc) - show} more)" if len(nc) > show else ""))


def save_baseline(plugin: Any) -> Check:
    """``--energy-baseline-save PATH``: this run's passed tests into the entry of its hardware key."""
    from .._version import __version__
    from . import baseline as B

    path = plugin.opts["baseline_save"]
    tests = call_energies(plugin, passed_only=True)
    if not tests:
        return Check("energy_baseline_save", "unchecked", f"baseline not saved to {path}: no passed test was measured")
    try:
        key, saves = B.save(path, plugin.opts["name"], plugin.hardware, tests, __version__,
                            thread_shares(plugin, passed_only=True))
    except (B.BaselineError, OSError) as exc:
        return Check("energy_baseline_save", "unchecked", f"baseline not saved: {exc}", True)
    skipped = len({t["nodeid"] for t in plugin.tests}) - len(tests)
    return Check("energy_baseline_save", "ok",
                 f"baseline saved to {path}: {len(tests)} tests for {key} ({saves} run(s) kept per test)"
                 + (f"; {skipped} test(s) not saved (not passed or not measured)" if skipped else ""))


def last_run_check(plugin: Any, strict: bool) -> Check:
    """``--energy-budget-regression`` without a baseline file: against the last stored run of the suite."""
    from .report import check_regression

    pct = plugin.opts["energy_budget_regression"]
    msg, usage = check_regression(plugin.gsession, plugin.result, pct)
    if usage is not None:
        return Check("energy_regression", "regressed", msg, True, data=usage)
    status = "ok" if "not checked" not in msg else "unchecked"
    return Check("energy_regression", status, msg, strict and status == "unchecked")


__all__ = ["Check", "run_checks", "DEFAULT_REGRESSION_PCT", "call_energies", "thread_shares"]
