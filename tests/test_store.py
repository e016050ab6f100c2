"""The SQLite store with real files and real processes: migrations, crashes, concurrency, size."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import kill_once_stored

import greentrack
from greentrack.errors import NotFoundError, SchemaError
from greentrack.store.records import RunEnd, RunRow, SeriesChunk
from greentrack.store.sqlite import SCHEMA_VERSION, Store


def test_schema_version_wal_and_migrations_are_idempotent(db_path):
    Store(db_path)
    Store(db_path)  # opening again runs no migration twice
    con = sqlite3.connect(db_path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "run_tags", "devices", "phases", "series"} <= tables


def test_a_new_database_is_set_up_without_waiting_for_the_disk_and_written_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file this process creates gets WAL mode and its schema with synchronous=OFF (no fdatasync: it
    holds nothing yet), then synchronous=NORMAL before anything is written to it; an existing file,
    an empty one an interrupted setup left included, is never opened with OFF."""
    seen: list[str] = []
    real = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real(*args, **kwargs)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    path = tmp_path / "new.db"
    store = Store(path)
    first_create = next(i for i, sql in enumerate(seen) if sql.startswith("CREATE TABLE"))
    assert seen.index("PRAGMA synchronous=OFF") < seen.index("PRAGMA journal_mode=WAL") < first_create
    normal = seen.index("PRAGMA synchronous=NORMAL")
    assert normal > first_create and normal > seen.index("COMMIT")  # after the schema's transaction
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL for the run's writes
    store.begin_run(RunRow(id="r1", name="n", started_at=1.0), [])
    assert Store(path, create=False).get_run("r1")["name"] == "n"
    store.close()  # a connection opened again on this thread, and one on another thread (the writer's)
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    other: list[int] = []
    worker = threading.Thread(target=lambda: other.append(store.conn.execute("PRAGMA synchronous").fetchone()[0]))
    worker.start()
    worker.join()
    assert other == [1] and "PRAGMA synchronous=OFF" not in seen[normal:]

    seen.clear()
    Store(path)  # an existing database: NORMAL from its first statement
    assert "PRAGMA synchronous=OFF" not in seen and "PRAGMA synchronous=NORMAL" in seen
    empty = tmp_path / "left-empty.db"
    empty.touch()  # a setup interrupted before its first write: set up again, with the disk
    seen.clear()
    Store(empty)
    assert "PRAGMA synchronous=OFF" not in seen
    assert sqlite3.connect(empty).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused_with_one_line(db_path, cli):
    Store(db_path)
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    with pytest.raises(SchemaError, match="newer than this greentrack"):
        Store(db_path)
    out = cli("report", "--db", str(db_path))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "upgrade greentrack" in out.stderr
    assert "Traceback" not in out.stderr


def test_foreign_database_is_refused(tmp_path):
    p = tmp_path / "other.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE runs (x)")
    con.commit()
    with pytest.raises(SchemaError, match="did not create"):
        Store(p)
    bad = tmp_path / "notsqlite.db"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(SchemaError, match="not a greentrack database"):
        Store(bad)


def test_resolve_id_prefix_name_last_and_suggestions(db_path):
    ids = []
    for name in ("alpha", "beta"):
        with greentrack.session(name) as s:
            pass
        ids.append(s.id)
    st = Store(db_path)
    assert st.resolve_id(ids[0][:6]) == ids[0]
    assert st.resolve_id("last") == ids[1]
    assert st.resolve_id("-2") == ids[0]
    assert st.resolve_id("alpha") == ids[0]
    with pytest.raises(NotFoundError, match="no run"):
        st.resolve_id("zzzz")


def test_filters_by_name_glob_tag_since_status(db_path):
    for name, prec in (("llama-a", "bf16"), ("llama-b", "fp32"), ("gpt", "bf16")):
        with greentrack.session(name, tags={"precision": prec}):
            pass
    st = Store(db_path)
    assert [r["name"] for r in st.list_runs(name="llama-*")] == ["llama-b", "llama-a"]
    assert [r["name"] for r in st.list_runs(tags={"precision": "bf16"})] == ["gpt", "llama-a"]
    assert st.list_runs(since=time.time() + 60) == []
    assert len(st.list_runs(status="finished")) == 3
    assert st.list_runs(last=1)[0]["name"] == "gpt"


