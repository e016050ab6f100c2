"""greentrack-jsonl: stream what greentrack measures to a JSON Lines file.

Registered through the ``greentrack`` entry-point group under the name ``jsonl``. Nothing is
written unless a path is configured (``GREENTRACK_JSONL`` or ``[tool.greentrack.jsonl] path``).
Each event is one JSON object on one line, appended with a single ``write`` on a file opened
with ``O_APPEND``:

- ``start``: run id, name, tags, region, intensity, backend, devices
- ``samples``: one per sampler flush, the new ``(t, W)`` samples of each device and the energy so far
- ``budget_exceeded``: once, when a live budget is crossed
- ``end``: the run's totals (``RunResult.as_dict()``)

Every line carries ``v`` (format version), ``event``, ``run_id``, ``t`` (unix time) and ``pid``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import greentrack

from .writer import FORMAT_VERSION, writer_for

__all__ = ["FORMAT_VERSION"]
__version__ = "0.1.0"


def _line(event: str, session: Any, **fields: Any) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "event": event, "run_id": session.id, "t": time.time(), "pid": os.getpid(),
            **fields}


def _devices(session: Any) -> list[dict[str, Any]]:
    out = []
    for st in getattr(session.sampler, "states", None) or []:
        d = st.device
        out.append({"key": d.key, "kind": d.kind, "index": d.index, "name": d.name, "uuid": d.uuid,
                    "method": d.method})
    return out


@greentrack.hookimpl
def greentrack_session_start(session: Any) -> None:
    w = writer_for(session.id)
    if w is None:
        return
    it = session.intensity
    w.write(_line(
        "start", session, name=session.name, tags=dict(session.tags),
        region=getattr(it, "region", None), intensity_g_per_kwh=getattr(it, "g_per_kwh", None),
        intensity_source=it.describe() if it is not None else None, pue=session.pue,
        backend=session.backend, started_at=session.started_at, rank=session.rank,
        world_size=session.world_size, job_id=session.job_id, devices=_devices(session)))


@greentrack.hookimpl
def greentrack_samples(session: Any, batch: Any) -> None:
    w = writer_for(session.id)
    if w is None:
        return
    w.flushes += 1
    devices = []
    for key, times, powers in batch:
        devices.append({"key": key, "t": [round(float(x), 6) for x in times],
                        "w": [round(float(x), 3) for x in powers]})
    w.write(_line("samples", session, flush=w.flushes, energy_j=session.live_energy_j(),
                  devices=devices))


@greentrack.hookimpl
def greentrack_budget_exceeded(session: Any, budget: Any, usage: Any) -> None:
    w = writer_for(session.id)
    if w is None:
        return
    w.write(_line("budget_exceeded", session, name=session.name, budget=dict(budget), usage=dict(usage)))


@greentrack.hookimpl
def greentrack_session_end(session: Any, result: Any) -> None:
    w = writer_for(session.id, end=True)
    if w is None:
        return
    w.write(_line("end", session, name=result.name, status=result.status, flushes=w.flushes,
                  result=result.as_dict()))


@greentrack.hookimpl
def greentrack_register_commands(cli: Any) -> None:
    from .summary import register

    register(cli)
