"""Typed records of what is stored: a run row, a device row, a phase row, a series chunk.

Writers (the session, import, the spool) build these; the store turns them into rows of the
tables in :mod:`.schema` (one field per column: a test checks they match) and back. Reading
goes through :func:`clean_row`, which applies each column's value rule and turns a value that
breaks it into null with a note, so one corrupt row never breaks a report; importing goes
through :func:`validate_row`, which rejects it with one line naming the record and field.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..errors import GreentrackError
from . import codec
from .schema import DEVICES, JSON_RULES, PHASES, RUNS, SERIES, Invalid, Table, check


class _Record:
    """What the record types share: their field names in column order (:data:`FIELDS`), a dict of
    them, a copy with some changed, and a short repr. Plain classes, not dataclasses: the store is
    imported by every session and by the pytest plugin, and a dataclass's generated methods cost
    0.2 to 0.8 ms each at import."""

    FIELDS: tuple[str, ...] = ()
    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def replaced(self, **changes: Any) -> Any:
        return type(self)(**{**self.as_dict(), **changes})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.FIELDS[:3])}, ...)"


class RunRow(_Record):
    """One ``runs`` row. ``tags``, ``notes``, ``stats`` and ``budget`` are Python objects (JSON in the table)."""

    FIELDS = ("id", "name", "status", "started_at", "ended_at", "duration_s", "energy_j", "co2e_kg", "region",
              "intensity_g_per_kwh", "intensity_source", "pue", "backend", "host", "pid", "command", "tags", "job_id",
              "rank", "world_size", "steps", "samples", "tokens", "error", "notes", "stats", "budget", "updated_at",
              "version")

    def __init__(self, *, id: str, name: str, started_at: float, status: str = "running",
                 ended_at: float | None = None, duration_s: float | None = None, energy_j: float | None = None,
                 co2e_kg: float | None = None, region: str | None = None, intensity_g_per_kwh: float | None = None,
                 intensity_source: str | None = None, pue: float | None = None, backend: str | None = None,
                 host: str | None = None, pid: int | None = None, command: str | None = None,
                 tags: dict[str, str] | None = None, job_id: str | None = None, rank: int | None = None,
                 world_size: int | None = None, steps: int | None = None, samples: float | None = None,
                 tokens: float | None = None, error: str | None = None, notes: list[str] | None = None,
                 stats: dict[str, Any] | None = None, budget: dict[str, Any] | None = None,
                 updated_at: float | None = None, version: str | None = None) -> None:
        self.id = id
        self.name = name
        self.status = status
        self.started_at = started_at
        self.ended_at = ended_at
        self.duration_s = duration_s
        self.energy_j = energy_j
        self.co2e_kg = co2e_kg
        self.region = region
        self.intensity_g_per_kwh = intensity_g_per_kwh
        self.intensity_source = intensity_source
        self.pue = pue
        self.backend = backend
        self.host = host
        self.pid = pid
        self.command = command
        self.tags: dict[str, str] = {} if tags is None else tags
        self.job_id = job_id
        self.rank = rank
        self.world_size = world_size
        self.steps = steps
        self.samples = samples
        self.tokens = tokens
        self.error = error
        self.notes = notes
        self.stats = stats
        self.budget = budget
        self.updated_at = updated_at
        self.version = version


class RunEnd(_Record):
    """What :meth:`RunStore.finish_run` sets on a run when its session ends."""

    FIELDS = ("status", "ended_at", "duration_s", "energy_j", "co2e_kg", "steps", "samples", "tokens", "error",
              "notes", "budget", "stats")

    def __init__(self, *, status: str, ended_at: float, duration_s: float | None = None,
                 energy_j: float | None = None, co2e_kg: float | None = None, steps: int | None = None,
                 samples: float | None = None, tokens: float | None = None, error: str | None = None,
                 notes: list[str] | None = None, budget: dict[str, Any] | None = None,
                 stats: dict[str, Any] | None = None) -> None:
        self.status = status
        self.ended_at = ended_at
        self.duration_s = duration_s
        self.energy_j = energy_j
        self.co2e_kg = co2e_kg
        self.steps = steps
        self.samples = samples
        self.tokens = tokens
        self.error = error
        self.notes = notes
        self.budget = budget
        self.stats = stats


class DeviceRow(_Record):
    """One ``devices`` row of a run (the run id is the run's)."""

    FIELDS = ("key", "kind", "idx", "name", "uuid", "method", "series_method", "energy_j", "series_energy_j",
              "avg_power_w", "peak_power_w", "n_samples", "info")

    def __init__(self, *, key: str, kind: str, name: str, idx: int | None = None, uuid: str | None = None,
                 method: str | None = None, series_method: str | None = None, energy_j: float | None = None,
                 series_energy_j: float | None = None, avg_power_w: float | None = None,
                 peak_power_w: float | None = None, n_samples: int | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.key = key
        self.kind = kind
        self.idx = idx
        self.name = name
        self.uuid = uuid
        self.method = method
        self.series_method = series_method
        self.energy_j = energy_j
        self.series_energy_j = series_energy_j
        self.avg_power_w = avg_power_w
        self.peak_power_w = peak_power_w
        self.n_samples = n_samples
        self.info: dict[str, Any] = {} if info is None else info


class PhaseRow(_Record):
    """One ``phases`` row of a run."""

    FIELDS = ("seq", "name", "started_at", "ended_at", "energy_j", "steps")
    __slots__ = FIELDS  # one per test of a pytest session: no dict each

    def __init__(self, *, seq: int, name: str, started_at: float, ended_at: float, energy_j: float | None = None,
                 steps: int | None = None) -> None:
        self.seq = seq
        self.name = name
        self.started_at = started_at
        self.ended_at = ended_at
        self.energy_j = energy_j
        self.steps = steps


class SeriesChunk(_Record):
    """One ``series`` row: a device's points, encoded with :mod:`.codec` relative to the run's start."""

    FIELDS = ("device_key", "seq", "t0", "t1", "n", "codec", "data")

    def __init__(self, *, device_key: str, seq: int, t0: float, t1: float, n: int, codec: str, data: bytes) -> None:
        self.device_key = device_key
        self.seq = seq
        self.t0 = t0
        self.t1 = t1
        self.n = n
        self.codec = codec
        self.data = data

    @classmethod
    def encode(cls, device_key: str, seq: int, times: Sequence[float], powers: Sequence[float],
               base_t: float) -> "SeriesChunk":
        """Encode *times*/*powers* (non-empty) as a chunk; times are stored relative to *base_t*."""
        return cls(device_key=device_key, seq=seq, t0=float(times[0]), t1=float(times[-1]), n=len(times),
                   codec=codec.CODEC, data=codec.encode(times, powers, base_t))


class StoredRun:
    """A whole run as import and the spool carry it: the row, its devices, phases and series chunks."""

    def __init__(self, run: RunRow, devices: list[DeviceRow] | None = None, phases: list[PhaseRow] | None = None,
                 chunks: list[SeriesChunk] | None = None) -> None:
        self.run = run
        self.devices: list[DeviceRow] = [] if devices is None else devices
        self.phases: list[PhaseRow] = [] if phases is None else phases
        self.chunks: list[SeriesChunk] = [] if chunks is None else chunks


#: Which table each record type stores (the run id column aside).
RECORD_TABLES: dict[type, Table] = {RunRow: RUNS, DeviceRow: DEVICES, PhaseRow: PHASES, SeriesChunk: SERIES}


def record_fields(cls: Any) -> tuple[str, ...]:
    """The fields of record type *cls*, in column order."""
    return tuple(cls.FIELDS)


def _rules(cls: type) -> tuple[tuple[str, bool], ...]:
    """``(field, stored as JSON)`` of record type *cls*, in column order."""
    table = RECORD_TABLES[cls]
    return tuple((n, table.column(n).rule in JSON_RULES) for n in record_fields(cls))


_RULES: dict[type, tuple[tuple[str, bool], ...]] = {}


def _json_text(value: Any) -> Any:
    """A JSON column's SQL value: *value* as JSON text (None and text as they are)."""
    if value is not None and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _rules_of(cls: type) -> tuple[tuple[str, bool], ...]:
    rules = _RULES.get(cls)
    if rules is None:
        rules = _RULES[cls] = _rules(cls)
    return rules


def sql_row(rec: Any, run_id: str | None = None) -> dict[str, Any]:
    """*rec* as ``{column: SQL value}`` (JSON columns encoded), with ``run_id`` when given."""
    out: dict[str, Any] = {"run_id": run_id} if run_id is not None else {}
    for name, as_json in _rules_of(type(rec)):
        value = getattr(rec, name)
        out[name] = _json_text(value) if as_json else value
    return out


def sql_values(records: Sequence[Any], run_id: str | None = None) -> tuple[tuple[str, ...], Iterator[tuple[Any, ...]]]:
    """Records of one type as ``(columns, rows)``: the rows a generator of value tuples in column order
    (``run_id`` first when given), JSON columns encoded as :func:`sql_row` does.

    A pytest session ends with a phase per test: rows made one at a time and handed to the database
    as they are made leave no dict or list per phase behind (fewer objects for Python's collector to
    walk; docs/pytest-ci.md, "What it costs")."""
    if not records:
        return (), iter(())
    cls = type(records[0])
    rules = _rules_of(cls)
    names = tuple(n for n, _j in rules)
    coded = tuple(i for i, (_n, as_json) in enumerate(rules) if as_json)
    cols = (("run_id",) if run_id is not None else ()) + names
    lead = (run_id,) if run_id is not None else ()

    def rows() -> Iterator[tuple[Any, ...]]:
        for rec in records:
            if type(rec) is not cls:
                raise TypeError(f"sql_values: a {type(rec).__name__} among {cls.__name__} records")
            values = [getattr(rec, n) for n in names]
            for i in coded:
                values[i] = _json_text(values[i])
            yield (*lead, *values)

    return cols, rows()


def _encode(rule: str, value: Any) -> Any:
    return _json_text(value) if rule in JSON_RULES else value


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
