"""One home for SQL: one schema definition, named migrations, typed records, one store interface."""

from __future__ import annotations

import inspect
import re
import sqlite3
from pathlib import Path

import pytest

import greentrack
from greentrack.store import RunStore, open_store
from greentrack.store import migrations as mig
from greentrack.store.base import RunStore as BaseRunStore
from greentrack.store.records import RECORD_TABLES, DeviceRow, RunRow, record_fields
from greentrack.store.schema import TABLES
from greentrack.store.sqlite import SCHEMA_VERSION, SQLiteStore, Store

ROOT = Path(__file__).resolve().parent.parent

# The schema-v1 database greentrack 0.1.0 created through sqlite-utils, statement for statement.
V1_DDL = """
CREATE TABLE "runs" ("id" TEXT PRIMARY KEY, "name" TEXT, "status" TEXT, "started_at" REAL, "ended_at" REAL,
 "duration_s" REAL, "energy_j" REAL, "co2e_kg" REAL, "region" TEXT, "intensity_g_per_kwh" REAL,
 "intensity_source" TEXT, "pue" REAL, "backend" TEXT, "host" TEXT, "pid" INTEGER, "command" TEXT, "tags" TEXT,
 "job_id" TEXT, "rank" INTEGER, "world_size" INTEGER, "steps" INTEGER, "samples" REAL, "tokens" REAL,
 "error" TEXT, "notes" TEXT, "stats" TEXT, "budget" TEXT, "updated_at" REAL, "version" TEXT);
CREATE INDEX "idx_runs_started" ON "runs" ("started_at");
CREATE INDEX "idx_runs_name" ON "runs" ("name", "started_at");
CREATE INDEX "idx_runs_job" ON "runs" ("job_id");
CREATE TABLE "run_tags" ("run_id" TEXT, "key" TEXT, "value" TEXT, PRIMARY KEY ("run_id", "key"));
CREATE INDEX "idx_tags_kv" ON "run_tags" ("key", "value");
CREATE TABLE "devices" ("run_id" TEXT, "key" TEXT, "kind" TEXT, "idx" INTEGER, "name" TEXT, "uuid" TEXT,
 "method" TEXT, "series_method" TEXT, "energy_j" REAL, "series_energy_j" REAL, "avg_power_w" REAL,
 "peak_power_w" REAL, "n_samples" INTEGER, "info" TEXT, PRIMARY KEY ("run_id", "key"));
CREATE TABLE "phases" ("run_id" TEXT, "seq" INTEGER, "name" TEXT, "started_at" REAL, "ended_at" REAL,
 "energy_j" REAL, "steps" INTEGER, PRIMARY KEY ("run_id", "seq"));
CREATE TABLE "series" ("run_id" TEXT, "device_key" TEXT, "seq" INTEGER, "t0" REAL, "t1" REAL, "n" INTEGER,
 "codec" TEXT, "data" BLOB, PRIMARY KEY ("run_id", "device_key", "seq"));
PRAGMA user_version=1;
"""


def test_records_have_exactly_the_columns_of_the_schema():
    for cls, table in RECORD_TABLES.items():
        assert record_fields(cls) == tuple(c for c in table.names if c != "run_id"), cls.__name__


def test_a_new_database_has_exactly_the_tables_columns_and_indexes_of_the_schema(db_path):
    Store(db_path).close()
    con = sqlite3.connect(db_path)
    for t in TABLES:
        cols = [(r[1], r[2]) for r in con.execute(f"PRAGMA table_info({t.name})")]
        assert cols == [(c.name, c.sql) for c in t.columns], t.name
        pk = [r[1] for r in sorted(con.execute(f"PRAGMA table_info({t.name})"), key=lambda r: r[5]) if r[5]]
        assert tuple(pk) == t.pk
        indexes = {r[1] for r in con.execute(f"PRAGMA index_list({t.name})") if not r[1].startswith("sqlite_")}
        assert indexes == {name for name, _ in t.indexes}
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(mig.MIGRATIONS)


def test_migrations_are_named_functions_numbered_by_user_version():
    names = [fn.__name__ for fn in mig.MIGRATIONS]
    assert names[:2] == ["m001_initial", "m002_redact_stored_secrets"]
    assert all(re.fullmatch(r"m\d{3}_[a-z0-9_]+", n) for n in names)
    assert [int(n[1:4]) for n in names] == list(range(1, len(names) + 1))
    assert all(fn.__doc__ for fn in mig.MIGRATIONS)


def test_a_v1_database_migrates_once_and_its_stored_secrets_are_redacted(tmp_path):
    p = tmp_path / "v1.db"
    con = sqlite3.connect(p)
    con.executescript(V1_DDL)
    con.execute("INSERT INTO runs (id, name, status, started_at, command) VALUES (?, ?, ?, ?, ?)",
                ("abc123", "old", "finished", 1.7e9, "python train.py --api-key=SECRET1 --hf-token SECRET2 --lr 3"))
    con.commit()
    con.close()
    st = Store(p)
    assert sqlite3.connect(p).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    run = st.get_run("abc123")
    assert run["command"] == "python train.py '--api-key=***' --hf-token '***' --lr 3"
    raw = sqlite3.connect(p).execute("SELECT command FROM runs").fetchone()[0]
    assert "SECRET" not in raw
    Store(p).close()  # a second open applies nothing again
    assert st.list_runs()[0]["name"] == "old"


