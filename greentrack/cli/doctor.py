"""``greentrack doctor``: what this machine can measure, in plain words.

It opens each source the way a session would and says, per device, what greentrack will use
for the run total and for the time series (and so for per-step and per-phase energy), what
is missing and why, and where runs are stored: whether the database is sound and really
writable (found by trying, writing nothing), which runs wait in the spool, and which settings of
:data:`greentrack.settings.SETTINGS` are set, to what, and where (the environment or the
``[tool.greentrack]`` table of the nearest pyproject.toml). It never writes anything, except with
``--deliver`` (delivers the spooled runs) and ``--salvage`` (copies a damaged database's readable rows).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..units import plural


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
    from ..errors import GreentrackError
    from ..store.health import inspect, inspect_server

    try:
        location = config.resolve_db(db)
    except GreentrackError as exc:  # e.g. a pyproject.toml that does not parse: say so, diagnose the rest
        return {"path": None, "exists": False, "writable": False, "error": str(exc)}
    return inspect_server(location) if isinstance(location, str) else inspect(location)


def _spool() -> dict[str, Any]:
    from ..store.health import spool_status

    return spool_status()


def _scope() -> dict[str, Any]:
    keys = ("CUDA_VISIBLE_DEVICES", "LOCAL_RANK", "RANK", "WORLD_SIZE", "GREENTRACK_ALL_GPUS", "GREENTRACK_BACKEND",
            "GREENTRACK_NVML_COUNTER", "GREENTRACK_NVML_SERIES", "GREENTRACK_JOB_ID", "TORCHELASTIC_RUN_ID")
    return {k: os.environ[k] for k in keys if k in os.environ}


def _settings() -> dict[str, Any]:
    """Each registered setting: whether it is set, its value and where it came from (env > pyproject)."""
    from ..errors import GreentrackError, suggest
    from ..settings import SETTINGS, load_tool_config, mask_url

    out: dict[str, Any] = {"pyproject": None, "items": [], "unknown_keys": []}
    try:
        conf = dict(load_tool_config())
    except GreentrackError as exc:  # a broken pyproject.toml is reported, not raised
        conf = {}
        out["pyproject_error"] = str(exc)
    root = conf.pop("_root", None)
    if root is not None:
        out["pyproject"] = str(Path(root) / "pyproject.toml")
    for st in SETTINGS:
        item: dict[str, Any] = {"env": st.env or None, "key": st.key, "set": False, "value": None, "from": None,
                                "default": st.default, "help": st.help}
        env_value = os.environ.get(st.env) if st.env else None
        if env_value:  # an empty variable counts as unset, as everywhere in greentrack
            item.update(set=True, value=mask_url(env_value), **{"from": "env"})
            if st.key and st.key in conf:
                item["overrides"] = f"[tool.greentrack] {st.key}"
        elif st.key and st.key in conf:
            value = conf[st.key]
            item.update(set=True, value=mask_url(value) if isinstance(value, str) else value, **{"from": "pyproject"})
        out["items"].append(item)
    known = {st.key for st in SETTINGS if st.key}
    for key, value in conf.items():
        if key not in known and not isinstance(value, dict):  # tables belong to plugins ([tool.greentrack.jsonl])
            out["unknown_keys"].append({"key": key, "hint": suggest(key, sorted(known))})
    return out


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


def _grid() -> dict[str, Any]:
    """Where the grid intensities come from: codecarbon's data files (countries, subdivisions, clouds)."""
    from ..carbon import grid

    d = grid.codecarbon_data_dir()
    out: dict[str, Any] = {"data_dir": str(d) if d is not None else None,
                           "codecarbon": grid._codecarbon_version() if d is not None else None}
    if d is not None:
        out.update(countries=len(grid.country_table()), subdivisions=len(grid.subdivision_table()),
                   cloud_regions=len(grid.cloud_table()))
    return out


