"""``greentrack report --status S``: each status filter returns exactly the runs in that state.

Real processes make each state: a session that finishes, one that raises (failed), one stopped by
SIGTERM (interrupted), one still running in another process, and one whose process was SIGKILLed
mid-run (stored as ``running``; reported ``lost`` once its process is gone).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import greentrack
from greentrack.api import query_runs
from greentrack.store.records import RunEnd, RunRow
from greentrack.store.sqlite import Store

# a run that goes on until it is signalled; prints its id once its row is in the database
LONG_RUN = """
import signal, sys, time
import greentrack

signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as a training process has it, even if pytest runs under nohup

s = greentrack.session(sys.argv[1]).start()
deadline = time.time() + 15
while s.store is None or not s.store.list_runs(last=1, name=sys.argv[1]):
    if time.time() > deadline:
        sys.exit("the run row did not appear within 15 s")
    time.sleep(0.01)
print(s.id, flush=True)
while True:
    time.sleep(0.05)
    s.step()
"""


def start_long_run(name: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", LONG_RUN, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise AssertionError(f"the run did not start: {proc.stderr.read()[-2000:]}")
    return proc, line


def report_ids(cli: Any, *args: str) -> dict[str, str]:
    """``{run id: status}`` as ``greentrack report --format json`` lists them."""
    res = cli("report", "--last", "100", "--format", "json", *args)
    assert res.returncode == 0, res.stderr
    return {r["id"]: r["status"] for r in json.loads(res.stdout)["runs"]}


@pytest.fixture
def five_runs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """finished, failed, interrupted (SIGTERM), running (alive) and lost (SIGKILL): ``{status: id}``, live process."""
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:300")
    ids: dict[str, str] = {}
    with greentrack.session("ok") as s:
        time.sleep(0.05)
    ids["finished"] = s.id
    with pytest.raises(ValueError):
        with greentrack.session("broken") as s:
            time.sleep(0.05)
            raise ValueError("bad batch")
    ids["failed"] = s.id

    term, ids["interrupted"] = start_long_run("terminated")
    killed, ids["lost"] = start_long_run("killed")
    alive, ids["running"] = start_long_run("alive")
    try:
        term.send_signal(signal.SIGTERM)
        killed.send_signal(signal.SIGKILL)
        # SIGTERM: the run is completed as interrupted, then the process dies of the signal as before
        assert term.wait(timeout=30) == -signal.SIGTERM
        killed.wait(timeout=30)
        yield ids, alive
    finally:
        for p in (term, killed, alive):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
            p.stdout.close()
            p.stderr.close()


def test_report_status_lost_lists_a_sigkilled_run(five_runs: Any, cli: Any, db_path: Path) -> None:
    """Kills a ``lost`` filter that returns nothing (it matches on a status that is never stored)."""
    ids, _alive = five_runs
    assert report_ids(cli, "--status", "lost") == {ids["lost"]: "lost"}
    # stored as 'running' (the process could not finish it), decorated as lost on reading
    raw = Store(db_path).conn.execute("SELECT status FROM runs WHERE id=?", (ids["lost"],)).fetchone()[0]
    assert raw == "running"
    table = cli("report", "--status", "lost")
    assert table.returncode == 0 and ids["lost"] in table.stdout and "lost" in table.stdout
    assert ids["running"] not in table.stdout


def test_each_status_filter_returns_exactly_its_runs(five_runs: Any, cli: Any) -> None:
    ids, alive = five_runs
    everything = report_ids(cli)
    assert everything == {rid: status for status, rid in ids.items()}
    for status, rid in ids.items():
        assert report_ids(cli, "--status", status) == {rid: status}, status
    # the same through the library
    for status, rid in ids.items():
        assert [r["id"] for r in query_runs(last=None, status=status)] == [rid]
    # reading the runs only looks at the live process (signal 0): it is still running
    assert alive.poll() is None
    # the live one becomes lost when its process dies
    alive.kill()
    alive.wait(timeout=30)
    assert report_ids(cli, "--status", "running") == {}
    assert report_ids(cli, "--status", "lost") == {ids["lost"]: "lost", ids["running"]: "lost"}


def test_interrupted_run_by_sigterm_is_complete(five_runs: Any, db_path: Path) -> None:
    ids, _alive = five_runs
    run = Store(db_path).get_run(ids["interrupted"])
    assert run["status"] == "interrupted" and run["ended_at"] is not None and run["energy_j"] > 0
    failed = Store(db_path).get_run(ids["failed"])
    assert failed["status"] == "failed" and failed["error"] == "ValueError: bad batch"


def test_unknown_status_is_one_line_and_exit_2(cli: Any) -> None:
    res = cli("report", "--status", "lsot")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad status 'lsot'" in lines[0] and "lost" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_listing_gives_ten_runs_by_default_and_zero_energy_as_zero_kwh(db_path: Path) -> None:
    """Kills a default page other than 10 runs, ``energy_j or 1.0`` in the decorated row (0 J is 0 kWh), and
    a glob told from a plain name by ``c not in name``."""
    store = Store(db_path)
    for i in range(12):
        rid = f"run{i:02d}"
        store.begin_run(RunRow(id=rid, name=rid, started_at=1_790_000_000.0 + i), [])
        store.finish_run(rid, RunEnd(status="finished", ended_at=1_790_000_001.0 + i, energy_j=float(i) * 3.6e5),
                         [], [])
    rows = store.list_runs()
    assert [r["id"] for r in rows] == [f"run{i:02d}" for i in range(11, 1, -1)]
    assert store.list_runs(last=None)[-1]["energy_kwh"] == 0.0
    assert rows[0]["energy_kwh"] == pytest.approx(1.1)
    # a name with every glob character is a glob; a plain name matches itself only
    assert [r["id"] for r in store.list_runs(last=None, name="r?n[0-9]1*")] == ["run11", "run01"]
    assert store.list_runs(last=None, name="run1") == []


def test_job_and_tag_filters_select_their_runs_with_either_query_plan(db_path: Path) -> None:
    """Kills a job filter or a tag filter dropped: a tag that 1000+ runs carry takes the scanning plan,
    a rare one the indexed plan; both must select exactly the runs that carry it. A job's Slurm steps
    (``j-rare.0``) belong to it; another job whose id starts alike (``j-rarer``) does not."""
    store = Store(db_path)
    rows = [(f"c{i:04d}", "n", "finished", 1_790_000_000.0 + i, "j-big" if i % 2 else None) for i in range(1100)]
    rows += [(f"r{i}", "n", "finished", 1_790_001_000.5 + i, "j-rare") for i in range(3)]
    rows += [("r3", "n", "finished", 1_790_002_000.0, "j-rare.0"), ("x0", "n", "finished", 1_790_002_001.0, "j-rarer")]

    def fill(conn: Any) -> None:
        conn.executemany("INSERT INTO runs (id, name, status, started_at, job_id) VALUES (?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO run_tags (run_id, key, value) VALUES (?, 'precision', ?)",
                         [(r[0], "fp8" if r[0].startswith("r") else "bf16") for r in rows])

    store._write(fill)
    common = store.list_runs(last=5, tags={"precision": "bf16"})
    assert [r["id"] for r in common] == ["x0", "c1099", "c1098", "c1097", "c1096"]
    rare = store.list_runs(last=None, tags={"precision": "fp8"})
    assert [r["id"] for r in rare] == ["r3", "r2", "r1", "r0"]
    assert [r["id"] for r in store.list_runs(last=None, job_id="j-rare")] == ["r3", "r2", "r1", "r0"]
    assert len(store.list_runs(last=None, job_id="j-big")) == 550
    assert store.list_runs(last=None, tags={"precision": "fp8"}, job_id="j-big") == []


def test_a_process_of_another_user_counts_as_alive() -> None:
    """Kills ``return False`` on PermissionError: a run started by another user on this host is not lost
    because greentrack may not signal its process. Checked for real: as an unprivileged user, pid 1."""
    code = ("import os, sys\n"
            "from greentrack.store.queries import _pid_alive\n"
            "if os.geteuid() == 0:\n"
            "    os.setgid(65534); os.setuid(65534)  # nobody\n"
            "try:\n"
            "    os.kill(1, 0)\n"
            "except PermissionError:\n"
            "    pass\n"
            "else:\n"
            "    sys.exit('pid 1 can be signalled here: nothing to check')\n"
            "print(_pid_alive(1), _pid_alive(2 ** 22 + 12345))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    if "nothing to check" in res.stderr:
        pytest.skip("pid 1 belongs to this user here")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "False"]  # another user's process; no process at all


def _insert(store: Store, *rows: dict[str, Any]) -> None:
    """Run rows written behind greentrack's back (another tool, an older version, a damaged file)."""
    def body(conn: Any) -> None:
        for row in rows:
            cols = ", ".join(row)
            conn.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    store._write(body)


