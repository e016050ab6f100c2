"""``greentrack tune``: the energy-time frontier across GPU power limits (and locked SM clocks).

For each point (a power limit, optionally with locked clocks) the user's training step (or a
study workload) runs for at least *seconds*, as its own greentrack run, interleaved and
repeated. The frontier is the points no other point beats on both J/step and time/step; the
chosen setting is the one with the least energy per step whose slowdown against the default
limit stays within ``max_slowdown_pct``. It is then measured again in separate runs,
interleaved with the default, and both savings (predicted by the sweep, measured again) are
reported. Original settings are restored however the sweep ends (see
:mod:`greentrack.measure.gpucontrol`).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from ..measure.gpucontrol import GPUControl, restoring

Step = Callable[[], Any]


@dataclass
class Point:
    label: str
    power_limit_w: float
    clock_mhz: int | None = None
    j_per_step: float | None = None
    s_per_step: float | None = None
    avg_power_w: float | None = None
    run_ids: list[str] = field(default_factory=list)
    slowdown_pct: float | None = None
    saving_pct: float | None = None
    on_frontier: bool = False


@dataclass
class TuneResult:
    study_id: str
    device_index: int
    default_limit_w: float
    max_slowdown_pct: float
    points: list[Point]
    chosen: str | None
    predicted_saving_pct: float | None
    measured_saving_pct: float | None = None
    measured_slowdown_pct: float | None = None
    backend: str = "-"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def auto_limits(lim: dict[str, float], n: int = 5) -> list[float]:
    """*n* limits evenly from the minimum to the maximum, the default among them."""
    lo, hi = lim["min"], lim["max"]
    pts = [round(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
    if round(lim["default"]) not in pts:
        pts[-1] = round(lim["default"]) if lim["default"] > pts[-2] else pts[-1]
    return sorted(set(pts))


def _measure(step: Step, label: str, tags: dict[str, str], seconds: float, warmup: int,
             session_kw: dict[str, Any]) -> tuple[float | None, float, float | None, str, str]:
    from .. import session

    for _ in range(warmup):
        step()
    with session(f"{tags['study']}:{label}", tags=tags, **session_kw) as s:
        t0 = time.perf_counter()
        n = 0
        while True:
            out = step()
            samples, tokens = out if isinstance(out, tuple) else (None, None)
            s.step(samples=samples, tokens=tokens)
            n += 1
            if time.perf_counter() - t0 >= seconds:
                break
        dt = time.perf_counter() - t0
    res = s.result
    assert res is not None  # the session has stopped
    st = res.step_stats or {}
    return st.get("mean_j"), dt / n, res.avg_power_w, res.run_id, s.backend


def tune(step: Step, *, control: GPUControl, device_index: int = 0, limits: Sequence[float] | None = None,
         clocks: Sequence[int] | None = None, seconds: float = 10.0, reps: int = 3, warmup_steps: int = 3,
         max_slowdown_pct: float = 10.0, confirm_reps: int | None = None, backend: str | None = None,
         region: str | None = None, db: str | None = None,
         progress: Callable[[str], None] | None = None) -> TuneResult:
    """Sweep power limits (and locked clocks) on *step*; choose and re-measure the best within the slowdown."""
    from ..errors import GreentrackError

    lim = control.limits_w(device_index)
    default = lim["default"]
    points = [Point(f"{w:g}W", float(w)) for w in (limits or auto_limits(lim))]
    if not any(abs(p.power_limit_w - default) < 0.5 for p in points):
        points.append(Point(f"{default:g}W", default))
    points += [Point(f"{default:g}W@{c}MHz", default, int(c)) for c in (clocks or [])]
    if reps < 1 or seconds <= 0:
        raise GreentrackError("--reps must be at least 1 and --seconds positive")
    study_id = "tune-" + os.urandom(3).hex()
    session_kw = {"backend": backend, "region": region, "db": db}
    samples: dict[str, list[tuple[float | None, float, float | None]]] = {p.label: [] for p in points}
    used_backend = "-"
    say = progress or (lambda _m: None)

    def apply(p: Point) -> None:
        control.set_power_limit(device_index, p.power_limit_w)
        if p.clock_mhz is not None:
            control.lock_clocks(device_index, p.clock_mhz)

    def measure(p: Point, rep: int, phase: str) -> tuple[float | None, float, float | None]:
        nonlocal used_backend
        apply(p)
        tags = {"study": study_id, "setting": p.label, "rep": str(rep), "phase": phase,
                "power_limit_w": f"{p.power_limit_w:g}", "technique": "power-limit",
                "baseline": "yes" if p.clock_mhz is None and abs(p.power_limit_w - default) < 0.5 else "no"}
        if p.clock_mhz is not None:
            tags["sm_clock_mhz"] = str(p.clock_mhz)
        j, sps, w, rid, used_backend = _measure(step, p.label, tags, seconds, warmup_steps, session_kw)
        p.run_ids.append(rid)
        if p.clock_mhz is not None:
            control.restore()  # unlock before the next point
        say(f"{phase} rep {rep + 1}: {p.label}: {'-' if j is None else f'{j:.3f}'} J/step, {sps * 1e3:.1f} ms/step")
        return j, sps, w

    notes: list[str] = []
    with restoring(control):
        for r in range(reps):
            order = points[r % len(points):] + points[: r % len(points)]
            for p in order:
                samples[p.label].append(measure(p, r, "sweep"))
        for p in points:
            js = [j for j, _s, _w in samples[p.label] if j is not None]
            p.j_per_step = statistics.median(js) if js else None
            p.s_per_step = statistics.median(s for _j, s, _w in samples[p.label])
            ws = [w for _j, _s, w in samples[p.label] if w is not None]
            p.avg_power_w = statistics.median(ws) if ws else None
        base = next(p for p in points if p.clock_mhz is None and abs(p.power_limit_w - default) < 0.5)
        for p in points:
            if p.s_per_step and base.s_per_step:
                p.slowdown_pct = (p.s_per_step / base.s_per_step - 1.0) * 100.0
            if p.j_per_step is not None and base.j_per_step:
                p.saving_pct = (1.0 - p.j_per_step / base.j_per_step) * 100.0
        measured = [p for p in points if p.j_per_step is not None and p.s_per_step is not None]
        best_j = float("inf")
        for p in sorted(measured, key=lambda q: (q.s_per_step, q.j_per_step)):
            if p.j_per_step < best_j:  # type: ignore[operator]
                p.on_frontier, best_j = True, p.j_per_step  # type: ignore[assignment]
        ok = [p for p in measured if (p.slowdown_pct or 0.0) <= max_slowdown_pct]
        chosen = min(ok, key=lambda p: p.j_per_step) if ok else None  # type: ignore[arg-type, return-value]
        result = TuneResult(study_id, device_index, default, max_slowdown_pct, points,
                            chosen.label if chosen else None, chosen.saving_pct if chosen else None, notes=notes)
        if chosen is None or base.j_per_step is None:
            notes.append("nothing was measured: no choice made")
        elif chosen is base:
            notes.append("the default limit is already the best within the slowdown allowed")
        else:
            again: dict[str, list[tuple[float | None, float, float | None]]] = {base.label: [], chosen.label: []}
            for r in range(confirm_reps or reps):
                for p in ((base, chosen) if r % 2 == 0 else (chosen, base)):
                    again[p.label].append(measure(p, r, "confirm"))
            jb = statistics.median(j for j, _s, _w in again[base.label] if j is not None)
            jc = statistics.median(j for j, _s, _w in again[chosen.label] if j is not None)
            sb = statistics.median(s for _j, s, _w in again[base.label])
            sc = statistics.median(s for _j, s, _w in again[chosen.label])
            result.measured_saving_pct = (1.0 - jc / jb) * 100.0
            result.measured_slowdown_pct = (sc / sb - 1.0) * 100.0
    result.backend = used_backend
    return result
