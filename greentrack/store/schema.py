"""The one definition of the stored tables: their columns, SQL types, keys, indexes and value rules.

Everything else derives from :data:`TABLES`: the migrations' ``CREATE TABLE`` statements, the
column lists of inserts and upserts, the fields of the typed records (a test checks that
:mod:`.records` matches), the export format's field lists, the validation of imported files
and the cleaning of rows read back. A column added later names the schema version that added
it (``since``); migration N creates or adds exactly the columns with ``since == N``.

Value rules (``Column.rule``) say what a field may hold. The same rules check an import
(a value that breaks one rejects the file) and clean a row read back (a value that breaks one
reads as null, with a note on the run), so no stored value can break a report.
"""

from __future__ import annotations

import math
from typing import Any

#: Run statuses: ``running`` while a session is open; ``lost`` is how a ``running`` run whose
#: process is gone reads back (imported runs may carry it literally).
STATUSES = ("running", "finished", "failed", "interrupted", "lost")

#: Sane bounds of the value rules: timestamps between 2000-01-01 and 2100-01-01 (UTC), durations
#: up to 100 years, energy up to 1e18 J (a 100 MW site for 300 years), power up to 1 MW per device.
TIME_MIN, TIME_MAX = 946_684_800.0, 4_102_444_800.0
SECONDS_MAX = 3.2e9
JOULES_MAX = 1e18
KG_MAX = 1e15
G_PER_KWH_MAX = 10_000.0
PUE_MAX = 100.0
WATTS_MAX = 1e6
AMOUNT_MAX = 1e18
INT_MAX = 2**63 - 1
ID_MAX_LEN = 64


class Column:
    """One column: its name, SQL type (TEXT, REAL, INTEGER, BLOB), value rule (see :data:`RULES`),
    meaning, whether a value is required, and the schema version that added it."""

    __slots__ = ("name", "sql", "rule", "doc", "required", "since")

    def __init__(self, name: str, sql: str, rule: str, doc: str, required: bool = False, since: int = 1) -> None:
        self.name, self.sql, self.rule, self.doc, self.required, self.since = name, sql, rule, doc, required, since

    def __repr__(self) -> str:
        return f"Column({self.name!r}, {self.sql!r}, {self.rule!r})"


class Table:
    """One table: columns in order, primary key, indexes ``(name, columns)``."""

    __slots__ = ("name", "columns", "pk", "indexes", "doc", "_by_name")

    def __init__(self, name: str, columns: tuple[Column, ...], pk: tuple[str, ...],
                 indexes: tuple[tuple[str, tuple[str, ...]], ...] = (), doc: str = "") -> None:
        self.name, self.columns, self.pk, self.indexes, self.doc = name, columns, pk, indexes, doc
        self._by_name = {c.name: c for c in columns}

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} has no column {name!r}") from None

    def create_sql(self, version: int) -> str:
        """``CREATE TABLE`` with the columns that exist at schema *version* (migration use)."""
        cols = [c for c in self.columns if c.since <= version]
        body = ", ".join(f"[{c.name}] {c.sql}" for c in cols)
        return f"CREATE TABLE [{self.name}] ({body}, PRIMARY KEY ({', '.join(self.pk)}))"


C = Column
RUNS = Table("runs", (
    C("id", "TEXT", "id", "run id (12 hex characters for runs greentrack measured)", required=True),
    C("name", "TEXT", "name", "run name", required=True),
    C("status", "TEXT", "status", "running, finished, failed, interrupted (lost: running, its process gone)",
      required=True),
    C("started_at", "REAL", "time", "start, unix seconds", required=True),
    C("ended_at", "REAL", "time", "end, unix seconds (null while running)"),
    C("duration_s", "REAL", "seconds", "seconds from start to end (to the last flush while running)"),
    C("energy_j", "REAL", "joules", "measured energy of all devices, J (before PUE; null: nothing measured)"),
    C("co2e_kg", "REAL", "kg", "operational CO2e, kg (energy x PUE x intensity)"),
    C("region", "TEXT", "text", "grid region used for CO2e"),
    C("intensity_g_per_kwh", "REAL", "g_per_kwh", "grid intensity used, gCO2e/kWh"),
    C("intensity_source", "TEXT", "text", "where the intensity comes from, with its year"),
    C("pue", "REAL", "pue", "power usage effectiveness applied (> 0)"),
    C("backend", "TEXT", "text", "power source(s) that measured the run"),
    C("host", "TEXT", "text", "host name"),
    C("pid", "INTEGER", "count", "process id of the session"),
    C("command", "TEXT", "text", "command line (greentrack run, pytest), secrets redacted"),
    C("tags", "TEXT", "tags", "tags, a JSON object of strings"),
    C("job_id", "TEXT", "text", "job id shared by the runs of one job"),
    C("rank", "INTEGER", "count", "rank in a distributed job"),
    C("world_size", "INTEGER", "count", "ranks in the job"),
    C("steps", "INTEGER", "count", "steps marked with step()"),
    C("samples", "REAL", "amount", "samples given to step()"),
    C("tokens", "REAL", "amount", "tokens given to step()"),
    C("error", "TEXT", "text", "error of a failed or interrupted run"),
    C("notes", "TEXT", "notes", "notes, a JSON list of strings"),
    C("stats", "TEXT", "object", "step statistics, a JSON object"),
    C("budget", "TEXT", "object", "budget outcome, a JSON object (null: no budget crossed)"),
    C("updated_at", "REAL", "time", "last write, unix seconds"),
    C("version", "TEXT", "text", "greentrack version that measured the run"),
), pk=("id",), indexes=(
    ("idx_runs_started", ("started_at",)),
    ("idx_runs_name", ("name", "started_at")),
    ("idx_runs_job", ("job_id",)),
), doc="one row per run")

