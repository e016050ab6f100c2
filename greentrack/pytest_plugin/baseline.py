"""An energy baseline kept in the repository: ``--energy-baseline PATH`` and ``--energy-baseline-save PATH``.

The file is JSON, written with sorted keys and one test per line so that a change shows as a
small diff in review. It holds one entry per *hardware key*: the energy method and the devices
that produced the figures (``model: Intel Xeon Platinum 8370C (modelled) @ 2.8 W/thread``,
``measured: 1x NVIDIA H100 80GB HBM3``). A run is compared only with the entry of its own key:
a baseline made on other hardware, or with another method, is reported and not compared.

Each test keeps the energies of its last :data:`KEEP` saves (``--energy-baseline-save`` adds this
run's figures to the entry of this run's key). A test is compared with the median of its saved
figures, so that one save caught in a slow moment (a test whose ``gc.collect()`` found more
garbage, a busy neighbour) does not hide a regression; a scheduling-dependent test (below), whose
figures can be several times apart, with the highest. A single save is enough to start with;
three or more make the reference robust to one slow save.

Threads make an exception while a test's spread is still unknown. A test that ran
:data:`THREADED_SHARE` or more of its call's process CPU time on threads other than its own
(``other_threads`` in the test's record), and at least :data:`THREADED_MIN_CPU_S` there, is
*scheduling-dependent*: how much CPU its threads burn depends on how they are scheduled (GIL
hand-offs, wake-ups, lock contention), and identical runs of such tests were measured up to 6x
apart. Each entry keeps those tests' shares (``"threaded": {nodeid: share}``, the highest share
seen in a save); while a test has fewer than :data:`THREADED_MIN_SAVES` saved figures, a test
that is threaded in this run or in the baseline is listed as not compared instead of being judged
on one or two samples, and the suite's total is compared without it (one such test moving 5x
would otherwise swing the total). Files written before the map existed load as they are (no test
marked threaded there).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "greentrack.pytest-baseline"
VERSION = 1
KEEP = 5  # saved figures per test and hardware key
# A test's increase must also exceed this share of the suite's baseline energy (the tests in
# common): changes of a fraction of a percent of the suite are below the run-to-run spread of
# the per-test figures measured on a shared CI runner (docs/pytest-ci.md) and not worth a red build.
FLOOR_SHARE = 0.01
# A test that ran this share or more of its call's process CPU time on threads other than its own
# (greentrack's sampler thread left out), and at least THREADED_MIN_CPU_S there, is
# scheduling-dependent. Measured over 11 runs each of boltons 26.2.0 and more_itertools 11.2.1
# (docs/pytest-ci.md, reports/pytest-ci/thread-shares.txt): the calls whose other threads used 1 ms
# or more (5 tests, all starting threads) ran 0.44 to 1.00 of their CPU there; below 1 ms shares
# reach 0.48, in tests that start a short-lived thread or none (a thread left by an earlier test
# finishing). Threads that used less than 1 ms cannot move a figure by more than a few millijoules
# (4 mJ at 4 W per thread), below the floor of a suite worth gating: such a test is compared.
THREADED_SHARE = 0.2
THREADED_MIN_CPU_S = 0.001
# Saved figures a scheduling-dependent test needs before it is compared: with fewer, its spread is unknown.
THREADED_MIN_SAVES = 3


class BaselineError(Exception):
    """A baseline file that cannot be used (unreadable, not JSON, not a greentrack baseline)."""


def hardware_key(hw: dict[str, Any]) -> str:
    """The key of a hardware description: method, devices and, for the CPU model, its watts per thread."""
    key = f"{hw.get('energy_method') or 'none'}: {', '.join(hw.get('devices') or []) or 'no device'}"
    if hw.get("watts_per_thread") is not None:
        key += f" @ {float(hw['watts_per_thread']):.4g} W/thread"
    return key


def _sig(x: float, digits: int = 4) -> float:
    """*x* rounded to *digits* significant digits (smaller diffs, and below any measurement's precision)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def load(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The baseline document at *path*; None when there is no file. Raises :class:`BaselineError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BaselineError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BaselineError(f"{p} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BaselineError(f"{p} is not a greentrack energy baseline (no \"schema\": \"{SCHEMA}\")")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise BaselineError(f"{p} has baseline version {doc.get('version')!r}; this greentrack reads version "
                            f"{VERSION} (upgrade greentrack)")
    entries = doc.get("baselines")
    if not isinstance(entries, dict) or not all(isinstance(e, dict) and isinstance(e.get("tests"), dict)
                                                for e in entries.values()):
        raise BaselineError(f"{p}: \"baselines\" must map hardware keys to entries with \"tests\"")
    return doc


