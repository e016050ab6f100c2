"""``greentrack run -- <command...>``: measure any command as a run, without changing its code.

The wrapper starts a session, runs the command as a child process and waits for it:

- the child's exit code is the wrapper's exit code (``128 + N`` when signal N ended it);
- SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 and SIGINT sent to the wrapper are forwarded to the child
  (Ctrl-C in a terminal already reaches the child through its process group, so SIGINT is not
  sent twice then);
- the run is ``finished`` (exit 0), ``failed`` (non-zero) or ``interrupted`` (ended by a signal);
- the child gets ``GREENTRACK_JOB_ID`` (the job the run belongs to) and ``GREENTRACK_PARENT_RUN_ID``
  (the wrapper's run id), so runs the child records itself share the wrapper's job id.
"""

from __future__ import annotations

import codecs
import os
import shlex
import signal
import subprocess
import sys
import threading
from typing import Any, Sequence, TextIO

from ..errors import GreentrackError

FORWARDED = ("SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT")


class ChildOutput:
    """The wrapped command's terminal output, read through a pseudo-terminal and fed to a live display.

    The command still sees a terminal (line-buffered output, colours, its own progress bars), but
    its text reaches the screen through :class:`~greentrack.measure.progress.LiveStatus`, so the
    status line stays at the bottom and the command's lines scroll above it, never glued to it.
    Only the streams that are the display's terminal are routed; a file or pipe is left alone.
    """

    def __init__(self, display: Any) -> None:
        import pty

        self.display = display
        self.master, self.slave = pty.openpty()
        _copy_window_size(display.stream, self.slave)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._thread = threading.Thread(target=self._read, name="greentrack-child-output", daemon=True)
        self._child_done = threading.Event()

    def popen_streams(self) -> dict[str, Any]:
        """``stdout``/``stderr`` arguments for Popen: the pseudo-terminal where ours is the display's terminal."""
        from .progress import _same_terminal

        out: dict[str, Any] = {}
        for name, ours in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            if _same_terminal(ours, self.display.stream):
                out[name] = self.slave
        return out

    def start(self) -> "ChildOutput":
        self._thread.start()
        return self

    def _read(self) -> None:
        import select

        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
            except (OSError, ValueError):
                break
            if not ready:
                if self._child_done.is_set():  # the command is gone and nothing more came: done
                    break
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            self.display.feed("child", self._decoder.decode(data))
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self.display.feed("child", tail)

    def child_started(self) -> None:
        os.close(self.slave)  # the child holds its copy; the read ends when every writer has closed it
        self.slave = -1

    def finish(self, timeout_s: float = 2.0) -> None:
        """After the command ended: read what it left, then close the terminal."""
        self._child_done.set()
        if self.slave >= 0:  # the command never started: close our end so the read sees EOF
            os.close(self.slave)
            self.slave = -1
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self.master >= 0:
            try:
                os.close(self.master)
            except OSError:
                pass
            self.master = -1


def _copy_window_size(stream: Any, fd: int) -> None:
    """Give the pseudo-terminal the size of the real one, so the command formats for it."""
    try:
        import fcntl
        import termios

        size = fcntl.ioctl(stream.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
    except (OSError, ValueError, AttributeError, ImportError):
        pass


def _terminal_sends_sigint() -> bool:
    """True when we run in the foreground of a terminal, whose Ctrl-C reaches our child directly."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


def exit_code(returncode: int) -> int:
    """A child's ``Popen.returncode`` as a shell would report it (``-N`` -> ``128 + N``)."""
    return 128 - returncode if returncode < 0 else returncode


def run_command(cmd: Sequence[str], name: str | None = None, region: str | None = None,
                tags: dict[str, str] | None = None, backend: str | None = None, db: str | None = None,
                live: bool | None = None, live_stream: TextIO | None = None,
                pue: float | None = None) -> tuple[int, Any]:
    """Run *cmd* as a measured run; returns ``(exit_code, RunResult)``.

    *live* None means: on when *live_stream* (default stderr) is a terminal. The live display is
    a status line at the bottom (elapsed time, power and energy as of now, CO2e so far); the
    command's output on that terminal scrolls above it (see :class:`ChildOutput`).
    """
    from .tracker import Session

    if not cmd:
        raise GreentrackError("no command given: greentrack run [OPTIONS] -- COMMAND [ARGS...]")
    cmd = list(cmd)
    command = shlex.join(cmd)
    run_name = name or os.path.basename(cmd[0]) or "run"
    session = Session(run_name, command=command, strict=True, region=region, tags=tags, backend=backend, db=db,
                      pue=pue)
    if not session.job_id:
        session.job_id = session.id
    env = dict(os.environ, GREENTRACK_JOB_ID=session.job_id, GREENTRACK_PARENT_RUN_ID=session.id)
    session.start()
    stream = live_stream if live_stream is not None else sys.stderr
    display = None
    output: ChildOutput | None = None
    if live is None or live:
        from .progress import LiveStatus, is_terminal

        if live is None:
            live = is_terminal(stream)
        if live:
            display = LiveStatus(session, stream, force=not is_terminal(stream)).start()
            if display.active and is_terminal(stream):
                try:
                    output = ChildOutput(display)
                except OSError:  # no pseudo-terminals here: the command writes to the terminal itself
                    output = None

    state: dict[str, Any] = {"child": None, "signal": None}
    terminal_sigint = _terminal_sends_sigint()

    def forward(signum: int, _frame: Any) -> None:
        state["signal"] = signum
        child = state["child"]
        if child is None or child.poll() is not None:
            return
        if signum == signal.SIGINT and terminal_sigint:
            return  # the terminal sent it to the whole foreground group, the child included
        try:
            child.send_signal(signum)
        except OSError:
            pass

    previous: dict[int, Any] = {}
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        for sname in FORWARDED:
            sig = getattr(signal, sname, None)
            if sig is None:
                continue
            try:
                previous[sig] = signal.signal(sig, forward)
            except (ValueError, OSError):  # pragma: no cover
                pass
    code: int
    error: str | None = None
    try:
        try:
            streams = output.popen_streams() if output is not None else {}
            if output is not None and not streams:
                output.finish()
                output = None
            if output is not None:
                output.start()
            state["child"] = subprocess.Popen(cmd, env=env, **streams)
            if output is not None:
                output.child_started()
        except FileNotFoundError:
            code, error = 127, f"command not found: {cmd[0]}"
        except PermissionError:
            code, error = 126, f"permission denied: {cmd[0]}"
        except OSError as exc:
            code, error = 126, f"cannot run {cmd[0]}: {exc.strerror or exc}"
        else:
            rc = state["child"].wait()
            code = exit_code(rc)
            if rc < 0:
                error = f"ended by {signal.Signals(-rc).name}"
            elif rc != 0:
                error = f"exit code {rc}"
    finally:
        if output is not None:
            output.finish()
        if display is not None:
            display.stop()
        for sig, handler in previous.items():
            try:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, OSError):  # pragma: no cover
                pass
    child = state["child"]
    if child is not None and (child.returncode < 0 or (state["signal"] is not None and code != 0)):
        status = "interrupted"
    else:
        status = "finished" if code == 0 else "failed"
    result = session.stop(status, error)
    if error and child is None:
        raise _NotRun(f"{error} (run {session.id} stored as failed)", code)
    return code, result


class _NotRun(GreentrackError):
    """The command could not be started (not found, not executable): exit 127 or 126 like a shell."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code
