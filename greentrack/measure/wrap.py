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

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Sequence, TextIO

from ..errors import GreentrackError
from ..units import fmt_duration, fmt_energy, mark

FORWARDED = ("SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT")


class LiveLine:
    """A one-line display on a terminal: elapsed time, power, energy; redrawn every *interval_s*."""

    def __init__(self, session: Any, stream: TextIO, interval_s: float = 1.0) -> None:
        self.session = session
        self.stream = stream
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def text(self) -> str:
        s = self.session
        elapsed = time.time() - (s.started_at or time.time())
        power = None
        states = s.sampler.states if s.sampler is not None else []
        vals = [st.acc.last_p for st in states if st.acc.n_raw]
        if vals:
            power = sum(vals)
        # the counter is read at each flush, the series at each poll: show whichever is further along
        per_dev = [max(st.counter_energy_j() or 0.0, st.acc.cum_j) for st in states if st.acc.n_raw]
        energy = sum(per_dev) if per_dev else s.live_energy_j()
        pw = "-" if power is None else f"{power:.0f} W"
        how = "model" if getattr(s, "modelled", False) else None  # the CPU model: estimated, marked ~
        return f"greentrack {s.name}: {fmt_duration(elapsed)}  {mark(pw, how)}  {mark(fmt_energy(energy), how)}"

    def _draw(self, final: bool = False) -> None:
        try:
            self.stream.write("\r\x1b[2K" + ("" if final else self.text()))
            self.stream.flush()
        except (OSError, ValueError):
            self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._draw()

    def start(self) -> "LiveLine":
        self._thread = threading.Thread(target=self._run, name="greentrack-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._draw(final=True)


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
                live: bool | None = None, live_stream: TextIO | None = None, pue: float = 1.0) -> tuple[int, Any]:
    """Run *cmd* as a measured run; returns ``(exit_code, RunResult)``.

    *live* None means: on when *live_stream* (default stderr) is a terminal.
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
    if live is None:
        live = bool(getattr(stream, "isatty", lambda: False)())
    display = LiveLine(session, stream).start() if live else None

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
            state["child"] = subprocess.Popen(cmd, env=env)
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
