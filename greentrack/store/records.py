"""Typed records of what is stored: a run row, a device row, a phase row, a series chunk.

Writers (the session, import, the spool) build these; the store turns them into rows of the
tables in :mod:`.schema` (one field per column: a test checks they match) and back. Reading
goes through :func:`clean_row`, which applies each column's value rule and turns a value that
breaks it into null with a note, so one corrupt row never breaks a report; importing goes
through :func:`validate_row`, which rejects it with one line naming the record and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping, Sequence

from ..errors import GreentrackError
from . import codec
from .schema import DEVICES, JSON_RULES, PHASES, RUNS, SERIES, Invalid, Table, check


@dataclass(kw_only=True, eq=False)
class RunRow:
    """One ``runs`` row. ``tags``, ``notes``, ``stats`` and ``budget`` are Python objects (JSON in the table)."""

    id: str
    name: str
    status: str = "running"
    started_at: float
    ended_at: float | None = None
    duration_s: float | None = None
    energy_j: float | None = None
    co2e_kg: float | None = None
    region: str | None = None
    intensity_g_per_kwh: float | None = None
    intensity_source: str | None = None
    pue: float | None = None
    backend: str | None = None
    host: str | None = None
    pid: int | None = None
    command: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    job_id: str | None = None
    rank: int | None = None
    world_size: int | None = None
    steps: int | None = None
    samples: float | None = None
    tokens: float | None = None
    error: str | None = None
    notes: list[str] | None = None
    stats: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    updated_at: float | None = None
    version: str | None = None


@dataclass(kw_only=True, eq=False)
class RunEnd:
    """What :meth:`RunStore.finish_run` sets on a run when its session ends."""

    status: str
    ended_at: float
    duration_s: float | None = None
    energy_j: float | None = None
    co2e_kg: float | None = None
    steps: int | None = None
    samples: float | None = None
    tokens: float | None = None
    error: str | None = None
    notes: list[str] | None = None
    budget: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None


@dataclass(kw_only=True, eq=False)
class DeviceRow:
    """One ``devices`` row of a run (the run id is the run's)."""

    key: str
    kind: str
    idx: int | None = None
    name: str
    uuid: str | None = None
    method: str | None = None
    series_method: str | None = None
    energy_j: float | None = None
    series_energy_j: float | None = None
    avg_power_w: float | None = None
    peak_power_w: float | None = None
    n_samples: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, eq=False)
class PhaseRow:
    """One ``phases`` row of a run."""

    seq: int
    name: str
    started_at: float
    ended_at: float
    energy_j: float | None = None
    steps: int | None = None


@dataclass(kw_only=True, eq=False)
class SeriesChunk:
    """One ``series`` row: a device's points, encoded with :mod:`.codec` relative to the run's start."""

    device_key: str
    seq: int
    t0: float
    t1: float
    n: int
    codec: str
    data: bytes

    @classmethod
    def encode(cls, device_key: str, seq: int, times: Sequence[float], powers: Sequence[float],
               base_t: float) -> "SeriesChunk":
        """Encode *times*/*powers* (non-empty) as a chunk; times are stored relative to *base_t*."""
        return cls(device_key=device_key, seq=seq, t0=float(times[0]), t1=float(times[-1]), n=len(times),
                   codec=codec.CODEC, data=codec.encode(times, powers, base_t))


@dataclass(kw_only=True, eq=False)
class StoredRun:
    """A whole run as import and the spool carry it: the row, its devices, phases and series chunks."""

    run: RunRow
    devices: list[DeviceRow] = field(default_factory=list)
    phases: list[PhaseRow] = field(default_factory=list)
    chunks: list[SeriesChunk] = field(default_factory=list)


#: Which table each record type stores (the run id column aside).
RECORD_TABLES: dict[type, Table] = {RunRow: RUNS, DeviceRow: DEVICES, PhaseRow: PHASES, SeriesChunk: SERIES}


_FIELDS: dict[type, tuple[str, ...]] = {}


def record_fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    return names


def _rules(cls: type) -> tuple[tuple[str, str], ...]:
    table = RECORD_TABLES[cls]
    return tuple((n, table.column(n).rule) for n in record_fields(cls))