def test_a_stored_pid_no_process_can_have_reads_as_lost(db_path: Path) -> None:
    """A running row of this host whose pid is beyond what the OS takes (os.kill raises OverflowError) has no
    process: lost, not running (kills ``return True`` for that case); a pid that is gone, too."""
    from greentrack.settings import host_name
    from greentrack.store.queries import _pid_alive

    assert _pid_alive(2 ** 40) is False and _pid_alive(os.getpid()) is True
    store = Store(db_path)
    t = 1_790_000_000.0
    _insert(store, {"id": "huge", "name": "n", "status": "running", "started_at": t, "host": host_name(),
                    "pid": 2 ** 40},
            {"id": "mine", "name": "n", "status": "running", "started_at": t + 1, "host": host_name(),
             "pid": os.getpid()},
            {"id": "elsewhere", "name": "n", "status": "running", "started_at": t + 2, "host": "another-host",
             "pid": 2 ** 40})
    assert {r["id"]: r["status"] for r in store.list_runs(last=None)} == {"huge": "lost", "mine": "running",
                                                                          "elsewhere": "running"}
    assert [r["id"] for r in store.list_runs(last=None, status="lost")] == ["huge"]


def test_a_row_with_broken_values_keeps_its_notes_and_names_each_problem(db_path: Path) -> None:
    """Kills the problems' notes dropped, given to rows without problems, or replacing the run's own notes."""
    store = Store(db_path)
    t = 1_790_000_000.0
    _insert(store, {"id": "bad", "name": "n", "status": "finished", "started_at": t, "energy_j": "lots",
                    "notes": '["kept"]'},
            {"id": "good", "name": "n", "status": "finished", "started_at": t + 1, "energy_j": 7.2e6,
             "notes": '["fine"]'})
    rows = {r["id"]: r for r in store.list_runs(last=None)}
    assert rows["bad"]["notes"] == ["kept", "stored energy_j must be a finite number of joules >= 0, got 'lots': "
                                            "shown as empty"]
    assert rows["bad"]["energy_j"] is None and rows["bad"]["energy_kwh"] is None
    assert rows["good"]["notes"] == ["fine"] and rows["good"]["energy_kwh"] == pytest.approx(2.0, rel=1e-12)


