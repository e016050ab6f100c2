"""The live status line: figures as of now without hardware reads, output that scrolls above the line
(checked on a real terminal: tmux), the Python API's progress=True next to tqdm and rich progress bars."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

import greentrack
from greentrack.measure.progress import LineSplitter
from greentrack.measure.snapshot import snapshot

ROOT = Path(__file__).resolve().parent.parent


# the line splitter: what a terminal would show ------------------------------------------------------
def test_splitter_lines_and_carriage_returns():
    sp = LineSplitter()
    assert sp.feed("epoch 1\r\nepoch 2\n") == ["epoch 1", "epoch 2"]
    assert sp.feed("step 1/3") == [] and sp.partial == "step 1/3"
    assert sp.feed("\rstep 2/3") == [] and sp.partial == "step 2/3"
    assert sp.feed("\r") == [] and sp.feed("\n") == ["step 2/3"]  # "\r\n" split across two writes
    assert sp.feed("\rstep 3/3\r") == [] and sp.partial == "step 3/3"  # shown until overwritten
    assert sp.feed("step 3/3\ndone") == ["step 3/3"] and sp.close() == ["done"]


# live figures -------------------------------------------------------------------------------------
def test_snapshot_energy_is_as_of_now_and_reads_no_hardware(monkeypatch):
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    s = greentrack.Session("live", backend="mock", region="FR", flush_interval_s=30).start()
    try:
        calls: list[str] = []
        for src in s.sources:
            for meth in ("poll", "energy_j"):
                orig = getattr(src, meth)

                def spy(*a, _orig=orig, **kw):
                    calls.append(threading.current_thread().name)
                    return _orig(*a, **kw)

                monkeypatch.setattr(src, meth, spy)
        time.sleep(1.6)  # the sample buffer is polled once a second: its last poll is up to 1 s old
        f = snapshot(s)
        assert "MainThread" not in calls  # nothing read on the caller's thread
        assert f.power_w == pytest.approx(100)
        # the counter started at the first refresh after start (<= 0.1 s late): 100 W since then
        assert f.energy_j == pytest.approx(100 * f.elapsed_s, abs=100 * 0.15)
        assert f.co2e_kg is not None and f.devices == 1
        again = s.snapshot()
        assert again.energy_j >= f.energy_j and again.elapsed_s >= f.elapsed_s
    finally:
        s.stop()


# terminal checks: tmux -------------------------------------------------------------------------------
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Pane:
    """A command in a detached tmux pane of its own server; :meth:`screen` is what the terminal shows."""

    def __init__(self, command: str, width: int = 100, height: int = 30) -> None:
        self.sock = f"gt-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        keep = {k: v for k, v in os.environ.items()
                if k.startswith("GREENTRACK_") or k in ("PYTHONPATH", "XDG_DATA_HOME", "HOME", "PATH", "TZ")}
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in keep.items())
        script = f"env {env} {command}; echo '[exit]' $?; sleep 60"
        subprocess.run(["tmux", "-L", self.sock, "new-session", "-d", "-x", str(width), "-y", str(height),
                        "bash", "-c", script], check=True)

    def screen(self) -> list[str]:
        out = subprocess.run(["tmux", "-L", self.sock, "capture-pane", "-p"], capture_output=True, text=True).stdout
        return [ln.rstrip() for ln in out.splitlines() if ln.strip()]

    def wait_for(self, text: str, timeout: float = 60) -> list[str]:
        end = time.time() + timeout
        while time.time() < end:
            lines = self.screen()
            if any(text in ln for ln in lines):
                return lines
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared:\n" + "\n".join(self.screen()))

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


CHATTY = """
import os, sys, time
go = sys.argv[1]
for i in range(3):
    print(f"epoch {i} loss {1 / (i + 1):.3f}", flush=True)
    time.sleep(0.1)
print("warning: from stderr", file=sys.stderr, flush=True)
for k in (1, 2):
    sys.stdout.write(f"\\rstep {k}/3")
    sys.stdout.flush()
while not os.path.exists(go):
    time.sleep(0.05)
