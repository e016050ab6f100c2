"""Guarantee: a signal that ends the process ends every open run as ``interrupted``, never ``lost``.

Real processes receive real signals: nested sessions, sessions of other threads, SIGHUP, a
program with its own handler, a program that ignores the signal.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import greentrack
from greentrack.store.sqlite import Store

PRELUDE = textwrap.dedent("""
    import os, signal, sys, threading, time
    import greentrack

    signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as a program has it, even if pytest runs under nohup

    def ready():
        print("ready", flush=True)

    def busy(s, seconds=30.0):
        t = time.time()
        while time.time() - t < seconds:
            s.step()
            time.sleep(0.01)
""")


def start(tmp_path: Path, body: str) -> subprocess.Popen[str]:
    script = tmp_path / "victim.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()  # type: ignore[union-attr]
    assert line.strip() == "ready", line + p.stderr.read()  # type: ignore[union-attr]
    return p


def statuses(db: Path) -> dict[str, tuple[str, str | None]]:
    return {r["name"]: (r["status"], r.get("error")) for r in Store(db).list_runs(last=None)}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_nested_sessions_all_end_interrupted_and_the_signal_still_ends_the_process(sig, tmp_path, db_path):
    p = start(tmp_path, """
        with greentrack.session("outer", flush_interval_s=0.1) as outer:
            with greentrack.session("inner", flush_interval_s=0.1) as inner:
                ready()
                busy(inner)
    """)
    p.send_signal(sig)
    assert p.wait(timeout=30) == -sig  # the default action still happens (exit status 128 + N)
    name = signal.Signals(sig).name
    assert statuses(db_path) == {"outer": ("interrupted", f"terminated by {name}"),
                                 "inner": ("interrupted", f"terminated by {name}")}


def test_sessions_of_other_threads_end_interrupted(tmp_path, db_path):
    p = start(tmp_path, """
        def worker(i, started):
            with greentrack.session(f"thread-{i}", flush_interval_s=0.1) as s:
                started.release()
                busy(s)

        with greentrack.session("main", flush_interval_s=0.1) as s:
            started = threading.Semaphore(0)
            for i in range(2):
                threading.Thread(target=worker, args=(i, started), daemon=True).start()
            for i in range(2):
                started.acquire()
            ready()
            busy(s)
    """)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM
    assert {k: v[0] for k, v in statuses(db_path).items()} == {"main": "interrupted", "thread-0": "interrupted",
                                                               "thread-1": "interrupted"}


def test_sessions_only_in_worker_threads_after_ensure_handlers(tmp_path, db_path):
    p = start(tmp_path, """
        from greentrack.measure import lifecycle

        lifecycle.ensure_handlers()  # on the main thread: Python lets only it install handlers
        started = threading.Semaphore(0)

        def worker():
            with greentrack.session("worker", flush_interval_s=0.1) as s:
                started.release()
                busy(s)

        threading.Thread(target=worker).start()
        started.acquire()
        ready()
        while True:
            time.sleep(0.05)
    """)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM
    assert statuses(db_path) == {"worker": ("interrupted", "terminated by SIGTERM")}


def test_the_programs_own_handler_runs_and_decides(tmp_path, db_path):
    p = start(tmp_path, """
        stop = []
        signal.signal(signal.SIGTERM, lambda n, f: stop.append(n))  # graceful shutdown, before greentrack
        with greentrack.session("graceful", flush_interval_s=0.1) as s:
            with greentrack.session("graceful-inner", flush_interval_s=0.1) as inner:
                ready()
                while not stop:
                    inner.step()
                    time.sleep(0.01)
        print("saved checkpoint", flush=True)
        assert signal.getsignal(signal.SIGTERM) is not None and signal.getsignal(signal.SIGTERM).__name__ == "<lambda>"
        print("handler restored", flush=True)
    """)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "saved checkpoint" in out and "handler restored" in out
    assert {k: v[0] for k, v in statuses(db_path).items()} == {"graceful": "interrupted",
                                                               "graceful-inner": "interrupted"}


def test_a_program_that_handles_the_signal_is_measured_until_its_runs_end(tmp_path, db_path, monkeypatch):
    """The program's own handler decides: one that saves a checkpoint first (0.6 s more at 400 W) has its runs
    measured until they end, then ``interrupted``; greentrack does not stop them at the signal (kills the
    program's handler called only after the runs were stopped)."""
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:400")
    p = start(tmp_path, """
        import json

        stop = []
        signal.signal(signal.SIGTERM, lambda n, f: stop.append(time.time()))
        with greentrack.session("checkpointing", flush_interval_s=0.1) as s:
            ready()
            while not stop:
                s.step()
                time.sleep(0.01)
            time.sleep(0.6)  # the checkpoint
        print(json.dumps({"signal_at": stop[0]}), flush=True)
    """)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    signal_at = json.loads(out.strip().splitlines()[-1])["signal_at"]
    (run,) = Store(db_path).list_runs(last=None)
    assert (run["status"], run["error"]) == ("interrupted", "terminated by SIGTERM")
    assert run["ended_at"] - signal_at >= 0.6
    assert run["energy_j"] == pytest.approx(400 * (run["ended_at"] - run["started_at"]), rel=0.05)


def _locked(db: Path) -> sqlite3.Connection:
    """Another process's write transaction on the database: greentrack's writes wait for it."""
    con = sqlite3.connect(db, isolation_level=None, timeout=10)
    con.execute("BEGIN EXCLUSIVE")
    return con


STOP_IN_A_THREAD = """
    s = greentrack.Session("stopped-by-a-thread", flush_interval_s=0.1).start()  # handlers: on the main thread
    time.sleep(0.3)
    ready()
    sys.stdin.readline()  # the test holds the database's write lock now
    t = threading.Thread(target=s.stop)
    t.start()
    time.sleep(0.3)
    print("stopping", flush=True)
    t.join()
"""


def _stopping_while_locked(p: subprocess.Popen[str], db: Path) -> sqlite3.Connection:
    """Once *p*'s session is ready, lock the database and let it stop: returns when it says "stopping"."""
    assert p.stdout is not None and p.stdin is not None and p.stderr is not None
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    con = _locked(db)
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "stopping"
    return con


def test_a_signal_while_another_thread_stops_the_run_waits_for_it_to_be_written(tmp_path, db_path, monkeypatch):
    """SIGTERM while a worker thread is writing the end of the run (the database busy for a moment): the
    handler waits for that stop (up to 5 s), then the signal ends the process. The run is complete, not lost.
    Kills the wait skipped (deadline in the past, loop never run, result test inverted), the wait that lasts
    its full 5 s, and the handler left installed before the signal is sent again (it would recurse)."""
    monkeypatch.setenv("GREENTRACK_LOCK_TIMEOUT", "30")
    p = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(STOP_IN_A_THREAD)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        con = _stopping_while_locked(p, db_path)
        p.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert p.poll() is None  # waiting for the stop, which waits for the database
        con.execute("ROLLBACK")
        released = time.monotonic()
        assert p.wait(timeout=30) == -signal.SIGTERM
        assert time.monotonic() - released < 3.0  # at once once the run is written, not after 5 s
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    (run,) = Store(db_path).list_runs(last=None)
    assert run["status"] in ("finished", "interrupted") and run["ended_at"] is not None and run["energy_j"] > 0


STOP_ON_THE_MAIN_THREAD = """
    s = greentrack.Session("stopping-itself", flush_interval_s=0.1).start()
    time.sleep(0.3)
    ready()
    sys.stdin.readline()
    print("stopping", flush=True)
    s.stop()
    print("stopped", flush=True)
"""


def test_a_signal_during_the_runs_own_stop_ends_the_process_at_once(tmp_path, db_path, monkeypatch):
    """SIGTERM while the main thread itself is in stop() (waiting for the database): the handler cannot wait
    for that stop (it runs on the same thread), so the signal ends the process at once; the run, never
    finished, reads as lost. Kills the handler waiting its 5 s for itself."""
    monkeypatch.setenv("GREENTRACK_LOCK_TIMEOUT", "30")
    p = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(STOP_ON_THE_MAIN_THREAD)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    con = None
    try:
        con = _stopping_while_locked(p, db_path)
        time.sleep(0.3)  # in stop(), waiting for the lock
        sent = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == -signal.SIGTERM
        assert time.monotonic() - sent < 3.0
    finally:
        if con is not None:
            con.execute("ROLLBACK")
        if p.poll() is None:
            p.kill()
            p.wait()
    (run,) = Store(db_path).list_runs(last=None)
    assert run["status"] == "lost"


def test_an_ignored_signal_stays_ignored(tmp_path, db_path):
    p = start(tmp_path, """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with greentrack.session("stubborn", flush_interval_s=0.1) as s:
            ready()
            time.sleep(0.5)
            s.step()
        print("done", flush=True)
    """)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "done" in out, err
    assert statuses(db_path) == {"stubborn": ("finished", None)}


def test_start_stop_sessions_left_open_end_with_the_signal(tmp_path, db_path):
    p = start(tmp_path, """
        a = greentrack.Session("started-a", flush_interval_s=0.1).start()
        b = greentrack.Session("started-b", flush_interval_s=0.1).start()
        ready()
        busy(b)
    """)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM
    assert {k: v[0] for k, v in statuses(db_path).items()} == {"started-a": "interrupted", "started-b": "interrupted"}


def test_the_previous_handlers_are_back_once_the_last_session_ends():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    with greentrack.session("a", backend="none"):
        with greentrack.session("b", backend="none"):
            installed = signal.getsignal(signal.SIGTERM)
            assert installed is not before[signal.SIGTERM]
            assert signal.getsignal(signal.SIGHUP) is installed
        assert signal.getsignal(signal.SIGTERM) is installed  # "a" is still open
    assert {s: signal.getsignal(s) for s in before} == before