def save(path: str | os.PathLike[str], suite: str, hardware: dict[str, Any], tests: dict[str, float],
         version: str, threads: dict[str, float] | None = None) -> tuple[str, int]:
    """Add this run's per-test energies to the entry of its hardware key (other keys are kept).

    *threads* holds each test's share of its call's CPU on other threads: a test at or above
    :data:`THREADED_SHARE` is kept in the entry's ``threaded`` map (with the highest share seen).
    Tests not in *tests* are dropped from that entry (the file follows the suite). Returns
    ``(key, saves)``: the entry's key and how many runs its figures now come from.
    """
    p = Path(path)
    doc = load(p)
    if doc is None:
        doc = {"schema": SCHEMA, "version": VERSION, "suite": suite, "baselines": {}}
    key = hardware_key(hardware)
    old = doc["baselines"].get(key) or {}
    old_tests = old.get("tests") or {}
    new_tests: dict[str, list[float]] = {}
    for nodeid, e in sorted(tests.items()):
        prev = [float(x) for x in _as_list(old_tests.get(nodeid))]
        new_tests[nodeid] = (prev + [_sig(e)])[-KEEP:]
    saves = min(KEEP, int(old.get("saves") or 0) + 1) if old else 1
    old_threaded = _shares(old.get("threaded"))
    threads = threads or {}
    threaded: dict[str, float] = {}
    for nodeid in new_tests:
        share = max(threads.get(nodeid, 0.0), old_threaded.get(nodeid, 0.0))
        if share >= THREADED_SHARE:
            threaded[nodeid] = round(share, 2)
    doc["suite"] = suite
    doc["version"] = VERSION
    doc["baselines"][key] = {
        "hardware": hardware, "saves": saves,
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "greentrack": version, "python": sys.version.split()[0],
        "total_j": _sig(sum(statistics.median(v) for v in new_tests.values())) if new_tests else 0.0,
        "tests": new_tests, "threaded": threaded,
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(_dumps(doc), encoding="utf-8")
    os.replace(tmp, p)
    return key, saves


def _dumps(doc: dict[str, Any]) -> str:
    """JSON with sorted keys; a test's figures on one line (small diffs)."""
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
    # fold each list of numbers onto one line
    out: list[str] = []
    buf: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if buf:
            buf.append(s)
            if s.startswith("]"):
                out.append(buf[0] + " ".join(buf[1:-1]) + buf[-1])
                buf = []
            continue
        if s.endswith("[") and ":" in s:
            buf = [line]
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def threaded_share(record: dict[str, Any]) -> float:
    """The share of a test's call CPU on other threads that the rule reads from its record: 0 when
    the other threads used less than :data:`THREADED_MIN_CPU_S` (a short-lived thread, or one left
    running by an earlier test)."""
    share = record.get("other_threads")
    if not isinstance(share, (int, float)) or isinstance(share, bool):
        return 0.0
    cpu_s = record.get("other_threads_cpu_s")
    if isinstance(cpu_s, (int, float)) and cpu_s < THREADED_MIN_CPU_S:
        return 0.0
    return float(share)


def _shares(v: Any) -> dict[str, float]:
    """An entry's ``threaded`` map (absent in files written before it: no test marked)."""
    if not isinstance(v, dict):
        return {}
    return {str(k): float(x) for k, x in v.items()
            if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)}


def _as_list(v: Any) -> list[float]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [float(v)]
    if isinstance(v, list):
        return [float(x) for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if isinstance(v, dict) and isinstance(v.get("energy_j"), (int, float)):
        return [float(v["energy_j"])]
    return []


@dataclass
class Regression:
    """One test over its baseline."""

    nodeid: str
    before_j: float  # median of the saved figures
    highest_j: float  # highest saved figure
    after_j: float
    method: str

    @property
    def change_pct(self) -> float:
        return (self.after_j / self.before_j - 1.0) * 100.0 if self.before_j > 0 else math.inf


@dataclass
class NotCompared:
    """A scheduling-dependent test with too few saved figures to know its spread: listed, not judged."""

    nodeid: str
    other_threads: float | None  # this run's share of the call's CPU on other threads (None: not recorded)
    saved_other_threads: float | None  # the baseline's (None: not marked threaded there)
    saves: int  # the test's saved figures
    before_j: float  # median of the saved figures
    after_j: float

    @property
    def share(self) -> float:
        return max(self.other_threads or 0.0, self.saved_other_threads or 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "other_threads": self.other_threads,
                "saved_other_threads": self.saved_other_threads, "saves": self.saves,
                "before_j": self.before_j, "after_j": self.after_j,
                "reason": f"{self.share * 100:.0f}% of its CPU ran on other threads; compared once the "
                          f"baseline holds {THREADED_MIN_SAVES} saves"}


@dataclass
class Comparison:
    """This run against the baseline entry of its hardware key."""

    path: str
    key: str
    pct: float
    status: str  # "compared", "no-file", "other-hardware", "empty"
    saves: int = 0
    regressions: list[Regression] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    not_compared: list[NotCompared] = field(default_factory=list)  # scheduling-dependent, too few saves
    common: int = 0
    total_before_j: float = 0.0  # the compared tests' total: the tests in common less those not compared
    total_after_j: float = 0.0
    floor_j: float = 0.0
    other_keys: list[str] = field(default_factory=list)
    method: str = ""

    @property
    def total_change_pct(self) -> float | None:
        if self.total_before_j <= 0:
            return None
        return (self.total_after_j / self.total_before_j - 1.0) * 100.0

    @property
    def total_regressed(self) -> bool:
        c = self.total_change_pct
        return c is not None and c > self.pct and (self.total_after_j - self.total_before_j) > self.floor_j

    @property
    def failed(self) -> bool:
        return bool(self.regressions) or self.total_regressed

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "hardware_key": self.key, "status": self.status, "tolerance_pct": self.pct,
                "saves": self.saves, "tests_compared": self.common, "floor_j": self.floor_j,
                "tests_in_total": self.common - len(self.not_compared),
                "total_before_j": self.total_before_j, "total_after_j": self.total_after_j,
                "total_change_pct": self.total_change_pct, "regressed": self.failed,
                "regressions": [{"nodeid": r.nodeid, "before_j": r.before_j, "highest_j": r.highest_j,
                                 "after_j": r.after_j,
                                 # a test saved at 0 J: an infinite change, which JSON cannot hold
                                 "change_pct": r.change_pct if math.isfinite(r.change_pct) else None,
                                 "method": r.method}
                                for r in self.regressions],
                "added": self.added, "removed": self.removed,
                "not_compared": [n.as_dict() for n in self.not_compared],
                "threaded_share": THREADED_SHARE, "threaded_min_saves": THREADED_MIN_SAVES,
                "other_hardware": self.other_keys}