def test_a_secret_in_a_stored_command_is_redacted_when_read(db_path: Path) -> None:
    """A command line stored unredacted (by an older version, or another tool) is redacted on reading
    (kills the redaction skipped, or run on rows without a command)."""
    store = Store(db_path)
    t = 1_790_000_000.0
    _insert(store, {"id": "cmd", "name": "n", "status": "finished", "started_at": t,
                    "command": "python train.py --api-key abc123 --lr 3e-4"},
            {"id": "none", "name": "n", "status": "finished", "started_at": t + 1})
    rows = {r["id"]: r for r in store.list_runs(last=None)}
    assert rows["cmd"]["command"] == "python train.py --api-key '***' --lr 3e-4"
    assert rows["none"]["command"] is None
    assert store.get_run("cmd")["command"] == "python train.py --api-key '***' --lr 3e-4"


def test_rows_without_an_id_are_skipped_and_counted_once(db_path: Path, capfd: Any) -> None:
    """Kills the count of skipped rows starting at 1, counting down or by 2, and not said."""
    store = Store(db_path)
    t = 1_790_000_000.0
    _insert(store, {"id": "a", "name": "n", "status": "finished", "started_at": t})
    assert [r["id"] for r in store.list_runs(last=None)] == ["a"]
    assert "unreadable" not in capfd.readouterr().err
    _insert(store, {"id": None, "name": "n", "status": "finished", "started_at": t + 1},
            {"id": None, "name": "n", "status": "finished", "started_at": t + 2})
    assert [r["id"] for r in store.list_runs(last=None)] == ["a"]
    assert f"skipped 2 unreadable run row(s) in {store.location} (no usable id)" in capfd.readouterr().err


class _Counting:
    """A connection that keeps the SQL of every query run through it."""

    def __init__(self, conn: Any, seen: list[str]) -> None:
        self.conn, self.seen = conn, seen

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.seen.append(sql)
        return self.conn.execute(sql, params)


