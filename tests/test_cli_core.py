"""The CLI as a user runs it: real subprocesses, real database files."""

from __future__ import annotations

import sqlite3

from greentrack.store.sqlite import Store


def test_demo_lands_a_run_and_prints_the_report(cli, db_path):
    out = cli("demo", "--steps", "10", "--step-time", "0.01", "--eval-time", "0.2")
    assert out.returncode == 0, out.stderr
    assert "demo-train" in out.stdout and "finished" in out.stdout
    assert "phase train" in out.stdout and "per step" in out.stdout
    runs = Store(db_path).list_runs()
    assert len(runs) == 1 and runs[0]["energy_j"] > 0 and runs[0]["co2e_kg"] > 0
    assert runs[0]["id"] in out.stdout


def test_report_lists_newest_first_and_filters(cli, db_path):
    import greentrack

    for name, prec in (("a", "fp32"), ("b", "bf16"), ("c", "bf16")):
        with greentrack.session(name, tags={"precision": prec}):
            pass
    out = cli("report", "--last", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ["id", "name", "started", "duration", "status"]
    body = [ln.split()[1] for ln in lines[2:]]
    assert body == ["c", "b"]
    out = cli("report", "--tag", "precision=bf16", "--name", "b")
    assert [ln.split()[1] for ln in out.stdout.splitlines()[2:]] == ["b"]


def test_report_on_missing_database_is_not_an_error(cli, tmp_path):
    out = cli("report", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 0
    assert "no runs yet" in out.stdout


def test_bad_input_gives_one_line_and_nonzero_exit(cli, tmp_path):
    cases = [
        ("report", "--tag", "novalue"),
        ("report", "--since", "last tuesday"),
        ("demo", "--backend", "nvidai", "--steps", "1"),
        ("demo", "--region", "Atlantis", "--steps", "1"),
    ]
    for args in cases:
        out = cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("greentrack: error: "), out.stderr
        assert out.stderr.count("\n") == 1, out.stderr
    out = cli("report", "--last", "0")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_demo_with_unwritable_database_is_an_error(cli, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    out = cli("demo", "--steps", "1", "--db", str(blocker / "x.db"))
    assert out.returncode == 2
    assert "cannot create database folder" in out.stderr and "Traceback" not in out.stderr


def test_db_setting_precedence(cli, tmp_path, monkeypatch):
    """argument > GREENTRACK_DB > [tool.greentrack] db > default."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text('[tool.greentrack]\ndb = "runs/project.db"\nregion = "DE"\n')
    env = {"GREENTRACK_DB": ""}
    out = cli("demo", "--steps", "1", "--step-time", "0", "--eval-time", "0", env=env, cwd=proj)
    assert out.returncode == 0, out.stderr
    assert (proj / "runs" / "project.db").exists()
    out = cli("demo", "--steps", "1", "--step-time", "0", "--eval-time", "0",
              env={"GREENTRACK_DB": str(tmp_path / "env.db")}, cwd=proj)
    assert (tmp_path / "env.db").exists()
    out = cli("demo", "--steps", "1", "--step-time", "0", "--eval-time", "0", "--db", str(tmp_path / "arg.db"),
              env={"GREENTRACK_DB": str(tmp_path / "env.db")}, cwd=proj)
    assert (tmp_path / "arg.db").exists()
    con = sqlite3.connect(tmp_path / "env.db")
    assert con.execute("select count(*) from runs").fetchone()[0] == 1
    # with no setting anywhere, the XDG data dir is used
    out = cli("demo", "--steps", "1", "--step-time", "0", "--eval-time", "0", env={"GREENTRACK_DB": ""}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "xdg" / "greentrack" / "greentrack.db").exists()


def test_help_lists_commands(cli):
    out = cli("--help")
    assert out.returncode == 0
    for cmd in ("report", "demo"):
        assert cmd in out.stdout
