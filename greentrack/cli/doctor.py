"""``greentrack doctor``: what this machine can measure, in plain words.

It opens each source the way a session would and says, per device, what greentrack will use
for the run total and for the time series (and so for per-step and per-phase energy), what
is missing and why, and where runs are stored. It never writes anything.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

import click


def _gpus(nv: Any = None) -> dict[str, Any]:
    from ..measure.sources import SourceUnavailable
    from ..measure.sources.nvml import NVMLSource

    out: dict[str, Any] = {"available": False, "devices": []}
    try:
        src = NVMLSource(nv=nv)
    except SourceUnavailable as exc:
        out["why"] = str(exc)
        return out
    except Exception as exc:  # a bad GREENTRACK_NVML_* setting, or a broken driver
        out["why"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return out
    try:
        out["available"] = True
        out["driver"] = src.driver
        try:
            out["nvml"] = str(src.nv.nvmlSystemGetNVMLVersion())
        except Exception:
            out["nvml"] = None
        for d in src.devices:
            caps = src.caps.get(d.key, {})
            out["devices"].append({
                "key": d.key, "index": d.index, "name": d.name, "uuid": d.uuid, "counter": bool(caps.get("counter")),
                "buffer": bool(caps.get("buffer")), "buffer_held": caps.get("buffer_held", 0),
                "buffer_period_ms": caps.get("buffer_period_ms"), "instant": bool(caps.get("instant")),
                "average": bool(caps.get("average")), "total_method": d.method, "series_method": d.series_method,
                "info": dict(d.info)})
        out["poll_interval_s"] = src.poll_interval_s
    finally:
        src.close()
    return out


def _rapl() -> dict[str, Any]:
    from ..measure.sources.rapl import find_zones, powercap_root

    root = powercap_root()
    zones = find_zones(root)
    return {"root": str(root), "zones": [{"zone": f"intel-rapl:{z.zone_id}", "name": z.name, "kind": z.kind,
                                          "readable": z.readable, "why": z.error} for z in zones]}


def _database(db: str | None) -> dict[str, Any]:
    from .. import settings as config

    path = config.resolve_db_path(db)
    out: dict[str, Any] = {"path": str(path), "exists": path.exists()}
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    out["writable"] = os.access(path if path.exists() else parent, os.W_OK)
    if path.exists():
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
            try:
                out["runs"] = con.execute("select count(*) from runs").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error as exc:
            out["error"] = str(exc)
    return out


def _scope() -> dict[str, Any]:
    keys = ("CUDA_VISIBLE_DEVICES", "LOCAL_RANK", "RANK", "WORLD_SIZE", "GREENTRACK_ALL_GPUS", "GREENTRACK_BACKEND",
            "GREENTRACK_NVML_COUNTER", "GREENTRACK_NVML_SERIES", "GREENTRACK_JOB_ID", "TORCHELASTIC_RUN_ID")
    return {k: os.environ[k] for k in keys if k in os.environ}


def _cpu_model(gpus: dict[str, Any], rapl: dict[str, Any]) -> dict[str, Any]:
    """The CPU model's inputs, and whether ``backend=auto`` would use it here (nothing else measures)."""
    from .. import settings as config
    from ..errors import GreentrackError
    from ..measure.sources.cpu_model import resolve_inputs

    out: dict[str, Any] = {"auto_uses_it": not gpus["available"] and not any(z["readable"] for z in rapl["zones"])}
    try:
        inputs = resolve_inputs(config.load_tool_config())
    except GreentrackError as exc:
        out["error"] = str(exc)
        return out
    out.update(watts_per_thread=inputs.watts_per_thread, basis=inputs.basis, idle_share=inputs.idle_share,
               idle_basis=inputs.idle_basis, cpu=inputs.cpu)
    return out


def diagnose(db: str | None = None, nv: Any = None) -> dict[str, Any]:
    """Everything ``greentrack doctor`` reports, as a dict (``nv``: a pynvml stand-in, for tests)."""
    from .. import __version__

    gpus, rapl = _gpus(nv), _rapl()
    return {"greentrack": __version__, "gpus": gpus, "rapl": rapl, "cpu_model": _cpu_model(gpus, rapl),
            "database": _database(db), "environment": _scope()}


_SERIES_WORDS = {
    "buffer": "the driver's power-sample buffer",
    "instant": "instant power polled every 0.1 s",
    "average": "the driver's one-second average power, polled (lags the load: per-phase figures are rough)",
    "none": "nothing (no power reading works)",
}


