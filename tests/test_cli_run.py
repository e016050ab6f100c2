"""``greentrack run -- <command>``: exit codes, signals, the stored command line, job linking, live display.

Real processes throughout: what is tested is a child's exit code, its output, signals and a terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greentrack.store.sqlite import Store

PY = sys.executable


def wrapper(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "greentrack", "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def wait_for(path: Path, timeout: float = 20.0) -> None:
    end = time.time() + timeout
    while not path.exists():
        if time.time() > end:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def last_run(db_path: Path) -> dict:
    return Store(db_path).get_run("last")


def test_exit_code_and_command_line_pass_through(cli_process, db_path, tmp_path):
    p = cli_process("run", "--name", "train", "--tag", "precision=bf16", "--region", "FR", "--",
                    PY, "-c", "import sys; print('child out'); sys.exit(3)", "arg with space")
    assert p.returncode == 3
    assert "child out" in p.stdout
    run = last_run(db_path)
    assert run["name"] == "train" and run["status"] == "failed" and run["error"] == "exit code 3"
    assert run["command"] == f"{PY} -c 'import sys; print('\"'\"'child out'\"'\"'); sys.exit(3)' 'arg with space'"
    assert run["tags"] == {"precision": "bf16"} and run["region"] == "FRA"
    assert "\x1b[2K" not in p.stderr  # not a terminal: no live display
    assert f"[{run['id']}] failed" in p.stderr


def test_child_sees_job_and_run_ids(cli_process, db_path, tmp_path):
    out = tmp_path / "env.json"
    code = ("import json, os; json.dump({k: os.environ.get(k) for k in "
            "('GREENTRACK_JOB_ID', 'GREENTRACK_PARENT_RUN_ID')}, open(%r, 'w'))" % str(out))
    p = cli_process("run", "--", PY, "-c", code)
    assert p.returncode == 0, p.stderr
    env = json.loads(out.read_text())
    run = last_run(db_path)
    assert run["status"] == "finished" and run["name"] == Path(PY).name
    assert env == {"GREENTRACK_JOB_ID": run["job_id"], "GREENTRACK_PARENT_RUN_ID": run["id"]}
    # an outer job id (a scheduler's) is kept and handed down
    p = cli_process("run", "--", PY, "-c", code, env={"GREENTRACK_JOB_ID": "job-42"})
    assert json.loads(out.read_text())["GREENTRACK_JOB_ID"] == "job-42" == last_run(db_path)["job_id"]


def test_a_child_session_is_linked_to_the_wrapper(cli_process, cli, db_path):
    code = ("import greentrack\nwith greentrack.session('inner', backend='mock') as s:\n    s.step()\n")
    p = cli_process("run", "--name", "outer", "--", PY, "-c", code)
    assert p.returncode == 0, p.stderr
    p = cli("report", "--format", "json", "--job", last_run(db_path)["job_id"])
    names = sorted(r["name"] for r in json.loads(p.stdout)["runs"])
    assert names == ["inner", "outer"]


@pytest.mark.parametrize("sig, handled", [(signal.SIGTERM, True), (signal.SIGTERM, False), (signal.SIGINT, False)])
def test_signals_reach_the_child(db_path, tmp_path, sig, handled):
    ready, got = tmp_path / "ready", tmp_path / "got"
    code = (
        "import signal, sys, time, pathlib\n"
        f"def h(s, f):\n    pathlib.Path({str(got)!r}).write_text(str(s)); sys.exit(5)\n"
        + (f"signal.signal({int(sig)}, h)\n" if handled else "")
        + f"pathlib.Path({str(ready)!r}).write_text('')\n"
        "time.sleep(30)\n"
    )
    w = wrapper("--", PY, "-c", code)
    try:
        wait_for(ready)
        w.send_signal(sig)
        _out, err = w.communicate(timeout=20)
    finally:
        if w.poll() is None:
            w.kill()
    run = last_run(db_path)
    if handled:
        assert w.returncode == 5 and got.read_text() == str(int(sig))
    else:
        assert w.returncode == 128 + int(sig)
        assert run["error"] == f"ended by {signal.Signals(sig).name}"
    assert run["status"] == "interrupted"
    assert "greentrack/" not in err  # a child's own KeyboardInterrupt traceback is fine; none of ours


def test_command_not_found(cli_process, db_path):
    p = cli_process("run", "--", "no-such-program-xyz")
    assert p.returncode == 127
    assert p.stderr.strip().splitlines()[-1].startswith("greentrack: error: command not found: no-such-program-xyz")
    assert last_run(db_path)["status"] == "failed"
    p = cli_process("run", "--tag", "oops", "--", "true")
    assert p.returncode == 2 and "bad tag" in p.stderr


def test_bad_configuration_stops_before_the_command(cli_process, tmp_path):
    marker = tmp_path / "ran"
    p = cli_process("run", "--region", "Atlantis", "--", PY, "-c", f"open({str(marker)!r}, 'w')")
    assert p.returncode == 2 and p.stderr.startswith("greentrack: error:") and "Atlantis" in p.stderr
    assert not marker.exists()


def test_live_display_on_a_terminal(db_path):
    """stderr is a pseudo-terminal: the wrapper redraws one line with elapsed time, power and energy."""
    master, slave = pty.openpty()
    p = subprocess.Popen([PY, "-m", "greentrack", "run", "--name", "live", "--", PY, "-c",
                          "import time; time.sleep(2.5)"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=slave, env=dict(os.environ, GREENTRACK_FLUSH_INTERVAL="0.5"))
    os.close(slave)
    buf = b""
    try:
        while True:
            r, _, _ = select.select([master], [], [], 20)
            if not r:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    finally:
        p.wait(timeout=20)
        os.close(master)
    text = buf.decode("utf-8", "replace")
    assert p.returncode == 0
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", text)  # each redraw moves the cursor and clears the line
    frames = [f.strip() for f in re.split(r"[\r\n]", plain) if f.strip().startswith("greentrack live:")]
    assert len(frames) >= 2, text
    assert " W " in frames[-1] and ("J" in frames[-1] or "Wh" in frames[-1])
    assert "[" in text and "finished" in text  # the summary line after the display is cleared