def test_the_paged_scan_gives_the_same_runs_as_one_cursor_in_few_queries(db_path: Path) -> None:
    """The page-wise scan newest first (``page_rows``: how the PostgreSQL backend reads), run here on SQLite:
    every filter gives the same runs as one cursor, and pages grow so a long scan takes few queries. Kills a
    first page at offset 1, pages not advancing or overlapping, the stop condition at a full page, the loop
    never run, the paged column names, and pages that do not grow."""
    from greentrack.settings import host_name

    store = Store(db_path)
    t = 1_790_000_000.0
    rows: list[dict[str, Any]] = []
    for i in range(200):
        row: dict[str, Any] = {"id": f"r{i:03d}", "name": "a" if i % 2 else "b", "status": "finished",
                               "started_at": t + i}
        if i % 3:  # two in three: running on this host, the process long gone: lost
            row.update(status="running", host=host_name(), pid=2 ** 40)
        rows.append(row)
    for i in (0, 199):  # the oldest and the newest: still running
        rows[i].update(status="running", host=host_name(), pid=os.getpid())
    _insert(store, *rows)
    cases: list[dict[str, Any]] = [{"last": 1}, {"last": 7}, {"last": 50}, {"last": 250}, {"last": 3, "name": "b"},
                                   {"last": 2, "status": "lost"}, {"last": 90, "status": "lost"},
                                   {"last": 5, "status": "running"}, {"last": 4, "status": "finished"},
                                   {"last": None}, {"last": None, "status": "lost"}]
    expected = [[r["id"] for r in store.list_runs(**kw)] for kw in cases]
    assert expected[3] == [f"r{i:03d}" for i in range(199, -1, -1)]
    assert expected[5] == ["r197", "r196"] and len(expected[6]) == 90 and expected[7] == ["r199", "r000"]
    assert expected[8] == ["r198", "r195", "r192", "r189"]
    seen: list[str] = []
    read = store._read
    store._read = lambda fn: read(lambda c: fn(_Counting(c, seen)))  # type: ignore[method-assign]
    store.page_rows = 2
    for kw, ids in zip(cases, expected):
        assert [r["id"] for r in store.list_runs(**kw)] == ids, kw
    seen.clear()
    # 'running' in SQL selects the 133 rows stored so; only the newest and the oldest are alive: every one
    # is read, and the newest only once
    assert [r["id"] for r in store.list_runs(last=5, status="running")] == ["r199", "r000"]
    pages = [q for q in seen if " LIMIT " in q and q.startswith("SELECT * FROM runs")]
    assert len(pages) == 3, pages  # pages of 13, 52, 208 rows (not 11 of 13)


def test_a_runs_energy_method_comes_from_the_devices_that_have_energy(db_path: Path) -> None:
    """The listing's ``energy_method``: a device without energy (a CPU model that read nothing) does not make
    a measured run ``mixed``; a method that is not text (a blob) is no method. Kills the device filter inverted or
    dropped and the text check inverted."""
    from greentrack.store.records import DeviceRow

    store = Store(db_path)
    t = 1_790_000_000.0
    store.begin_run(RunRow(id="gpu", name="n", started_at=t), [
        DeviceRow(key="gpu0", kind="gpu", name="Mock GPU", method="counter", energy_j=100.0),
        DeviceRow(key="gpu1", kind="gpu", name="Mock GPU", method="buffer", energy_j=50.0),
        DeviceRow(key="cpu", kind="cpu", name="CPU model", method="model", energy_j=None)])
    store.begin_run(RunRow(id="cpu", name="n", started_at=t + 1), [
        DeviceRow(key="cpu", kind="cpu", name="CPU model", method="model", energy_j=3.0)])
    store.begin_run(RunRow(id="odd", name="n", started_at=t + 2), [
        DeviceRow(key="gpu0", kind="gpu", name="Mock GPU", method="counter", energy_j=1.0)])
    store._write(lambda c: c.execute("UPDATE devices SET method = X'2a' WHERE run_id = 'odd'"))
    rows = {r["id"]: r for r in store.list_runs(last=None)}
    assert {k: r["energy_method"] for k, r in rows.items()} == {"gpu": "measured", "cpu": "model", "odd": None}
    assert rows["gpu"]["devices"] == "cpu, 2x Mock GPU" and rows["cpu"]["devices"] == "cpu"  # by device key