RUN_TAGS = Table("run_tags", (
    C("run_id", "TEXT", "id", "run id", required=True),
    C("key", "TEXT", "name", "tag key", required=True),
    C("value", "TEXT", "text", "tag value"),
), pk=("run_id", "key"), indexes=(("idx_tags_kv", ("key", "value")),),
    doc="the run's tags again, one row each, for filtering")

DEVICES = Table("devices", (
    C("run_id", "TEXT", "id", "run id", required=True),
    C("key", "TEXT", "name", "device key within the run (gpu0, cpu0, dram0...)", required=True),
    C("kind", "TEXT", "name", "gpu, cpu, dram, ...", required=True),
    C("idx", "INTEGER", "count", "index of the device of its kind"),
    C("name", "TEXT", "name", "model name (NVIDIA H200, ...)", required=True),
    C("uuid", "TEXT", "text", "device uuid"),
    C("method", "TEXT", "text", "what gave the total: counter, buffer, instant, average, none, codecarbon..."),
    C("series_method", "TEXT", "text", "what gave the power series"),
    C("energy_j", "REAL", "joules", "device energy, J"),
    C("series_energy_j", "REAL", "joules", "energy of the integrated series, J"),
    C("avg_power_w", "REAL", "watts", "average power, W"),
    C("peak_power_w", "REAL", "watts", "peak power, W"),
    C("n_samples", "INTEGER", "count", "power samples read"),
    C("info", "TEXT", "object", "what else the source knows (gaps, driver notes), a JSON object"),
), pk=("run_id", "key"), doc="one row per measured device of a run")

PHASES = Table("phases", (
    C("run_id", "TEXT", "id", "run id", required=True),
    C("seq", "INTEGER", "count", "order of the phase within the run", required=True),
    C("name", "TEXT", "text", "phase name", required=True),
    C("started_at", "REAL", "time", "start, unix seconds", required=True),
    C("ended_at", "REAL", "time", "end, unix seconds", required=True),
    C("energy_j", "REAL", "joules", "energy attributed to the phase, J"),
    C("steps", "INTEGER", "count", "steps marked in the phase"),
), pk=("run_id", "seq"), doc="one row per phase of a run")

SERIES = Table("series", (
    C("run_id", "TEXT", "id", "run id", required=True),
    C("device_key", "TEXT", "name", "device key", required=True),
    C("seq", "INTEGER", "count", "chunk number within the device's series", required=True),
    C("t0", "REAL", "time", "time of the chunk's first point"),
    C("t1", "REAL", "time", "time of the chunk's last point"),
    C("n", "INTEGER", "count", "points in the chunk"),
    C("codec", "TEXT", "text", "encoding of data (d1z: delta int32 ms and 0.1 W, zlib)"),
    C("data", "BLOB", "blob", "the encoded points (times relative to the run's start)"),
), pk=("run_id", "device_key", "seq"), doc="the power series, in compressed chunks")

TABLES: tuple[Table, ...] = (RUNS, RUN_TAGS, DEVICES, PHASES, SERIES)
BY_NAME = {t.name: t for t in TABLES}
#: Columns stored as JSON text and read back as Python objects.
JSON_RULES = ("tags", "notes", "object")


# value rules ------------------------------------------------------------------------------------
class Invalid(ValueError):
    """A value that breaks its column's rule; ``str()`` says what was expected."""


