"""export --format sqlite: a database for Datasette and sqlite-utils, written with sqlite-utils."""

from __future__ import annotations

import sqlite3

import pytest
import sqlite_utils

import greentrack


def _runs(n: int = 2) -> list[str]:
    ids = []
    for i in range(n):
        with greentrack.session(f"ds-{i}", region="FR", tags={"precision": "bf16"}) as s:
            with s.phase("train"):
                for _ in range(3):
                    s.step(samples=4)
        ids.append(s.id)
    return ids


def test_runs_phases_devices_and_power_are_browsable(cli, tmp_path):
    ids = _runs()
    out = tmp_path / "runs.db"
    r = cli("export", "--format", "sqlite", "--series", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"wrote {out} (2 runs; datasette {out} to browse it)"
    db = sqlite_utils.Database(str(out))
    assert set(db.table_names()) == {"runs", "phases", "devices", "power", "_greentrack_export"}
    runs = {row["id"]: row for row in db["runs"].rows}
    assert set(runs) == set(ids)
    stored = greentrack.load(ids[0])
    assert runs[ids[0]]["energy_j"] == pytest.approx(stored["energy_j"])
    assert runs[ids[0]]["tags"] == '{"precision": "bf16"}' and runs[ids[0]]["region"] == stored["region"] == "FRA"
    phases = list(db["phases"].rows_where("run_id = ?", [ids[0]]))
    assert [p["name"] for p in phases] == ["train"] and phases[0]["steps"] == 3
    assert db["phases"].foreign_keys[0].other_table == "runs"
    assert db["devices"].count == 2 and db["power"].count > 0
    # the power series integrates to the stored series energy of the run (interval averages)
    pts = list(db["power"].rows_where("run_id = ?", [ids[0]], order_by="t"))
    assert all(p["power_w"] >= 0 for p in pts) and pts[0]["t"].endswith("Z")


def test_exporting_again_replaces_rather_than_duplicates(cli, tmp_path):
    _runs(1)
    out = tmp_path / "runs.db"
    for _ in range(2):
        assert cli("export", "--format", "sqlite", "--series", "-o", str(out)).returncode == 0
    db = sqlite_utils.Database(str(out))
    assert db["runs"].count == 1 and db["phases"].count == 1
    n = db["power"].count
    assert cli("export", "--format", "sqlite", "--series", "-o", str(out)).returncode == 0
    assert db["power"].count == n


def test_never_writes_into_a_greentrack_database_or_another_sqlite_file(cli, tmp_path, db_path):
    _runs(1)
    r = cli("export", "--format", "sqlite", "-o", str(db_path))
    assert r.returncode == 2 and "refusing to write" in r.stderr and r.stderr.count("\n") == 1
    other = tmp_path / "someone-elses.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    r = cli("export", "--format", "sqlite", "-o", str(other))
    assert r.returncode == 2 and "it is an SQLite database" in r.stderr
    r = cli("export", "--format", "sqlite")
    assert r.returncode == 2 and "give it with -o FILE.db" in r.stderr
