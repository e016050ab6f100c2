"""Guarantee: a signal that ends the process ends every open run as ``interrupted``, never ``lost``.

Real processes receive real signals: nested sessions, sessions of other threads, SIGHUP, a
program with its own handler, a program that ignores the signal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
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