def diagnose(db: str | None = None, nv: Any = None) -> dict[str, Any]:
    """Everything ``greentrack doctor`` reports, as a dict (``nv``: a pynvml stand-in, for tests)."""
    from .. import __version__

    gpus, rapl = _gpus(nv), _rapl()
    return {"greentrack": __version__, "gpus": gpus, "rapl": rapl, "cpu_model": _cpu_model(gpus, rapl),
            "grid": _grid(), "database": _database(db), "spool": _spool(), "environment": _scope(),
            "settings": _settings()}


def _show_value(value: Any) -> str:
    if isinstance(value, dict):
        return "table: " + (", ".join(str(k) for k in value) or "(empty)")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(empty list)"
    return str(value)


def _render_settings(st: dict[str, Any]) -> list[str]:
    where = st.get("pyproject")
    lines = ["Settings (environment, then [tool.greentrack] of "
             + (f"{where}" if where else "a pyproject.toml: none found here") + "; docs/settings.md lists all):"]
    if st.get("pyproject_error"):
        lines.append(f"  {st['pyproject_error']}")
    chosen = [x for x in st["items"] if x["set"]]
    width = max((len(x["env"] if x["from"] == "env" else f"[tool.greentrack] {x['key']}") for x in chosen),
                default=0)
    for x in chosen:
        name = x["env"] if x["from"] == "env" else f"[tool.greentrack] {x['key']}"
        origin = "environment" if x["from"] == "env" else "pyproject.toml"
        extra = f"; overrides {x['overrides']}" if x.get("overrides") else ""
        lines.append(f"  {name:<{width}}  = {_show_value(x['value'])}  ({origin}{extra})")
    others = len(st["items"]) - len(chosen)
    lead = f"  none set: all {others} at their defaults" if not chosen else f"  {others} other(s) at their defaults"
    lines.append(lead + " (greentrack doctor --json lists every setting with its default).")
    for u in st.get("unknown_keys", []):
        lines.append(f"  unknown key in [tool.greentrack]: {u['key']!r}{u['hint']} (greentrack ignores it)")
    return lines


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
        lines.append(f"CPU and memory (RAPL): {plural(len(readable), 'zone')} measured with their energy counters.")
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
    gr = d.get("grid")
    if gr is not None and gr.get("data_dir") is None:
        lines.append("Grid intensity: codecarbon's data files were not found (pip install codecarbon): a region "
                     "gets no figure of its own, CO2e uses the labelled world average.")
    elif gr is not None:
        lines.append(f"Grid intensity: {gr['countries']} countries, {gr['subdivisions']} subdivisions and "
                     f"{gr['cloud_regions']} cloud regions, from codecarbon {gr['codecarbon']}'s data files "
                     "('greentrack regions' lists each with its source and year).")
    lines.append("")
    db = d["database"]
    if db.get("path") is None:
        lines.append(f"Database: unknown ({db.get('error')}).")
    else:
        lines += _render_database(db, d.get("spool"))
    chosen = {x["env"]: x for x in d.get("settings", {}).get("items", []) if x["set"] and x["env"]}
    b = chosen.get("GREENTRACK_BACKEND")
    if b is None and "settings" not in d and "GREENTRACK_BACKEND" in env:  # a diagnosis without its settings
        b = {"value": env["GREENTRACK_BACKEND"], "from": "env"}
    if b is None:
        lines.append("Backend: auto (default: NVML when a GPU answers, plus RAPL where readable; the CPU model "
                     "where neither is).")
    else:
        named = "GREENTRACK_BACKEND" if b["from"] == "env" else "[tool.greentrack] backend"
        lines.append(f"Backend: {b['value']} ({named}).")
    if "settings" in d:
        lines.append("")
        lines += _render_settings(d["settings"])
    return "\n".join(lines)