sys.stdout.write("\\rstep 3/3\\n")
print("\\x1b[32mdone\\x1b[0m", flush=True)
"""


@needs_tmux
def test_greentrack_run_keeps_its_line_at_the_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:250")
    script, go = tmp_path / "chatty.py", tmp_path / "go"
    script.write_text(CHATTY)
    pane = Pane(f"{shlex.quote(sys.executable)} -m greentrack run --name chatty -- "
                f"{shlex.quote(sys.executable)} {script} {go}")
    try:
        pane.wait_for("step 2/3")
        time.sleep(0.6)  # a few redraws of the status line
        lines = pane.screen()
        assert lines[-1].startswith("greentrack chatty: ") and " 250 W " in lines[-1] + " ", lines
        assert lines[-2] == "step 2/3", lines  # the command's unfinished line, just above the status
        assert lines[:4] == ["epoch 0 loss 1.000", "epoch 1 loss 0.500", "epoch 2 loss 0.333",
                             "warning: from stderr"], lines
        go.write_text("")
        lines = pane.wait_for("[exit]")
        assert lines[:7] == ["epoch 0 loss 1.000", "epoch 1 loss 0.500", "epoch 2 loss 0.333",
                             "warning: from stderr", "step 3/3", "done", lines[6]], lines
        assert lines[6].startswith("greentrack: chatty [") and " finished: " in lines[6]
        assert not any(ln.startswith("greentrack chatty:") for ln in lines)  # the status line is gone
        assert lines[-1] == "[exit] 0"
    finally:
        pane.close()


@needs_tmux
def test_greentrack_run_leaves_a_redirected_stdout_alone(tmp_path):
    script, go, out = tmp_path / "chatty.py", tmp_path / "go", tmp_path / "out.txt"
    script.write_text(CHATTY)
    go.write_text("")
    pane = Pane(f"{shlex.quote(sys.executable)} -m greentrack run --name chatty -- "
                f"{shlex.quote(sys.executable)} {script} {go} > {out}")
    try:
        lines = pane.wait_for("[exit]")
        assert "warning: from stderr" in lines and not any("epoch" in ln for ln in lines)
        assert out.read_bytes() == (b"epoch 0 loss 1.000\nepoch 1 loss 0.500\nepoch 2 loss 0.333\n"
                                    b"\rstep 1/3\rstep 2/3\rstep 3/3\n\x1b[32mdone\x1b[0m\n")
    finally:
        pane.close()


PROGRESS = """
import os, sys, time
import greentrack
from rich.progress import Progress
from tqdm import tqdm

go = sys.argv[1]
with greentrack.session("prog", region="FR", progress=True) as s:
    print("starting", flush=True)
    for i in tqdm(range(4), desc="train", ncols=50, mininterval=0):
        time.sleep(0.05)
        s.step()
        if i == 1:
            print("a line in the middle", flush=True)
    with Progress() as p:
        task = p.add_task("eval", total=4)
        for _ in range(3):
            p.advance(task)
        print("waiting", flush=True)
        while not os.path.exists(go):
            time.sleep(0.05)
        p.advance(task)
    print("finished work", flush=True)
print("after", s.result.status)
"""


@needs_tmux
def test_session_progress_coexists_with_tqdm_and_rich(tmp_path):
    pytest.importorskip("tqdm")
    script, go = tmp_path / "prog.py", tmp_path / "go"
    script.write_text(PROGRESS)
    pane = Pane(f"{shlex.quote(sys.executable)} {script} {go}")
    try:
        pane.wait_for("waiting")
        time.sleep(0.6)
        lines = pane.screen()
        status = [i for i, ln in enumerate(lines) if ln.startswith("greentrack prog: ")]
        assert len(status) == 1, lines
        assert "4 steps" in lines[status[0]] and " W " in lines[status[0]]
        assert lines[:2] == ["starting", "a line in the middle"], lines
        assert any(ln.startswith("train: 100%") for ln in lines[:status[0]]), lines
        assert any(ln.startswith("eval") and "75%" in ln for ln in lines[status[0] + 1:]), lines  # rich nests below
        go.write_text("")
        lines = pane.wait_for("[exit]")
        assert lines[0:2] == ["starting", "a line in the middle"], lines
        assert sum(ln.startswith("train: 100%") for ln in lines) == 1, lines
        assert any(ln.startswith("eval") and "100%" in ln for ln in lines), lines
        assert lines[-3:] == ["finished work", "after finished", "[exit] 0"], lines
        assert not any(ln.startswith("greentrack prog: ") for ln in lines)
    finally:
        pane.close()


def test_progress_is_off_when_stderr_is_not_a_terminal(tmp_path):
    script = tmp_path / "p.py"
    script.write_text(textwrap.dedent("""
        import time, greentrack
        with greentrack.session("quiet", region="FR", progress=True) as s:
            print("one")
            time.sleep(0.5)
            s.step()
            print("two")
    """))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "one\ntwo\n" and "greentrack quiet" not in p.stderr and "\x1b" not in p.stderr + p.stdout