_RULES: dict[type, tuple[tuple[str, str], ...]] = {}


def sql_row(rec: Any, run_id: str | None = None) -> dict[str, Any]:
    """*rec* as ``{column: SQL value}`` (JSON columns encoded), with ``run_id`` when given."""
    cls = type(rec)
    rules = _RULES.get(cls)
    if rules is None:
        rules = _RULES[cls] = _rules(cls)
    out: dict[str, Any] = {"run_id": run_id} if run_id is not None else {}
    for name, rule in rules:
        out[name] = _encode(rule, getattr(rec, name))
    return out


def _encode(rule: str, value: Any) -> Any:
    if rule in JSON_RULES and value is not None and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def end_sql(end: RunEnd) -> dict[str, Any]:
    """The columns a :class:`RunEnd` sets, as SQL values."""
    return {k: _encode(RUNS.column(k).rule, getattr(end, k)) for k in record_fields(RunEnd)}


def summarise_devices(names: list[str]) -> str:
    """``["NVIDIA H200", "NVIDIA H200", "cpu"]`` -> ``"2x NVIDIA H200, cpu"``."""
    if not names:
        return ""
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return ", ".join(f"{c}x {n}" if c > 1 else n for n, c in out.items())


# reading: clean --------------------------------------------------------------------------------
def clean_row(table: Table, row: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A row read back, each value checked by its column's rule: ``(clean, problems)``.

    JSON columns are decoded. A value that breaks its rule becomes None (an unreadable
    ``tags``/``notes`` becomes ``{}``/``[]``) and a problem is described, naming the column.
    Columns the table does not define are kept as they are.
    """
    out = dict(row)
    problems: list[str] = []
    for col in table.columns:
        if col.name not in row:
            continue
        value = row[col.name]
        if col.rule in JSON_RULES and isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                problems.append(f"{col.name} is not valid JSON")
                out[col.name] = _empty(col.rule)
                continue
        if col.rule == "notes" and isinstance(value, str):
            value = [value]
        try:
            out[col.name] = check(col, value)
        except Invalid as exc:
            problems.append(f"{col.name} {exc}")
            out[col.name] = _empty(col.rule)
    return out, problems


def _empty(rule: str) -> Any:
    return {} if rule == "tags" else [] if rule == "notes" else None


# importing: validate ---------------------------------------------------------------------------
def validate_row(table: Table, data: Mapping[str, Any], where: str,
                 skip: Sequence[str] = ("run_id",)) -> dict[str, Any]:
    """*data* checked field by field against *table*; raises one :class:`GreentrackError` line naming the field."""
    if not isinstance(data, Mapping):
        raise GreentrackError(f"{where}: must be an object, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for col in table.columns:
        if col.name in skip:
            continue
        try:
            out[col.name] = check(col, data.get(col.name))
        except Invalid as exc:
            raise GreentrackError(f"{where}: field {col.name} {exc}") from None
    return out


def _kwargs(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: data.get(k) for k in record_fields(cls)}


def run_from(data: Mapping[str, Any]) -> RunRow:
    """A :class:`RunRow` from a checked ``runs`` mapping (extra keys ignored)."""
    kw = _kwargs(RunRow, data)
    kw["tags"] = dict(kw.get("tags") or {})
    return RunRow(**kw)


def device_from(data: Mapping[str, Any]) -> DeviceRow:
    kw = _kwargs(DeviceRow, data)
    kw["info"] = dict(kw.get("info") or {})
    return DeviceRow(**kw)


def phase_from(data: Mapping[str, Any]) -> PhaseRow:
    return PhaseRow(**_kwargs(PhaseRow, data))


def chunk_from(data: Mapping[str, Any]) -> SeriesChunk:
    return SeriesChunk(**_kwargs(SeriesChunk, data))


def energy_method(methods: Iterable[str | None]) -> str | None:
    """What a run's energy is made of, from its devices' methods: ``measured``, ``model`` (estimated
    from CPU time by the cpu-model source, not measured), ``mixed``, or None when nothing was."""
    kinds = {"model" if m == "model" else "measured" for m in methods if m and m != "none"}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"