def _render_database(db: dict[str, Any], spool: dict[str, Any] | None) -> list[str]:
    from ..store.health import advice

    if db.get("is_directory"):
        return [f"Database: {db['path']} (NOT usable: {db['error']}).",
                "  Set GREENTRACK_DB or [tool.greentrack] db in pyproject.toml to a file."]
    if "runs" in db:
        state = f"{db['runs']} runs"
    elif not db["exists"]:
        state = "not created yet"
    else:
        state = db.get("error") or db.get("integrity") or ""
    if db.get("schema") is not None and db["schema"] != db.get("current_schema"):
        state += f"; schema v{db['schema']}, upgraded to v{db['current_schema']} at the next write"
    access = "writable" if db["writable"] else "NOT writable"
    if db.get("why_not_writable"):
        access += f": {db['why_not_writable']}"
    if db.get("server"):
        if db.get("error"):
            state, access = db["error"], "cannot be used now"
        elif db.get("note"):
            state = db["note"]
        state = f"{db['server']}; {state}" if isinstance(db["server"], str) else state
    lines = [f"Database: {db['path']} ({state}; {access})."]
    if db.get("damaged"):
        reason = db.get("integrity") if db.get("integrity") not in (None, "ok") else db.get("error")
        lines.append(f"  DAMAGED: {reason}. Reports and runs refuse it until it is repaired or moved aside:")
        lines += [f"  - {a}" for a in advice(db["path"])]
    if db.get("read_only_storage"):
        lines.append("  On read-only storage: reports, show and export read it; runs cannot be stored in it.")
    elif db.get("exists") and not db["writable"]:
        lines.append("  Reports, show and export can read it; new runs go to the spool until it is writable.")
    if db.get("others_can_read"):
        lines.append(f"  Readable by other users (mode {db['mode']}): chmod 600 {db['path']} keeps your runs and "
                     "command lines private.")
    if db.get("server") and db.get("error"):
        lines.append("  Runs measured meanwhile are kept in the spool and delivered once it can be written "
                     "('greentrack doctor --deliver' or 'greentrack push').")
    lines.append("  Set GREENTRACK_DB or [tool.greentrack] db in pyproject.toml to use another file or a "
                 "postgresql:// URL (its password is never shown).")
    if spool:
        waiting = spool.get("waiting") or {}
        n = sum(len(v) for v in waiting.values())
        if n:
            lines.append(f"Spool: {n} run(s) waiting in {spool['folder']} to be written:")
            for loc, ids in sorted(waiting.items()):
                lines.append(f"  {len(ids)} for {loc}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
            lines.append("  'greentrack doctor --deliver' delivers them (the next session on a database does too).")
        for u in spool.get("unreadable") or []:
            lines.append(f"  unreadable spool file {u}")
    return lines


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
@click.option("--db", type=click.Path(), default=None, help="Database to check: a SQLite file or a postgresql:// URL.")
@click.option("--deliver", is_flag=True, help="Deliver the runs waiting in the spool to their databases, then check.")
@click.option("--salvage", type=click.Path(dir_okay=False), default=None, metavar="NEW.db",
              help="Copy every row of a damaged database that can still be read into the new file NEW.db.")
def doctor_cmd(as_json: bool, db: str | None, deliver: bool, salvage: str | None) -> None:
    """What this machine can measure: GPUs, counters, sample buffers, RAPL, the database, the spool,
    the settings in force."""
    if salvage:
        from pathlib import Path

        from .. import settings as config
        from ..store.health import salvage as do_salvage

        src = config.resolve_db_path(db)
        got = do_salvage(src, Path(salvage).expanduser())
        for table, (copied, unreadable) in got.items():
            spans = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in unreadable[:5])
            more = " ..." if len(unreadable) > 5 else ""
            click.echo(f"{table}: {copied} rows copied" + (f"; rowids {spans}{more} unreadable" if unreadable else ""))
        damaged = any(u for _c, u in got.values())
        click.echo(f"salvaged {src} into {salvage}" + (" (the unreadable rows are left behind)" if damaged else ""))
        return
    failed = 0
    if deliver:
        from ..store.health import deliver_spool

        for run_id, loc, err in deliver_spool():
            if err is None:
                click.echo(f"delivered run {run_id} to {loc}", err=True)
            else:
                failed += 1
                click.echo(f"greentrack: could not deliver run {run_id} to {loc}: {err}", err=True)
    d = diagnose(db)
    click.echo(json.dumps(d, indent=1, default=str) if as_json else render(d))
    if failed:
        raise SystemExit(1)


def register(cli: click.Group) -> None:
    cli.add_command(doctor_cmd)


__all__ = ["diagnose", "render", "register"]
