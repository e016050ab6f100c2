"""``greentrack jsonl-summary FILE``: one row per run found in a greentrack-jsonl file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS = {"start", "samples", "budget_exceeded", "end"}


@dataclass
class RunSummary:
    """What a file says about one run (a run still going has no ``end`` line yet)."""

    run_id: str
    name: str | None = None
    status: str = "running"
    started_at: float | None = None
    last_t: float | None = None
    energy_j: float | None = None
    duration_s: float | None = None
    flushes: int = 0
    samples: int = 0
    budget_exceeded: bool = False


def read_runs(path: str | Path) -> list[RunSummary]:
    """Parse *path*; raises ``GreentrackError`` (one line) for a missing or garbled file.

    A last line without its newline is a write in progress and is left out.
    """
    from greentrack.errors import GreentrackError

    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise GreentrackError(f"cannot read {p}: {exc.strerror or exc}") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] != b"":
        lines = lines[:-1]  # unterminated tail: being written now
    runs: dict[str, RunSummary] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise GreentrackError(f"{p} line {n}: not JSON ({exc})") from None
        if not isinstance(rec, dict) or rec.get("event") not in EVENTS or not isinstance(rec.get("run_id"), str):
            raise GreentrackError(f"{p} line {n}: not a greentrack-jsonl record (needs 'event' and 'run_id')")
        _apply(runs.setdefault(rec["run_id"], RunSummary(rec["run_id"])), rec)
    return list(runs.values())


def _apply(r: RunSummary, rec: dict[str, Any]) -> None:
    ev, t = rec["event"], rec.get("t")
    if isinstance(t, (int, float)):
        r.last_t = t if r.last_t is None else max(r.last_t, t)
    if ev == "start":
        r.name = rec.get("name", r.name)
        r.started_at = rec.get("started_at", t)
    elif ev == "samples":
        r.flushes += 1
        r.samples += sum(len(d.get("w") or []) for d in rec.get("devices") or [])
        if rec.get("energy_j") is not None:
            r.energy_j = rec["energy_j"]
    elif ev == "budget_exceeded":
        r.budget_exceeded = True
    elif ev == "end":
        res = rec.get("result") or {}
        r.name = rec.get("name") or res.get("name") or r.name
        r.status = rec.get("status") or res.get("status") or "finished"
        r.energy_j = res.get("energy_j")
        r.duration_s = res.get("duration_s")
        r.started_at = res.get("started_at", r.started_at)
    if r.status == "running" and r.started_at is not None and r.last_t is not None:
        r.duration_s = r.last_t - r.started_at


def render(runs: list[RunSummary]) -> str:
    """An aligned text table, one row per run in file order."""
    from greentrack.units import fmt_duration, fmt_energy, table

    rows = [[r.name or "?", r.run_id, r.status + (" (budget exceeded)" if r.budget_exceeded else ""),
             fmt_energy(r.energy_j), fmt_duration(r.duration_s), str(r.flushes), str(r.samples)] for r in runs]
    return table(["name", "id", "status", "energy", "duration", "flushes", "samples"], rows, right={3, 4, 5, 6})


def register(cli: Any) -> None:
    """Add ``jsonl-summary`` to the greentrack CLI."""
    import click

    @cli.command("jsonl-summary")
    @click.argument("file")
    def jsonl_summary(file: str) -> None:
        """One row per run in a greentrack-jsonl FILE.

        Shows name, id, status, energy, duration, and the flushes and samples seen.
        Energy and duration are the run's totals once its end line is written, else the energy
        so far (last flush) and the time since its start.
        """
        runs = read_runs(file)
        if not runs:
            click.echo(f"no runs in {file}")
            return
        click.echo(render(runs))