SCRIPT = textwrap.dedent("""
    import sys, time, greentrack
    s = greentrack.Session(sys.argv[1], flush_interval_s=0.2, sample_interval_s=0.1).start()
    print(s.id, flush=True)
    while True:
        time.sleep(0.01)
        s.step()
""")


def _spawn(tmp_path: Path, name: str, env_extra: dict | None = None) -> tuple[subprocess.Popen, str]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, GREENTRACK_MOCK="constant:250", **(env_extra or {}))
    p = subprocess.Popen([sys.executable, str(script), name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    run_id = p.stdout.readline().strip()
    assert run_id, p.stderr.read()
    return p, run_id


def test_sigkill_leaves_a_visible_partial_run(tmp_path, db_path):
    p, run_id = _spawn(tmp_path, "killed")

    # killed once its flushes (every 0.2 s) have stored ~0.6 s of 250 W (was: after a fixed 1.2 s)
    before_kill = kill_once_stored(p, lambda: Store(db_path, create=False), run_id, 250 * 0.6)
    row = Store(db_path).get_run(run_id)
    assert row["status"] == "lost"  # stored as running, its process is gone
    # energy up to the last flush: what was stored before the kill stays
    assert row["energy_j"] is not None and row["energy_j"] >= before_kill > 250 * 0.6
    assert Store(db_path).read_series(run_id)["gpu0"][0], "the series was flushed"


def test_sigterm_completes_the_run_as_interrupted(tmp_path, db_path):
    p, run_id = _spawn(tmp_path, "terminated")
    time.sleep(0.6)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM  # the default action still happens
    row = Store(db_path).get_run(run_id)
    assert row["status"] == "interrupted" and row["ended_at"] is not None
    assert row["energy_j"] > 0


WRITER = textwrap.dedent("""
    import sys, greentrack
    for i in range(int(sys.argv[2])):
        with greentrack.session(f"{sys.argv[1]}-{i}", flush_interval_s=0.05, sample_interval_s=0.02) as s:
            for _ in range(3):
                s.step()
""")


def test_many_processes_write_one_database(tmp_path, db_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, GREENTRACK_MOCK="constant:100")
    procs = [subprocess.Popen([sys.executable, str(script), f"w{i}", "8"], env=env, stderr=subprocess.PIPE,
                              text=True) for i in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err and "cannot" not in err, err
    rows = Store(db_path).list_runs(last=None)
    assert len(rows) == 48
    assert all(r["status"] == "finished" for r in rows)


def test_series_storage_per_gpu_hour(db_path):
    """10 Hz for an hour of a busy, noisy GPU stays under 100 KB (issue target)."""
    import random

    from greentrack.store import codec

    rnd = random.Random(7)
    st = Store(db_path)
    t0 = 1_700_000_000.0
    st.begin_run(RunRow(id="size", name="size", started_at=t0), [])
    seq = 0
    t = t0
    p = 400.0
    for _chunk in range(1800):  # a flush every 2 s, as in a real run
        times, powers = [], []
        for _ in range(20):
            t += 0.1 + rnd.uniform(-0.003, 0.003)
            p = min(700.0, max(80.0, p + rnd.gauss(0, 15)))
            times.append(t)
            powers.append(p)
        st.progress("size", 0.0, [], [SeriesChunk.encode("gpu0", seq, times, powers, t0)])
        seq += 1
    st.finish_run("size", RunEnd(status="finished", ended_at=t), [], [])
    size = st.conn.execute("SELECT sum(length(data)) + count(*) * 48 FROM series WHERE run_id='size'").fetchone()[0]
    assert size < 100_000, size
    back = st.read_series("size")["gpu0"]
    assert len(back[0]) == 36_000
    assert codec.CODEC == "d1z"


RACE = textwrap.dedent("""
    import os, sys, time
    from greentrack.store.records import RunRow
    from greentrack.store.sqlite import Store
    t = float(sys.argv[2])
    while time.time() < t:
        pass
    st = Store(sys.argv[1])
    st.begin_run(RunRow(id="r%d" % os.getpid(), name="race", started_at=time.time()), [])
""")


def test_processes_creating_one_new_database_at_once(tmp_path):
    """Ranks of one job often create the database together: none may fail with 'locked'."""
    script = tmp_path / "race.py"
    script.write_text(RACE)
    for trial in range(4):
        db = tmp_path / f"race{trial}.db"
        go = str(time.time() + 0.4)
        procs = [subprocess.Popen([sys.executable, str(script), str(db), go], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        assert len(Store(db).list_runs(last=None)) == 4
