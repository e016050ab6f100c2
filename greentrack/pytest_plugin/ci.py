"""What CI systems show: the JSON artifact, the GitHub step summary, JUnit XML, pytest's own summary.

- ``--greentrack-json PATH``: the session, every measured test and every check as one JSON
  document (schema ``greentrack.pytest``, version 1), for an artifact or a later step;
- ``$GITHUB_STEP_SUMMARY``: when the variable is set (GitHub Actions), a Markdown table of the
  suite's energy, its hungriest tests and any failed budget is appended to that file;
- JUnit XML (``--junitxml``): each test carries ``greentrack_energy_j`` and
  ``greentrack_energy_method`` properties (written by the measuring plugin), the test suite
  ``greentrack_*`` properties with the session's figures and the checks' outcome;
- a failed session check (budget, regression, strict) is added to pytest's short test summary
  and its final line as ``ERROR`` entries, besides the exit status 1: a test over the baseline
  under its own node id (``ERROR tests/test_x.py::test_y - energy regression: +101% ...``), a
  session check as ``greentrack::<check>``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ..units import fmt_co2, fmt_duration, fmt_energy, mark
from .checks import _fine
from .report import pue_text

SCHEMA = "greentrack.pytest"
VERSION = 1


def artifact(plugin: Any) -> dict[str, Any]:
    """The ``--greentrack-json`` document."""
    gs, r = plugin.gsession, plugin.result
    model = next((d.info for s in gs.sources for d in s.devices if d.series_method == "model"), None)
    tests = [{"nodeid": t["nodeid"], "outcome": t.get("outcome"), "energy_j": t.get("energy_j"),
              "co2e_g": plugin.co2e_g(t["energy_j"]) if t.get("energy_j") is not None else None,
              "duration_s": t["t1"] - t["t0"], "method": t.get("method"),
              "budget": t.get("budget"), "over_budget": bool(t.get("over")), "budget_checked": not t.get("unchecked"),
              "other_threads": t.get("other_threads"), "other_threads_cpu_s": t.get("other_threads_cpu_s")}
             for t in plugin.tests]
    return {
        "schema": SCHEMA, "version": VERSION,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "suite": plugin.opts["name"], "run_id": gs.id, "backend": gs.backend,
        "energy_method": plugin.energy_method, "test_method": plugin.test_method, "hardware": plugin.hardware,
        "model": dict(model) if model else None,
        "session": None if r is None else {
            "status": r.status, "duration_s": r.duration_s, "energy_j": r.energy_j, "energy_kwh": r.energy_kwh,
            "co2e_g": r.co2e_g, "region": r.region, "intensity_g_per_kwh": r.intensity_g_per_kwh,
            "intensity_source": r.intensity_source, "pue": r.pue},
        "tests": tests,
        "checks": [c.as_dict() for c in plugin.checks],
        "failed": bool(plugin.failed_budget),
        "stored_in": gs.store.location if gs.store is not None else None,
    }


def markdown(plugin: Any, top: int = 10) -> str:
    """The GitHub step summary: the suite's energy, its hungriest tests, the checks."""
    gs, r = plugin.gsession, plugin.result
    how = plugin.energy_method
    name = plugin.opts["name"]
    out = [f"### greentrack: energy of `{name}`", ""]
    if r is None or r.energy_j is None:
        out += ["Nothing was measured or modelled: " + next((n for n in (r.notes if r else []) if "region" not in n),
                                                             "no power source") + ".", ""]
    else:
        measured = [t for t in plugin.tests if t.get("energy_j") is not None]
        calls = sum(t["energy_j"] for t in measured)
        out += ["| suite | tests measured | energy of the calls | session energy | CO2e | time |",
                "|---|---:|---:|---:|---:|---:|",
                f"| {_cell(name)} | {len(measured)} | {mark(fmt_energy(calls), how)} | "
                f"{mark(fmt_energy(r.energy_j), how)} | {mark(fmt_co2(r.co2e_kg), how)} | "
                f"{fmt_duration(r.duration_s)} |",
                ""]
        out.append(f"Method: **{how}**, backend `{gs.backend}`"
                   + (f"; CO2e: {r.intensity_source}, {pue_text(r.pue)}" if r.intensity_source else "") + ".")
        if how in ("model", "mixed"):
            w = plugin.hardware.get("watts_per_thread")
            out.append(f"`~` modelled from CPU time, not measured: CPU seconds x {w:g} W per thread "
                       f"({plugin.hardware.get('model_basis')}).")
        out.append("")
        hungry = sorted(measured, key=lambda t: -t["energy_j"])[:top]
        if hungry:
            out += ["| most energy-hungry tests | energy | time | budget |", "|---|---:|---:|---|"]
            for t in hungry:
                budget = ("**over**" if t.get("over") else "within") if t.get("budget") else ""
                out.append(f"| `{_cell(t['nodeid'])}` | {mark(_fine(t['energy_j']), how)} | "
                           f"{(t['t1'] - t['t0']) * 1000:.0f} ms | {budget} |")
            out.append("")
    over = [t for t in plugin.tests if t.get("over")]
    failed = [c for c in plugin.checks if c.failed]
    if over or failed:
        out += ["**Energy checks failed**", ""]
        out += [f"- `{_cell(t['nodeid'])}` over its `energy_budget` marker" for t in over]
        for c in failed:
            out.append(f"- {_cell(c.text)}")
            out += [f"  - {_cell(d)}" for d in c.detail[:10]]
        out.append("")
    others = [c for c in plugin.checks if not c.failed]
    for c in others:  # with their detail: tests added, removed or not compared since the baseline
        out.append(f"- {_cell(c.text)}")
        out += [f"  - {_cell(d)}" for d in c.detail[:10]]
    if others:
        out.append("")
    return "\n".join(out) + "\n"


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def write_outputs(plugin: Any) -> None:
    """JSON artifact, GitHub step summary and JUnit suite properties (each failure said once, never raised)."""
    path = plugin.opts.get("json")
    if path:
        try:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(artifact(plugin), indent=1, default=str, allow_nan=False) + "\n",
                         encoding="utf-8")
        except (OSError, ValueError) as exc:
            plugin.lines.append((f"cannot write --greentrack-json {path}: {exc}", True))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(markdown(plugin, top=max(plugin.opts.get("top", 5), 5)))
        except OSError as exc:
            plugin.lines.append((f"cannot append to GITHUB_STEP_SUMMARY {summary}: {exc}", False))
    junit_properties(plugin)