def test_a_newer_schema_is_refused_by_readers_and_writers_with_one_line(db_path):
    Store(db_path).close()
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    for write in (True, False):
        with pytest.raises(greentrack.GreentrackError, match="newer than this greentrack understands") as e:
            open_store(db_path, write=write)
        assert "\n" not in str(e.value)


def test_the_sqlite_store_implements_the_store_interface(db_path):
    st = open_store(db_path)
    assert isinstance(st, RunStore) and isinstance(st, SQLiteStore)
    proto = {n: m for n, m in vars(BaseRunStore).items() if callable(m) and not n.startswith("_")}
    assert set(proto) >= {"begin_run", "progress", "finish_run", "list_runs", "get_run", "resolve_id", "read_series",
                          "import_runs", "deliver", "snapshot", "health", "close"}
    for name, method in proto.items():
        impl = getattr(SQLiteStore, name)
        want = list(inspect.signature(method).parameters)
        assert list(inspect.signature(impl).parameters)[:len(want)] == want, name


def test_sql_lives_only_in_the_store():
    """No module outside greentrack/store runs SQL or imports sqlite3 (the store interface is the only way in)."""
    offenders = []
    for path in (ROOT / "greentrack").rglob("*.py"):
        rel = path.relative_to(ROOT / "greentrack")
        if rel.parts[0] == "store":
            continue
        text = path.read_text()
        if re.search(r"^\s*import sqlite3|^\s*from sqlite3|\.execute\(|\bSELECT\b.+\bFROM\b", text, re.M):
            offenders.append(str(rel))
    assert offenders == []


def test_a_session_writes_typed_records_through_the_writer(db_path):
    with greentrack.session("typed", tags={"k": "v"}, backend="mock") as s:
        s.step()
    row = s._run_row()
    assert isinstance(row, RunRow) and row.tags == {"k": "v"}
    assert all(isinstance(d, DeviceRow) for d in s._final_device_rows())
    got = open_store(db_path, create=False).get_run(s.id)
    assert got["tags"] == {"k": "v"} and got["devices"][0]["name"] == "Mock GPU" and got["status"] == "finished"


def test_the_storage_doc_shows_the_schema_as_it_is():
    """docs/storage.md embeds greentrack.store.schema.markdown() between its generated markers."""
    from greentrack.store.schema import markdown

    text = (ROOT / "docs" / "storage.md").read_text()
    block = text.split("<!-- generated: schema -->\n", 1)[1].split("<!-- end generated -->", 1)[0]
    assert block == markdown(), "docs/storage.md is stale: paste greentrack.store.schema.markdown() into its block"


def test_the_storage_doc_names_tests_that_exist():
    """Each guarantee in docs/storage.md names its test; every test named there exists."""
    text = (ROOT / "docs" / "storage.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", text))
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.M))
    assert named and named <= defined, sorted(named - defined)


def test_records_made_into_value_rows_match_their_row_dicts():
    """sql_values (a pytest session's phases, one row per test) gives what sql_row gives, in column order,
    one row at a time; JSON columns are encoded the same way, and a mixed list is refused."""
    from greentrack.store.records import PhaseRow, sql_row, sql_values

    devices = [DeviceRow(key="cpu0", kind="cpu", name="EPYC", info={"b": [1, 2], "a": "x"}),
               DeviceRow(key="gpu0", kind="gpu", name="H100", info=None, energy_j=12.5),
               DeviceRow(key="gpu1", kind="gpu", name="H100", info='{"already": "text"}')]
    for run_id in ("r1", None):
        cols, rows = sql_values(devices, run_id)
        assert not isinstance(rows, (list, tuple))  # made as they are taken
        got = [dict(zip(cols, values)) for values in rows]
        assert got == [sql_row(d, run_id) for d in devices]
        assert list(cols) == list(sql_row(devices[0], run_id))
    phases = [PhaseRow(seq=i, name=f"t::{i}", started_at=float(i), ended_at=i + 0.5, energy_j=0.1 * i)
              for i in range(3)]
    cols, rows = sql_values(phases, "r1")
    assert cols == ("run_id", "seq", "name", "started_at", "ended_at", "energy_j", "steps")
    assert next(rows) == ("r1", 0, "t::0", 0.0, 0.5, 0.0, None)
    assert sql_values([], "r1")[0] == () and list(sql_values([], "r1")[1]) == []
    with pytest.raises(TypeError, match="a DeviceRow among PhaseRow records"):
        list(sql_values([phases[0], devices[0]], "r1")[1])


def test_a_runs_phases_are_written_in_one_go_and_let_go_of_once_written(db_path):
    """The writer hands a run's phases to the database at its end and keeps none of them once written
    (a pytest session has one per test); the stored rows are the phases, in order."""
    s = greentrack.Session("phases", backend="mock", db=str(db_path), background=False).start()
    for i in range(300):
        s.mark_phase(f"tests/test_x.py::test_{i}", s.started_at + i * 1e-4, s.started_at + (i + 1) * 1e-4)
    res = s.stop()
    assert s.writer is not None and s.writer.phases == []
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT seq, name, started_at, ended_at FROM phases WHERE run_id=? ORDER BY seq",
                            (res.run_id,)).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(i, p.name) for i, p in enumerate(res.phases)]
    assert [r[2] for r in rows] == [p.started_at for p in res.phases]
