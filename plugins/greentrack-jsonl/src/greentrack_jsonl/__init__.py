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


def _line(event: str, run: Any, **fields: Any) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "event": event, "run_id": run.id, "t": time.time(), "pid": os.getpid(),
            **fields}


def _devices(run: Any) -> list[dict[str, Any]]:
    return [{"key": d.key, "kind": d.kind, "index": d.index, "name": d.name, "uuid": d.uuid, "method": d.method}
            for d in run.devices]


@greentrack.hookimpl
def greentrack_session_start(run: Any) -> None:
    w = writer_for(run.id)
    if w is None:
        return
    w.write(_line(
        "start", run, name=run.name, tags=dict(run.tags),
        region=run.region, intensity_g_per_kwh=run.intensity_g_per_kwh,
        intensity_source=run.intensity_source, pue=run.pue,
        backend=run.backend, started_at=run.started_at, rank=run.rank,
        world_size=run.world_size, job_id=run.job_id, devices=_devices(run)))


@greentrack.hookimpl
def greentrack_samples(run: Any, batch: Any) -> None:
    w = writer_for(run.id)
    if w is None:
        return
    w.flushes += 1
    devices = []
    for key, times, powers in batch:
        devices.append({"key": key, "t": [round(float(x), 6) for x in times],
                        "w": [round(float(x), 3) for x in powers]})
    w.write(_line("samples", run, flush=w.flushes, energy_j=run.live_energy_j,
                  devices=devices))


@greentrack.hookimpl
def greentrack_budget_exceeded(run: Any, budget: Any, usage: Any) -> None:
    w = writer_for(run.id)
    if w is None:
        return
    w.write(_line("budget_exceeded", run, name=run.name, budget=dict(budget), usage=dict(usage)))


@greentrack.hookimpl
def greentrack_session_end(run: Any, result: Any) -> None:
    w = writer_for(run.id, end=True)
    if w is None:
        return
    w.write(_line("end", run, name=result.name, status=result.status, flushes=w.flushes,
                  result=result.as_dict()))


@greentrack.hookimpl
def greentrack_register_commands(cli: Any) -> None:
    from .summary import register

    register(cli)
