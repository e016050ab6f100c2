"""Reading is robust: a bad row never stops a report, read-only storage reads, a damaged file is one line.

CLI commands run in process (click's CliRunner); real processes where the fault is a process's:
``greentrack run`` refusing to start its command, and a read-only mount (a private mount namespace).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_store_faults import needs_mount

import greentrack
from greentrack.store.sqlite import Store


def cli(*args: str, env: dict | None = None):
    from greentrack.cli import load_commands

    return CliRunner(env=env).invoke(load_commands(), list(args))


def one_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("greentrack: error: "), result.stderr
    return lines[0]


def strict_json(text: str) -> object:
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON: {c}"))


def measured(name: str, seconds: float = 0.3) -> str:
    s = greentrack.Session(name, flush_interval_s=0.1, exact_edges=False)
    with s:
        with s.phase("train"):
            time.sleep(seconds)
            s.step(samples=2)
    return s.id


BAD_ROWS = [
    # (id, column values): each breaks one rule a different way
    ("bad-number", {"energy_j": "lots", "duration_s": 1e300}),
    ("bad-time", {"started_at": 1e300, "ended_at": -1e12}),
    ("bad-json", {"tags": "{oops", "notes": "[1, 2", "stats": "[]", "budget": '"over"'}),
    ("bad-status", {"status": "<script>alert(1)</script>", "name": None}),
    ("bad-float", {"co2e_kg": float("inf"), "energy_j": -5.0, "pue": 0.0, "steps": "many"}),
]


@pytest.fixture
def poisoned(db_path: Path) -> dict[str, str]:
    """A database with good runs and rows that break every kind of rule (written behind greentrack's back)."""
    good = measured("good-a")
    other = measured("good-b")
    con = sqlite3.connect(db_path)
    for rid, cols in BAD_ROWS:
        base = {"id": rid, "name": rid, "status": "finished", "started_at": time.time() - 5, "ended_at": time.time()}
        base.update(cols)
        con.execute(f"INSERT INTO runs ({', '.join(base)}) VALUES ({', '.join('?' * len(base))})", list(base.values()))
    con.execute("INSERT INTO runs (id, name, started_at) VALUES (NULL, 'no-id', ?)", (time.time(),))
    con.execute("INSERT INTO devices (run_id, key, kind, name, energy_j, info) VALUES (?, 'gpu9', 'gpu', NULL, 'x', "
                "'zzz')", (other,))
    con.execute("INSERT INTO phases (run_id, seq, name, started_at, ended_at) VALUES (?, 9, 'odd', 'x', 1)", (other,))
    con.execute("INSERT INTO series (run_id, device_key, seq, t0, t1, n, codec, data) VALUES (?, 'gpu0', 99, 0, 0, 1, "
                "'d1z', ?)", (other, b"not zlib"))
    con.execute("INSERT INTO series (run_id, device_key, seq, t0, t1, n, codec, data) VALUES (?, 'gpu0', 98, 0, 0, 1, "
                "'d1z', ?)", (other, zlib.compress(b"\x05\x00\x00\x00")))  # a header that promises more than it holds
    con.commit()
    con.close()
    return {"good": good, "other": other}


def test_every_reader_survives_any_corrupt_row_and_marks_it(poisoned, tmp_path):
    for fmt in ("table", "csv", "markdown"):
        r = cli("report", "-n", "50", "--format", fmt)
        assert r.exit_code == 0, r.output
        if fmt == "table":
            assert "skipped 1 unreadable run row" in r.stderr  # said once per process
    r = cli("report", "-n", "50", "--format", "json")
    assert r.exit_code == 0, r.output
    runs = {x["id"]: x for x in strict_json(r.stdout)["runs"]}
    assert set(runs) == {poisoned["good"], poisoned["other"], *(rid for rid, _ in BAD_ROWS)}  # the id-less row: skipped
    assert runs["bad-number"]["energy_j"] is None and runs["bad-float"]["co2e_kg"] is None
    assert runs["bad-status"]["status"] == "unknown" and runs["bad-json"]["tags"] == {}
    for rid, cols in BAD_ROWS:
        shown = cli("show", rid, "--format", "json")
        assert shown.exit_code == 0, shown.output
        notes = " ".join(strict_json(shown.stdout)["notes"])
        for col in cols:
            if col != "name":
                assert f"stored {col}" in notes, (rid, col, notes)
        assert cli("show", rid).exit_code == 0
    shown = cli("show", poisoned["other"], "--format", "json")
    assert shown.exit_code == 0 and "skipped 2 unreadable series chunk(s)" in shown.stderr
    notes = " ".join(strict_json(shown.stdout)["notes"])
    assert "stored device gpu9" in notes and "stored phase #9" in notes
    out = tmp_path / "all.json"
    r = cli("export", "--series", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert len(strict_json(out.read_text())["runs"]) == 7
    assert cli("diff", "bad-number", poisoned["good"]).exit_code == 0
    html = tmp_path / "r.html"
    r = cli("report", "-n", "50", "--format", "html", "--detail", "10", "-o", str(html))
    assert r.exit_code == 0, r.output
    assert "good-a" in html.read_text()


def test_json_output_is_always_valid_json_with_a_note_for_non_finite_numbers():
    from greentrack.views.runs import render_json

    doc = strict_json(render_json([{"id": "x", "name": "n", "status": "finished", "energy_j": 1e300,
                                    "duration_s": 1e-300, "started_at": 1.8e9}]))
    assert doc["runs"][0]["avg_power_w"] is None
    assert doc["notes"] == ["runs[0].avg_power_w was inf, written as null"]


def _corrupt_runs_table(db: Path, table: str = "runs", offset: int = 8) -> None:
    """Overwrite the cells of the runs table's root page (from *offset*: 0 takes its header too), as a failing
    disk or a stray write would."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with open(db, "r+b") as fh:
        fh.seek((root - 1) * size + offset)
        fh.write(b"\xa5" * (size - offset))


def test_a_damaged_database_is_one_line_exit_2_and_doctor_says_what_to_do(db_path, tmp_path):
    measured("before-damage", 0.05)
    _corrupt_runs_table(db_path)
    for args in (["report"], ["show"], ["export"], ["report", "--format", "json"]):
        assert "is damaged" in one_line(cli(*args)), args
    r = cli("doctor")
    assert r.exit_code == 0 and "DAMAGED" in r.stdout and "--salvage" in r.stdout and "mv " in r.stdout
    new = tmp_path / "saved.db"
    r = cli("doctor", "--salvage", str(new))
    assert r.exit_code == 0 and "salvaged" in r.stdout, r.output
    assert cli("report", "--db", str(new)).exit_code == 0
    assert "exists already" in one_line(cli("doctor", "--salvage", str(new)))


def test_greentrack_run_refuses_a_damaged_database_before_starting_the_command(cli_proc, db_path, tmp_path):
    measured("before-damage", 0.05)
    _corrupt_runs_table(db_path)
    marker = tmp_path / "ran"
    p = cli_proc("run", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "is damaged" in lines[0] and "greentrack doctor" in lines[0]
    assert not marker.exists()


def test_the_strict_start_checks_the_tables_it_writes_not_the_phases_of_every_earlier_test(db_path):
    """The check before a strict start (the pytest plugin, greentrack run) reads the run tables only: its cost
    does not grow with the phases a database holds (one per test of every pytest run). A damaged phases table
    shows at the run's end instead: one line, the run kept in the spool, nothing lost."""
    measured("before-damage", 0.05)
    seen: list[str] = []
    store = Store(db_path)
    store.conn.set_trace_callback(seen.append)
    store.verify()
    checks = [q for q in seen if "quick_check" in q]
    assert len(checks) == 3 and not any("phases" in q or "series" in q for q in checks), checks
    _corrupt_runs_table(db_path, "phases", offset=0)
    s = greentrack.Session("phases-damaged", strict=True, exact_edges=False)
    s.start()  # not refused: the tables its start writes are sound
    with s.phase("one"):
        time.sleep(0.02)
    r = s.stop()
    assert r.status == "finished" and r.phases[0].energy_j is not None
    assert s.writer.spooled is not None and s.writer.spooled.exists()


def test_a_session_on_a_damaged_database_measures_says_one_line_and_spools_the_run(db_path, capfd):
    measured("before-damage", 0.05)
    _corrupt_runs_table(db_path)
    with greentrack.session("after-damage", exact_edges=False) as s:
        time.sleep(0.05)
    assert s.result.status == "finished" and s.result.energy_j is not None
    err = [x for x in capfd.readouterr().err.splitlines() if x.startswith("greentrack:")]
    assert any("is damaged" in x for x in err) and any("kept in the spool" in x for x in err) and len(err) <= 2
    assert s.writer.spooled is not None and s.writer.spooled.exists()


def test_a_directory_given_as_the_database_says_it_is_a_directory(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("GREENTRACK_DB", str(tmp_path))
    for args in (["report"], ["show"], ["export"], ["run", "--", "true"], ["import", "greentrack", "x.json"]):
        assert "is a directory" in one_line(cli(*args)), args
    assert "is a directory" in cli("doctor").stdout
    with greentrack.session("dir-db", exact_edges=False) as s:
        pass
    assert s.result.status == "finished"
    assert "is a directory" in capfd.readouterr().err


def test_reports_and_exports_never_overwrite_the_database(db_path, tmp_path):
    measured("keep-me", 0.05)
    link = tmp_path / "link.db"
    link.symlink_to(db_path)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    for target in (db_path, Path(str(db_path) + "-wal"), Path(str(db_path) + "-shm"), link, other):
        for args in (["report", "--format", "csv"], ["export"], ["report", "--format", "html"]):
            line = one_line(cli(*args, "-o", str(target)))
            assert "refusing to write to" in line, (target, args, line)
    with open(db_path, "rb") as fh:
        assert fh.read(16) == b"SQLite format 3\x00"
    assert [r["name"] for r in Store(db_path, write=False).list_runs()] == ["keep-me"]


def test_doctor_checks_writability_for_real(monkeypatch):
    monkeypatch.setenv("GREENTRACK_DB", "/proc/greentrack-test.db")  # os.access() says yes for root; a write says no
    r = cli("doctor", "--json")
    db = json.loads(r.stdout)["database"]
    assert db["writable"] is False and db["why_not_writable"]
    assert "NOT writable" in cli("doctor").stdout


def test_doctor_warns_when_other_users_can_read_the_database(db_path):
    measured("shared", 0.05)
    os.chmod(db_path, 0o644)
    assert f"chmod 600 {db_path}" in cli("doctor").stdout


READ_ONLY = textwrap.dedent("""
    set -e
    mount -t tmpfs -o size=8m tmpfs "$MNT"
    export GREENTRACK_DB="$MNT/gt.db"
    python3 -c "
    import time, greentrack
    for n in ('ro-a', 'ro-b'):
        with greentrack.session(n, flush_interval_s=0.1, exact_edges=False) as s:
            time.sleep(0.2); s.step()
    "
    mount -o remount,ro "$MNT"
    run() {
        name=$1; shift; set +e
        python3 -m greentrack "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"; echo $? > "$OUT/$name.rc"
        set -e
    }
    run report report --format json
    run show show ro-a --format json
    run export export --series
    run diff diff ro-a ro-b
    run doctor doctor --json
    run import import greentrack "$OUT/export.out"
    python3 -c "
    import greentrack
    with greentrack.session('ro-c', exact_edges=False) as s:
        pass
    print(s.writer.spooled)
    " > "$OUT/session.out" 2> "$OUT/session.err"
""")


@needs_mount
def test_reading_works_on_a_read_only_mount_and_only_writing_needs_access(tmp_path):
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    (tmp_path / "ro.sh").write_text(READ_ONLY)
    p = subprocess.run(["unshare", "-rm", "bash", str(tmp_path / "ro.sh")], capture_output=True, text=True,
                       env=dict(os.environ, MNT=str(mnt), OUT=str(out)), timeout=120)
    assert p.returncode == 0, p.stderr

    def res(name: str) -> tuple[int, str, str]:
        return (int((out / f"{name}.rc").read_text()), (out / f"{name}.out").read_text(),
                (out / f"{name}.err").read_text())

    for name in ("report", "show", "export", "diff"):
        rc, stdout, err = res(name)
        assert rc == 0 and err == "", (name, err)
    assert [r["name"] for r in strict_json(res("report")[1])["runs"]] == ["ro-b", "ro-a"]
    assert len(strict_json(res("export")[1])["runs"]) == 2
    db = strict_json(res("doctor")[1])["database"]
    assert db["writable"] is False and "read-only" in db["why_not_writable"] and db["runs"] == 2
    rc, _o, err = res("import")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "read-only" in err
    assert Path((out / "session.out").read_text().strip()).name.endswith(".json")  # the run waits in the spool
    assert "kept in the spool" in (out / "session.err").read_text()


@pytest.fixture
def cli_proc():
    from conftest import run_cli

    return run_cli
