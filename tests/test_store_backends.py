"""The same behaviour on every backend: each test runs on SQLite and on a real PostgreSQL server.

``store_url`` (tests/conftest.py) sets ``GREENTRACK_DB`` to a SQLite file, then to a fresh schema
of the throwaway PostgreSQL cluster; the test body is one code path for both. What is specific
to PostgreSQL (outages, URLs, credentials) is in test_store_postgres.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import kill_once_stored

import greentrack
from greentrack.errors import SchemaError
from greentrack.store import open_location, open_store


def _session(name: str, seconds: float = 0.3, **kw) -> greentrack.Session:
    with greentrack.session(name, flush_interval_s=0.1, sample_interval_s=0.05, **kw) as s:
        with s.phase("work"):
            for _ in range(3):
                time.sleep(seconds / 3)
                s.step(samples=8)
    return s


def test_a_session_its_series_and_every_reading_path(store_url, cli):
    s = _session("train-a", tags={"precision": "bf16"})
    _session("train-b", tags={"precision": "fp32"})
    st = open_store()
    assert st.location.startswith("postgresql://") == store_url.startswith("postgresql://")
    rows = st.list_runs(last=None)
    assert [r["name"] for r in rows] == ["train-b", "train-a"]
    run = st.get_run(s.id)
    assert run["status"] == "finished" and run["energy_j"] == pytest.approx(s.result.energy_j)
    assert run["tags"] == {"precision": "bf16"} and run["devices"][0]["method"] == "counter"
    assert [p["name"] for p in run["phases"]] == ["work"] and run["steps"] == 3
    t, p = st.read_series(s.id)["gpu0"]
    assert len(t) == len(p) > 3 and all(x > 0 for x in p)
    assert [r["name"] for r in st.list_runs(name="train-*", tags={"precision": "fp32"})] == ["train-b"]
    assert st.resolve_id(s.id[:5]) == s.id and st.resolve_id("-2") == s.id
    # the CLI, the library readers, export and import
    rep = cli("report", "--format", "json")
    assert rep.returncode == 0, rep.stderr
    assert [r["name"] for r in json.loads(rep.stdout)["runs"]] == ["train-b", "train-a"]
    show = cli("show", s.id, "--format", "json")
    assert show.returncode == 0 and json.loads(show.stdout)["id"] == s.id
    df = greentrack.runs()
    assert list(df["name"]) == ["train-b", "train-a"]
    loaded = greentrack.load(s.id)
    assert len(loaded["series"]["gpu0"]) == len(t)
    exp = cli("export", "--series", "-o", "all.json")
    assert exp.returncode == 0, exp.stderr
    again = cli("import", "greentrack", "all.json")
    assert again.returncode == 0 and "2 already" in again.stdout + again.stderr


def test_import_into_an_empty_store_keeps_the_series(store_url, cli, tmp_path, monkeypatch):
    src = tmp_path / "src.db"
    monkeypatch.setenv("GREENTRACK_DB", str(src))
    s = _session("moved")
    assert cli("export", "--series", "-o", str(tmp_path / "x.json")).returncode == 0
    monkeypatch.setenv("GREENTRACK_DB", store_url)
    res = cli("import", "greentrack", str(tmp_path / "x.json"))
    assert res.returncode == 0, res.stderr
    st = open_store(create=False)
    assert st.get_run(s.id)["energy_j"] == pytest.approx(s.result.energy_j)
    assert len(st.read_series(s.id)["gpu0"][0]) == len(open_store(src).read_series(s.id)["gpu0"][0])


SCRIPT = textwrap.dedent("""
    import sys, time, greentrack
    s = greentrack.Session(sys.argv[1], flush_interval_s=0.2, sample_interval_s=0.1).start()
    print(s.id, flush=True)
    while True:
        time.sleep(0.01)
        s.step()
""")


def test_sigkill_leaves_a_lost_run_with_energy_up_to_the_last_flush(store_url, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    p = subprocess.Popen([sys.executable, str(script), "killed"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=dict(os.environ, GREENTRACK_MOCK="constant:250"))
    run_id = p.stdout.readline().strip()
    assert run_id, p.stderr.read()

    # killed once its flushes (every 0.2 s) have stored ~0.8 s of 250 W (was: after a fixed 1.5 s)
    before_kill = kill_once_stored(p, lambda: open_store(create=False), run_id, 250 * 0.8)
    st = open_store(create=False)
    row = st.get_run(run_id)
    assert row["status"] == "lost"
    assert row["energy_j"] is not None and row["energy_j"] >= before_kill > 250 * 0.8
    assert st.read_series(run_id)["gpu0"][0]
    assert [r["id"] for r in st.list_runs(status="lost")] == [run_id]
    # another host cannot tell the process is gone: there the run still reads as running
    os.environ["GREENTRACK_HOST"] = "another-node"
    try:
        assert open_store(create=False).get_run(run_id)["status"] == "running"
    finally:
        del os.environ["GREENTRACK_HOST"]


WRITER = textwrap.dedent("""
    import sys, greentrack
    for i in range(int(sys.argv[2])):
        with greentrack.session(f"{sys.argv[1]}-{i}", flush_interval_s=0.05, sample_interval_s=0.02) as s:
            for _ in range(3):
                s.step()
