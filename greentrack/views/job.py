"""One job across nodes: its total, per node and per rank, with the devices of every node. Loaded runs in, text out.

A job is the runs that share a job id (``GREENTRACK_JOB_ID``, torchrun's rendezvous id, Slurm's
job and step): one per rank, on one or many hosts, all written to one database (a PostgreSQL
server, or files gathered with ``greentrack push``). :func:`summarise` adds them up:

- the job total is the sum of its runs' energy and CO2e (each run's own PUE and grid intensity);
- a run recorded *inside* another run of the same job (a script's own session under
  ``greentrack run``, tagged ``parent_run``) is listed but not added, so nothing counts twice;
- a device (same uuid) measured by two runs of one node is named in a note: the total then
  counts it twice (``GREENTRACK_ALL_GPUS=1`` on every rank does that);
- runs still running, or lost, are included with the energy they had stored at their last flush,
  and a note says the total is partial.
"""

from __future__ import annotations

from typing import Any

from ..store.records import summarise_devices
from ..units import J_PER_KWH, fmt_co2, fmt_duration, fmt_kwh, fmt_time, plural, printable, table
from .runs import co2e_kg, dumps_json

SCHEMA_NAME = "greentrack.job"
SCHEMA_VERSION = 1


def _sum(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) if got else None


def _device_label(d: dict[str, Any]) -> str:
    label = d.get("name") if d.get("kind") == "gpu" else d.get("kind")
    return str(label or "?")


def summarise(job_id: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The job of *runs* (each a ``RunStore.get_run`` dict with ``devices``): total, nodes, ranks, notes."""
    ids = {r["id"] for r in runs}
    counted = [r for r in runs if (r.get("tags") or {}).get("parent_run") not in ids]
    nested = [r for r in runs if r not in counted]
    notes: list[str] = []
    ranks = []
    for r in sorted(runs, key=lambda r: (r.get("rank") is None, r.get("rank") or 0, r.get("host") or "",
                                         r.get("started_at") or 0)):
        ranks.append({"rank": r.get("rank"), "host": r.get("host"), "id": r["id"], "name": r.get("name"),
                      "status": r.get("status"), "energy_j": r.get("energy_j"), "co2e_kg": co2e_kg(r),
                      "duration_s": r.get("duration_s"), "counted": r in counted,
                      "devices": summarise_devices([_device_label(d) for d in r.get("devices") or []])})
    nodes: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, str], str] = {}
    for r in counted:
        host = str(r.get("host") or "?")
        n = nodes.setdefault(host, {"host": host, "runs": 0, "ranks": [], "energy_j": None, "co2e_kg": None,
                                    "device_names": []})
        n["runs"] += 1
        if r.get("rank") is not None:
            n["ranks"].append(r["rank"])
        n["energy_j"] = _sum([n["energy_j"], r.get("energy_j")])
        n["co2e_kg"] = _sum([n["co2e_kg"], co2e_kg(r)])
        for d in r.get("devices") or []:
            uuid = d.get("uuid")
            if uuid and (host, uuid) in seen:
                notes.append(f"device {uuid} on {host} was measured by runs {seen[(host, uuid)]} and {r['id']}: "
                             "the total counts it twice")
                continue
            if uuid:
                seen[(host, uuid)] = r["id"]
            n["device_names"].append(_device_label(d))
    node_list = []
    for n in sorted(nodes.values(), key=lambda n: (min(n["ranks"]) if n["ranks"] else 1 << 30, n["host"])):
        names = n.pop("device_names")
        n["ranks"] = sorted(n["ranks"])
        n["devices"] = summarise_devices(names)
        n["device_count"] = len(names)
        node_list.append(n)
    unfinished = [r for r in counted if r.get("status") in ("running", "lost")]
    if unfinished:
        notes.append(f"{plural(len(unfinished), 'run')} not finished ({', '.join(r['id'] for r in unfinished)}): "
                     "their energy is what they had stored at their last flush")
    if nested:
        notes.append(f"{plural(len(nested), 'run')} recorded inside another run of the job "
                     f"({', '.join(r['id'] for r in nested)}): listed, not added to the total")
    unmeasured = [r["id"] for r in counted if r.get("energy_j") is None]
    if unmeasured:
        notes.append(f"no energy measured by {', '.join(unmeasured)}")
    world = {r.get("world_size") for r in counted if r.get("world_size")}
    rank_set = {r.get("rank") for r in counted if r.get("rank") is not None}
    if len(world) == 1:
        expected = int(next(iter(world)) or 0)
        missing = sorted(set(range(expected)) - rank_set)
        if missing:
            notes.append(f"world size {expected} but no run of rank(s) {', '.join(map(str, missing))} is stored")
    starts = [r["started_at"] for r in counted if r.get("started_at") is not None]
    ends = [r.get("ended_at") or (r["started_at"] + (r.get("duration_s") or 0.0))
            for r in counted if r.get("started_at") is not None]
    statuses: dict[str, int] = {}
    for r in counted:
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    energy = _sum([r.get("energy_j") for r in counted])
    total = {"runs": len(counted), "nodes": len(node_list), "ranks": len(rank_set),
             "energy_j": energy, "energy_kwh": None if energy is None else energy / J_PER_KWH,
             "co2e_kg": _sum([co2e_kg(r) for r in counted]), "started_at": min(starts) if starts else None,
             "ended_at": max(ends) if ends else None, "statuses": statuses,
             "devices": sum(n["device_count"] for n in node_list)}
    total["span_s"] = (total["ended_at"] - total["started_at"]) if starts else None
    return {"job_id": job_id, "total": total, "nodes": node_list, "ranks": ranks, "notes": notes}


def render_job(job: dict[str, Any]) -> str:
    """The job as text: the total, a table of nodes, a table of ranks, the notes."""
    t = job["total"]
    status = ", ".join(f"{n} {s}" for s, n in sorted(t["statuses"].items()))
    out = [f"job {printable(job['job_id'])}: {plural(t['runs'], 'run')} on {plural(t['nodes'], 'node')} "
           f"({plural(t['devices'], 'device')}), {status}",
           f"  from {fmt_time(t['started_at'])} for {fmt_duration(t['span_s'])}",
           f"  total  {fmt_kwh(t['energy_j'])} kWh  {fmt_co2(t['co2e_kg'])}  (measured: the sum of its runs)", ""]
    out.append(table(["node", "runs", "ranks", "kWh", "CO2e", "devices"],
                     [[n["host"], str(n["runs"]), ",".join(map(str, n["ranks"])) or "-", fmt_kwh(n["energy_j"]),
                       fmt_co2(n["co2e_kg"]), n["devices"] or "-"] for n in job["nodes"]], right={1, 3, 4}))
    out.append("")
    out.append(table(["rank", "node", "run", "status", "duration", "kWh", "CO2e", "devices"],
                     [["-" if r["rank"] is None else str(r["rank"]), str(r["host"] or "?"), r["id"],
                       str(r["status"]) + ("" if r["counted"] else " (inside)"), fmt_duration(r["duration_s"]),
                       fmt_kwh(r["energy_j"]), fmt_co2(r["co2e_kg"]), r["devices"] or "-"] for r in job["ranks"]],
                     right={0, 4, 5, 6}))
    if job["notes"]:
        out.append("")
        out += [f"note: {printable(n)}" for n in job["notes"]]
    return "\n".join(out)


def job_json(job: dict[str, Any]) -> str:
    """The job as JSON (schema ``greentrack.job`` version 1; non-finite numbers written as null)."""
    return dumps_json({"schema": SCHEMA_NAME, "version": SCHEMA_VERSION, **job})