def junit_properties(plugin: Any) -> None:
    """The session's figures as JUnit XML test-suite properties (when ``--junitxml`` is given)."""
    try:
        from _pytest.junitxml import xml_key  # the key record_testsuite_property uses
    except ImportError:  # pragma: no cover - a pytest without it
        return
    xml = plugin.config.stash.get(xml_key, None)
    if xml is None:
        return
    r = plugin.result
    props = {"greentrack_run_id": plugin.gsession.id, "greentrack_backend": plugin.gsession.backend,
             "greentrack_energy_method": plugin.energy_method or "none"}
    if r is not None and r.energy_j is not None:
        props["greentrack_energy_j"] = f"{r.energy_j:.6g}"
        if r.co2e_g is not None:
            props["greentrack_co2e_g"] = f"{r.co2e_g:.6g}"
    props["greentrack_checks"] = "failed" if plugin.failed_budget else "passed"
    for c in plugin.checks:
        props[f"greentrack_{c.name}"] = c.status
    for k, v in props.items():
        xml.add_global_property(k, v)


class _Longrepr:
    """What pytest's summary reads of a report's failure: the first line, and the full text."""

    def __init__(self, text: str, detail: list[str]) -> None:
        self.text = text
        self.detail = detail
        self.reprcrash = _Crash(text)

    def toterminal(self, tw: Any) -> None:
        tw.line(self.text)
        for d in self.detail:
            tw.line(f"  {d}")

    def __str__(self) -> str:
        return "\n".join([self.text, *(f"  {d}" for d in self.detail)])


class _Crash:
    def __init__(self, message: str) -> None:
        self.message = message
        self.path = "greentrack"
        self.lineno = 0


def add_to_short_summary(plugin: Any, tr: Any) -> None:
    """Each failed session check as an ``error`` entry: in the short test summary and the final line."""
    for c in plugin.checks:
        if not c.failed:
            continue
        for nodeid, message in c.summary_entries():
            longrepr: Any = _Longrepr(message, [])  # what pytest reads of a longrepr: reprcrash, toterminal
            rep = pytest.TestReport(nodeid=nodeid, location=("greentrack", None, c.name), keywords={},
                                    outcome="failed", longrepr=longrepr, when="teardown")
            tr.stats.setdefault("error", []).append(rep)
    if any(c.failed for c in plugin.checks) and hasattr(tr, "_set_main_color"):
        tr._set_main_color()  # the final line turns red (pytest recomputes it only after the last test)


__all__ = ["artifact", "markdown", "write_outputs", "add_to_short_summary", "junit_properties"]