""")


def test_32_processes_of_8_sessions_lose_no_row(store_url, tmp_path):
    n_procs = 32
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, GREENTRACK_MOCK="constant:100", GREENTRACK_LOCK_TIMEOUT="60")
    procs = [subprocess.Popen([sys.executable, str(script), f"w{i}", "8"], env=env, stderr=subprocess.PIPE,
                              text=True) for i in range(n_procs)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        assert "cannot" not in err and "spool" not in err, err
    rows = open_store(create=False).list_runs(last=None)
    assert len(rows) == n_procs * 8
    assert len({r["id"] for r in rows}) == n_procs * 8
    assert all(r["status"] == "finished" for r in rows)


def test_a_newer_schema_is_refused_with_one_line(store_url, cli):
    _session("old")
    st = open_store()
    bump = "UPDATE greentrack_schema SET version = version + 1" if store_url.startswith("postgresql") \
        else "PRAGMA user_version = 99"
    st._write(lambda c: c.execute(bump))
    st.close()
    for write in (True, False):
        with pytest.raises(SchemaError, match="newer than this greentrack understands") as e:
            open_store(write=write)
        assert "\n" not in str(e.value)
    res = cli("report")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "upgrade greentrack" in res.stderr


def _node(tmp_path: Path, host: str, ranks: tuple[int, int], job: str) -> list[subprocess.Popen]:
    script = tmp_path / "rank.py"
    script.write_text("import time, greentrack\n"
                      "with greentrack.session('ddp', flush_interval_s=0.1, sample_interval_s=0.05) as s:\n"
                      "    time.sleep(0.4)\n")
    procs = []
    for local, rank in enumerate(ranks):
        env = dict(os.environ, GREENTRACK_HOST=host, SLURM_JOB_ID=job, SLURM_STEP_ID="0", RANK=str(rank),
                   WORLD_SIZE="4", LOCAL_RANK=str(local), GREENTRACK_MOCK_GPUS="2",
                   GREENTRACK_MOCK=f"constant:{100 + 50 * rank}")
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True))
    return procs


def test_a_two_node_job_adds_up_to_the_sum_of_its_four_runs(store_url, tmp_path, cli):
    procs = _node(tmp_path, "node-a", (0, 1), "4242") + _node(tmp_path, "node-b", (2, 3), "4242")
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    runs = open_store(create=False).list_runs(last=None, job_id="4242")
    assert len(runs) == 4 and {r["job_id"] for r in runs} == {"4242.0"}
    total = sum(r["energy_j"] for r in runs)
    res = cli("job", "4242", "--format", "json")
    assert res.returncode == 0, res.stderr
    job = json.loads(res.stdout)
    assert job["total"]["energy_j"] == pytest.approx(total)
    assert job["total"]["co2e_kg"] == pytest.approx(sum(r["co2e_kg"] for r in runs))
    assert job["total"]["runs"] == 4 and job["total"]["nodes"] == 2 and job["total"]["devices"] == 4
    nodes = {n["host"]: n for n in job["nodes"]}
    assert nodes["node-a"]["ranks"] == [0, 1] and nodes["node-b"]["ranks"] == [2, 3]
    assert nodes["node-a"]["devices"] == "2x Mock GPU"
    assert nodes["node-a"]["energy_j"] + nodes["node-b"]["energy_j"] == pytest.approx(total)
    by_rank = {r["rank"]: r for r in job["ranks"]}
    assert sorted(by_rank) == [0, 1, 2, 3] and by_rank[3]["host"] == "node-b"
    assert by_rank[3]["energy_j"] > by_rank[0]["energy_j"]  # 250 W against 100 W
    assert job["notes"] == []
    text = cli("report", "--job", "4242")
    assert text.returncode == 0 and "job 4242: 4 runs on 2 nodes (4 devices)" in text.stdout
    assert "node-a" in text.stdout and "node-b" in text.stdout


def test_the_pytest_plugin_stores_its_run(store_url, pytester):
    pytester.makepyfile(test_a="import time\n\ndef test_one():\n    time.sleep(0.2)\n")
    res = pytester.runpytest_subprocess("--greentrack", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    assert any("stored in" in line for line in res.outlines)
    rows = open_store(create=False).list_runs(last=None)
    assert len(rows) == 1 and rows[0]["status"] == "finished"
    run = open_store(create=False).get_run(rows[0]["id"])
    assert len(run["phases"]) == 1 and "test_one" in run["phases"][0]["name"]


def test_push_copies_runs_with_their_series_once(store_url, tmp_path, cli, monkeypatch):
    local = tmp_path / "laptop.db"
    monkeypatch.setenv("GREENTRACK_DB", str(local))
    ids = [_session(f"laptop-{i}").id for i in range(2)]
    target = store_url if store_url.startswith("postgresql") else str(tmp_path / "team.db")
    first = cli("push", "--to", target)
    assert first.returncode == 0, first.stderr
    assert "pushed 2 runs" in first.stdout and "0 already there" in first.stdout
    again = cli("push", "--to", target)
    assert "pushed 0 runs" in again.stdout and "2 already there and current" in again.stdout
    dst = open_location(target)
    src = open_store(create=False)
    for rid in ids:
        a, b = src.get_run(rid), dst.get_run(rid)
        assert (a["energy_j"], a["status"], a["tags"]) == (b["energy_j"], b["status"], b["tags"])
        assert src.read_series(rid) == dst.read_series(rid)
        assert [p["name"] for p in b["phases"]] == ["work"]
    assert len(dst.list_runs(last=None)) == 2
