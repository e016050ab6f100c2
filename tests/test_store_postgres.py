"""What only a server database has: URLs, credentials, outages. A real PostgreSQL cluster (tests/pg_cluster.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import wait_for

from greentrack.errors import ConfigError
from greentrack.measure.jobs import job_id_from_env
from greentrack.settings import db_location, mask_url
from greentrack.store import StoreUnavailable, open_location, open_store
from greentrack.store.postgres import glob_regex

LONG = textwrap.dedent("""
    import sys, time, greentrack
    s = greentrack.Session("outage", flush_interval_s=0.2, sample_interval_s=0.1).start()
    print(s.id, flush=True)
    end = time.time() + float(sys.argv[1])
    while time.time() < end:
        time.sleep(0.01)
        s.step()
    s.stop()
    print(s.result.energy_j, flush=True)
""")


def _spawn(tmp_path: Path, seconds: float, **env: str) -> tuple[subprocess.Popen, str]:
    script = tmp_path / "long.py"
    script.write_text(LONG)
    p = subprocess.Popen([sys.executable, str(script), str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=dict(os.environ, GREENTRACK_MOCK="constant:200", **env), cwd=tmp_path)
    run_id = p.stdout.readline().strip()
    assert run_id, p.stderr.read()
    return p, run_id


def test_postgresql_stopped_mid_run_and_started_again_loses_nothing(pg_cluster, pg_url, tmp_path):
    p, run_id = _spawn(tmp_path, 4.0)
    time.sleep(0.8)
    pg_cluster.stop("fast")
    try:
        time.sleep(1.5)  # the session keeps measuring; its flushes fail and it keeps the run in the spool
        spool = tmp_path / "xdg-state" / "greentrack" / "spool"
        spooled = wait_for(lambda: list(spool.glob("*.json")), "run kept in the spool")  # if its flushes are late
        assert [f.name for f in spooled] == [f"{run_id}.json"]
    finally:
        pg_cluster.start()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    energy = float(out.split()[-1])
    st = open_store(create=False)
    run = st.get_run(run_id)
    assert run["status"] == "finished" and run["energy_j"] == pytest.approx(energy)
    t, w = st.read_series(run_id)["gpu0"]
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert t[0] - run["started_at"] < 0.5 and run["ended_at"] - t[-1] < 0.5
    assert max(gaps) < 0.5, "the series measured during the outage reached the database"
    assert sum(g * x for g, x in zip(gaps, w[1:])) == pytest.approx(energy, rel=0.05)
    lines = [ln for ln in err.splitlines() if ln.startswith("greentrack:")]
    assert any("kept in the spool" in ln for ln in lines) and any("nothing lost" in ln for ln in lines), err
    assert len(lines) == 2, err
    assert not list((tmp_path / "xdg-state" / "greentrack" / "spool").glob("*.json")), "delivered, then removed"


def test_a_server_unreachable_at_start_spools_the_run_and_push_or_doctor_delivers_it(pg_cluster, pg_url, tmp_path,
                                                                                   cli):
    pg_cluster.stop("fast")
    try:
        p, run_id = _spawn(tmp_path, 0.8)
        out, err = p.communicate(timeout=60)
    finally:
        pg_cluster.start()
    assert p.returncode == 0, err
    assert "unreachable" in err and "spool" in err and err.count("Traceback") == 0
    assert not list(tmp_path.glob("postgresql*"))  # the URL never becomes a SQLite file in the working folder
    energy = float(out.split()[-1])
    assert energy > 100
    res = cli("doctor", "--deliver")
    assert res.returncode == 0, res.stderr
    assert f"delivered run {run_id}" in res.stderr
    run = open_store(create=False).get_run(run_id)
    assert run["status"] == "finished" and run["energy_j"] == pytest.approx(energy)
    assert open_store(create=False).read_series(run_id)["gpu0"][0]


def test_greentrack_run_starts_its_command_while_the_server_is_down(pg_cluster, pg_url, cli_process, cli):
    pg_cluster.stop("fast")
    try:
        res = cli_process("run", "--name", "wrapped", "--", sys.executable, "-c", "import time; time.sleep(0.5)")
    finally:
        pg_cluster.start()
    assert res.returncode == 0, res.stderr
    assert "unreachable" in res.stderr and "spool" in res.stderr and "Traceback" not in res.stderr
    import greentrack

    local = str(Path(os.environ["XDG_DATA_HOME"]) / "laptop.db")
    with greentrack.session("on-the-laptop", db=local):
        time.sleep(0.1)
    pushed = cli("push", "--to", pg_url, "--db", local)  # push delivers what waits in the spool for its target too
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed 1 run" in pushed.stdout and "1 spooled run delivered" in pushed.stdout
    assert sorted(r["name"] for r in open_store(create=False).list_runs()) == ["on-the-laptop", "wrapped"]


def test_a_crash_during_an_outage_is_delivered_by_the_next_session(pg_cluster, pg_url, tmp_path):
    import signal

    p, run_id = _spawn(tmp_path, 30.0)
    time.sleep(0.6)
    pg_cluster.stop("fast")
    try:
        time.sleep(1.6)
        spool = tmp_path / "xdg-state" / "greentrack" / "spool"
        try:
            wait_for(lambda: list(spool.glob("*.json")), "run kept in the spool")  # before the crash, however late
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
    finally:
        pg_cluster.start()
    nxt, nxt_id = _spawn(tmp_path, 0.3)
    _, err = nxt.communicate(timeout=60)
    assert nxt.returncode == 0, err
    assert "delivered 1 spooled run(s)" in err and run_id in err
    run = open_store(create=False).get_run(run_id)
    assert run["status"] == "lost"
    t, _w = open_store(create=False).read_series(run_id)["gpu0"]
    assert t[-1] - run["started_at"] > 1.0, "what was measured during the outage was kept"


def test_credentials_are_never_shown_or_stored(pg_cluster, tmp_path, cli, monkeypatch):
    url = pg_cluster.url().replace("postgresql://postgres@", "postgresql://postgres:Sup3rS3cret@")
    monkeypatch.setenv("GREENTRACK_DB", url)
    res = cli("run", "--", sys.executable, "-c", "pass")
    assert res.returncode == 0, res.stderr
    doc = cli("doctor")
    assert "postgresql://postgres:***@" in doc.stdout and "Sup3rS3cret" not in doc.stdout + doc.stderr
    st = open_store()
    assert st.location == mask_url(url) and "Sup3rS3cret" not in st.location
    dump = st._read(lambda c: c.execute("SELECT r::text FROM runs r").fetchall())
    assert dump and "Sup3rS3cret" not in repr(dump)
    bad = "postgresql://postgres:Other5ecret@/postgres?host=/nonexistent"
    with pytest.raises(StoreUnavailable) as e:
        open_location(bad)
    assert "Other5ecret" not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("value", ["mysql://u:pw@db/x", "sqlite:///tmp/x.db", "https://example.com/db"])
def test_a_url_of_another_scheme_is_one_error_and_creates_nothing(value, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("GREENTRACK_DB", value)
    res = cli("report")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "unsupported scheme" in res.stderr
    assert "pw@" not in res.stderr
    assert not any(p.name.endswith(":") for p in tmp_path.iterdir())
    with pytest.raises(ConfigError):
        db_location(value)
    assert db_location("runs/greentrack.db") == Path("runs/greentrack.db")


def test_a_session_on_an_unsupported_url_still_measures(tmp_path, monkeypatch, capsys):
    import greentrack

    monkeypatch.setenv("GREENTRACK_DB", "mysql://x/y")
    with greentrack.session("lenient") as s:
        time.sleep(0.1)
    assert s.result.energy_j and "unsupported scheme" in capsys.readouterr().err
    assert not (tmp_path / "mysql:").exists()


def test_job_ids_from_greentrack_torchrun_and_slurm():
    assert job_id_from_env({"GREENTRACK_JOB_ID": "g", "TORCHELASTIC_RUN_ID": "t", "SLURM_JOB_ID": "1"}) == "g"
    assert job_id_from_env({"TORCHELASTIC_RUN_ID": "rdzv-7", "SLURM_JOB_ID": "1"}) == "rdzv-7"
    assert job_id_from_env({"TORCHELASTIC_RUN_ID": "none", "SLURM_JOB_ID": "991", "SLURM_STEP_ID": "2"}) == "991.2"
    assert job_id_from_env({"SLURM_JOB_ID": "991"}) == "991"
    assert job_id_from_env({}) is None


def test_globs_become_anchored_regular_expressions():
    assert glob_regex("llama-*") == r"^llama\-.*$"
    assert glob_regex("run-[!0-9]?") == r"^run\-[^0-9].$"
    assert glob_regex("[ab") == r"^\[ab$"