def render(d: dict[str, Any]) -> str:
    """The diagnosis in plain words."""
    lines = [f"greentrack {d['greentrack']} doctor: what this machine can measure", ""]
    g = d["gpus"]
    if not g["available"]:
        lines += ["GPUs: none measured.", f"  {g.get('why', 'NVML is not available')}."]
    else:
        lines.append(f"GPUs: {len(g['devices'])} measured through NVML (driver {g.get('driver') or '?'}, "
                     f"NVML {g.get('nvml') or '?'}).")
        for x in g["devices"]:
            lines.append(f"  {x['key']}  {x['name']}  {x['uuid']}")
            if x["counter"]:
                cword = "yes" if x["total_method"] == "counter" else "yes, but switched off (GREENTRACK_NVML_COUNTER)"
            else:
                cword = "no (older than Volta, or not exposed)"
            lines.append(f"    energy counter: {cword}")
            if x["buffer"]:
                held = x.get("buffer_held") or 0
                per = x.get("buffer_period_ms")
                extra = f", one every {per:.0f} ms, {held} held" if per else ""
                lines.append(f"    power-sample buffer: yes{extra}")
            else:
                lines.append("    power-sample buffer: no")
            lines.append(f"    instant power: {'yes' if x['instant'] else 'no'};"
                         f" average power: {'yes' if x['average'] else 'no'}")
            if x["total_method"] == "counter":
                total = "the energy counter (as exact as the GPU allows)"
            else:
                total = f"the integrated series ({x['series_method']}), no counter"
            lines.append(f"    run totals from {total};")
            words = _SERIES_WORDS.get(x["series_method"], x["series_method"])
            lines.append(f"    per-step and per-phase energy from {words}"
                         + (", reconciled to the counter." if x["total_method"] == "counter" else "."))
            for k, v in sorted(x["info"].items()):
                lines.append(f"    note: {k}: {v}")
    env = d["environment"]
    if "LOCAL_RANK" in env and env.get("GREENTRACK_ALL_GPUS") != "1":
        lines.append(f"  LOCAL_RANK={env['LOCAL_RANK']}: this process measures only its own GPU "
                     "(GREENTRACK_ALL_GPUS=1 measures all).")
    if "CUDA_VISIBLE_DEVICES" in env:
        lines.append(f"  CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']!r} limits which GPUs are measured.")
    lines.append("")
    r = d["rapl"]
    zones = r["zones"]
    readable = [z for z in zones if z["readable"]]
    if not zones:
        lines += ["CPU and memory (RAPL): not measured.",
                  f"  {r['root']} has no intel-rapl zones (a virtual machine, a container without /sys/class/powercap,"
                  " or a CPU without RAPL). RAPL records nothing for the CPU here: no estimate from it."]
    elif not readable:
        lines += ["CPU and memory (RAPL): not measured.",
                  f"  zones found under {r['root']}, but {zones[0]['why']}.",
                  "  Run as root, or allow reading: sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
                  "(Linux >= 5.10 restricts it). RAPL records nothing for the CPU here: no estimate from it."]
    else:
        lines.append(f"CPU and memory (RAPL): {len(readable)} zone(s) measured with their energy counters.")
        for z in zones:
            state = "readable" if z["readable"] else "not readable: " + str(z["why"])
            lines.append(f"  {z['zone']}  {z['name']:<10} {state}")
    m = d.get("cpu_model") or {}
    if m.get("error"):
        lines.append(f"CPU model (cpu-model): cannot be used: {m['error']}.")
    elif m:
        use = ("used by backend auto here, since nothing measures power: figures are modelled, marked ~"
               if m["auto_uses_it"] else "not used by backend auto (a measured source wins); ask for it by name")
        lines.append(f"CPU model (cpu-model): {use}.")
        lines.append(f"  energy = CPU seconds of the process and its children x {m['watts_per_thread']:.3g} "
                     f"W per thread ({m['basis']}); idle share {m['idle_share']:g}.")
    lines.append("")
    db = d["database"]
    state = f"{db['runs']} runs" if "runs" in db else ("not created yet" if not db["exists"] else db.get("error", ""))
    lines.append(f"Database: {db['path']} ({state}; {'writable' if db['writable'] else 'NOT writable'}).")
    lines.append("  Set GREENTRACK_DB or [tool.greentrack] db in pyproject.toml to use another file.")
    backend = env.get("GREENTRACK_BACKEND", "auto")
    lines.append(f"Backend: {backend}" + (" (GREENTRACK_BACKEND)" if "GREENTRACK_BACKEND" in env else
                                          " (default: NVML when a GPU answers, plus RAPL where readable; "
                                          "the CPU model where neither is)") + ".")
    return "\n".join(lines)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Database file to check.")
def doctor_cmd(as_json: bool, db: str | None) -> None:
    """What this machine can measure: GPUs, counters, sample buffers, RAPL, the database."""
    d = diagnose(db)
    click.echo(json.dumps(d, indent=1, default=str) if as_json else render(d))


def register(cli: click.Group) -> None:
    cli.add_command(doctor_cmd)


__all__ = ["diagnose", "render", "register"]