def compare(doc: dict[str, Any] | None, path: str, hardware: dict[str, Any], tests: dict[str, float],
            pct: float, method: str, threads: dict[str, float] | None = None) -> Comparison:
    """Compare this run's per-test energies (*tests*) with the entry of its hardware key in *doc*.

    A test regresses when its energy is above the median of its saved figures by more than *pct* %
    (above the highest of them for a scheduling-dependent test) and above their median by more than
    :data:`FLOOR_SHARE` of the suite's baseline energy (the medians of the tests in common). The
    compared tests regress together when their sum is more than *pct* % and the floor above the sum
    of their medians. Added and removed tests
    are listed, never failed; so is a scheduling-dependent test (at least :data:`THREADED_SHARE` of
    its CPU on other threads in this run, per *threads*, or in the baseline) with fewer than
    :data:`THREADED_MIN_SAVES` saved figures, which is left out of that sum too.
    """
    key = hardware_key(hardware)
    if doc is None:
        return Comparison(path, key, pct, "no-file", method=method)
    entry = doc["baselines"].get(key)
    if entry is None:
        return Comparison(path, key, pct, "other-hardware", other_keys=sorted(doc["baselines"]), method=method)
    saved = {n: _as_list(v) for n, v in entry["tests"].items()}
    saved = {n: v for n, v in saved.items() if v}
    if not saved:
        return Comparison(path, key, pct, "empty", method=method)
    common = sorted(set(saved) & set(tests))
    cmp = Comparison(path, key, pct, "compared", saves=int(entry.get("saves") or 1), common=len(common),
                     added=sorted(set(tests) - set(saved)), removed=sorted(set(saved) - set(tests)), method=method)
    med = {n: statistics.median(saved[n]) for n in common}
    cmp.floor_j = FLOOR_SHARE * sum(med.values())
    limit = 1.0 + pct / 100.0
    threads = threads or {}
    threaded = _shares(entry.get("threaded"))
    for n in common:
        hi = max(saved[n])
        e = tests[n]
        now, before = threads.get(n), threaded.get(n)
        scheduling_dependent = max(now or 0.0, before or 0.0) >= THREADED_SHARE
        if len(saved[n]) < THREADED_MIN_SAVES and scheduling_dependent:
            cmp.not_compared.append(NotCompared(n, now, before, len(saved[n]), med[n], e))
            continue
        cmp.total_before_j += med[n]
        cmp.total_after_j += e
        # the reference: the median of the saved figures (one slow save does not hide a regression), the
        # highest for a scheduling-dependent test (its figures can be several times apart)
        ref = hi if scheduling_dependent else med[n]
        if e > ref * limit and e - med[n] > cmp.floor_j:
            cmp.regressions.append(Regression(n, med[n], hi, e, method))
    cmp.regressions.sort(key=lambda r: -(r.after_j - r.before_j))
    cmp.not_compared.sort(key=lambda x: (-x.after_j, x.nodeid))
    return cmp


__all__ = ["load", "save", "compare", "Comparison", "Regression", "NotCompared", "BaselineError", "hardware_key",
           "threaded_share", "KEEP", "FLOOR_SHARE", "THREADED_SHARE", "THREADED_MIN_CPU_S", "THREADED_MIN_SAVES",
           "SCHEMA"]