def _finite(v: Any, lo: float, hi: float, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Invalid(f"must be {what}, got {_show(v)}")
    try:
        f = float(v)
    except OverflowError:
        raise Invalid(f"must be {what}, got {_show(v)}") from None
    if not math.isfinite(f) or f < lo or f > hi:
        raise Invalid(f"must be {what}, got {_show(v)}")
    return f


def _int(v: Any, what: str = "a whole number >= 0") -> int:
    if isinstance(v, bool):
        raise Invalid(f"must be {what}, got {_show(v)}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or v < 0 or v > INT_MAX:
        raise Invalid(f"must be {what}, got {_show(v)}")
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise Invalid(f"must be text, got {_show(v)}")
    return v


def _name(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise Invalid(f"must be non-empty text, got {_show(v)}")
    return v


def _id(v: Any) -> str:
    if not isinstance(v, str) or not v or len(v) > ID_MAX_LEN or any(c.isspace() or not c.isprintable() for c in v):
        raise Invalid(f"must be 1 to {ID_MAX_LEN} printable characters without spaces, got {_show(v)}")
    return v


def _status(v: Any) -> str:
    if v not in STATUSES:
        raise Invalid(f"must be one of {', '.join(STATUSES)}, got {_show(v)}")
    return str(v)


def _tags(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise Invalid(f"must be an object of key: text, got {_show(v)}")
    out: dict[str, str] = {}
    for k, x in v.items():
        if not isinstance(k, str) or not k.strip():
            raise Invalid(f"tag keys must be non-empty text, got {_show(k)}")
        number = isinstance(x, (int, float)) and not isinstance(x, bool)
        if not (isinstance(x, str) or number) or (isinstance(x, float) and not math.isfinite(x)):
            raise Invalid(f"tag {k!r} must be text or a finite number, got {_show(x)}")
        out[k] = str(x)
    return out


def _notes(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise Invalid(f"must be a list of text, got {_show(v)}")
    return list(v)


def _object(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict) or not _json_safe(v):
        raise Invalid(f"must be an object of plain JSON values (finite numbers), got {_show(v)}")
    return v


def _blob(v: Any) -> bytes:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise Invalid(f"must be bytes, got {_show(v)}")
    return bytes(v)


def _json_safe(v: Any, depth: int = 0) -> bool:
    """Plain JSON (dict/list/str/bool/None/finite numbers), at most 20 levels deep."""
    if depth > 20:
        return False
    if v is None or isinstance(v, (str, bool, int)):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_json_safe(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _json_safe(x, depth + 1) for k, x in v.items())
    return False


RULES: dict[str, Any] = {
    "id": _id,
    "name": _name,
    "text": _text,
    "status": _status,
    "time": lambda v: _finite(v, TIME_MIN, TIME_MAX, "a unix time between 2000 and 2100"),
    "seconds": lambda v: _finite(v, 0.0, SECONDS_MAX, "a finite number of seconds >= 0"),
    "joules": lambda v: _finite(v, 0.0, JOULES_MAX, "a finite number of joules >= 0"),
    "kg": lambda v: _finite(v, 0.0, KG_MAX, "a finite number of kg >= 0"),
    "g_per_kwh": lambda v: _finite(v, 0.0, G_PER_KWH_MAX, f"a finite intensity in gCO2e/kWh, 0 to {G_PER_KWH_MAX:g}"),
    "pue": lambda v: _pue(v),
    "watts": lambda v: _finite(v, 0.0, WATTS_MAX, f"a finite power in W, 0 to {WATTS_MAX:g}"),
    "amount": lambda v: _finite(v, 0.0, AMOUNT_MAX, "a finite number >= 0"),
    "count": _int,
    "tags": _tags,
    "notes": _notes,
    "object": _object,
    "blob": _blob,
}


def _pue(v: Any) -> float:
    f = _finite(v, 0.0, PUE_MAX, f"a PUE > 0 (at most {PUE_MAX:g})")
    if f <= 0:
        raise Invalid(f"must be a PUE > 0 (at most {PUE_MAX:g}), got {_show(v)}")
    return f


def check(col: Column, value: Any) -> Any:
    """*value* normalised by *col*'s rule; None passes unless the column is required. Raises :class:`Invalid`."""
    if value is None:
        if col.required:
            raise Invalid("is required")
        return None
    return RULES[col.rule](value)


def _show(v: Any) -> str:
    """A short, safe rendering of a bad value for a one-line message."""
    try:
        r = repr(v)
    except Exception:  # pragma: no cover - a repr that raises
        r = f"<{type(v).__name__}>"
    return r if len(r) <= 40 else r[:37] + "..."


_RULE_WORDS = {
    "id": "1-64 printable characters, no spaces", "name": "non-empty text", "text": "text",
    "status": "one of " + ", ".join(STATUSES), "time": "unix seconds, 2000-2100", "seconds": "seconds, 0 to 3.2e9",
    "joules": "J, 0 to 1e18", "kg": "kg, 0 to 1e15", "g_per_kwh": "gCO2e/kWh, 0 to 10000", "pue": "> 0, at most 100",
    "watts": "W, 0 to 1e6", "amount": "0 to 1e18", "count": "whole number >= 0", "tags": "JSON object of text",
    "notes": "JSON list of text", "object": "JSON object (finite numbers)", "blob": "bytes",
}


def markdown() -> str:
    """The tables as Markdown (docs/storage.md embeds it; a test checks it is current)."""
    out = []
    for t in TABLES:
        out += [f"`{t.name}`: {t.doc}; primary key ({', '.join(t.pk)})", "",
                "| column | type | rule | meaning |", "|---|---|---|---|"]
        for c in t.columns:
            rule = _RULE_WORDS[c.rule] + (", required" if c.required else "")
            out.append(f"| `{c.name}` | {c.sql} | {rule} | {c.doc} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
