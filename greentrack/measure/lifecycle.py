"""The process around the sessions: signals, fork, interpreter exit and uncaught exceptions.

- Signals: SIGTERM and SIGHUP (:data:`HANDLED`) get one process-wide handler while any session
  of the process is open, whichever thread started it. Python lets only the main thread install
  a handler: it is installed when a session starts there, or by :func:`ensure_handlers` called
  on the main thread by a program whose sessions all run in other threads. On the
  signal every open session, nested ones and those of other threads included, ends as
  ``interrupted``; then the signal does what it would have done without greentrack: the
  program's own handler runs (and decides), an ignored signal stays ignored, or the default
  action ends the process (exit status 128 + N). SIGINT needs no handler: it raises
  KeyboardInterrupt, and a session left through it ends ``interrupted``. SIGKILL cannot be
  handled: the run stays ``running`` in the database and reads as ``lost``.
- Fork: a forked child (a DataLoader worker) forgets its parent's sessions, so leaving the
  inherited ``with`` block, ``sys.exit(0)`` included, or its exit never finishes the parent's
  runs and says nothing: the child exits with its own exit code.
- Exit: sessions started with ``start()`` and never stopped end with the interpreter, as
  ``failed`` when an uncaught exception is what ended it (``interrupted`` for Ctrl-C).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
import weakref
from typing import Any, Callable

from . import atfork

HANDLED = ("SIGTERM", "SIGHUP")  #: the signals whose arrival ends every open session as interrupted
STOP_WAIT_S = 5.0  # how long the handler waits for a session another thread is already stopping

_active: "weakref.WeakSet[Any]" = weakref.WeakSet()
_order: list[Any] = []  # weak references in start order (stopped newest first)
_uncaught: list[BaseException] = []
_installed: dict[int, Any] = {}  # signum -> the disposition greentrack's handler replaced
_lock = threading.RLock()
_hook: Any = None  # greentrack's sys.excepthook, while it is installed


def _signals() -> list[int]:
    return [getattr(signal, n) for n in HANDLED if hasattr(signal, n)]


def track(session: Any) -> None:
    """Count *session* among this process's open sessions (its signals, its fork, its exit)."""
    with _lock:
        _active.add(session)
        _order.append(weakref.ref(session))
        _hook_process()
    ensure_handlers()


def forget(session: Any) -> None:
    """*session* has ended; the last one to end puts the program's own handlers back."""
    with _lock:
        _active.discard(session)
        _order[:] = [r for r in _order if r() is not None and r() is not session]
        if not _active:
            _unhook_process()
            restore_handlers()


def open_sessions() -> list[Any]:
    """The open sessions of this process, newest first."""
    with _lock:
        out = [r() for r in reversed(_order)]
    return [s for s in out if s is not None and s in _active]


def ensure_handlers() -> None:
    """Install the process-wide handler for :data:`HANDLED` (main thread only; no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        for sig in _signals():
            try:
                current = signal.getsignal(sig)
                if current is _on_signal:
                    continue
                signal.signal(sig, _on_signal)
                _installed[sig] = current
            except (ValueError, OSError, TypeError):  # pragma: no cover - embedded interpreters
                continue


def restore_handlers() -> None:
    """Put back what greentrack's handler replaced, where it is still installed (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return  # the handler stays, transparent while no session is open
    with _lock:
        for sig, prev in list(_installed.items()):
            try:
                if signal.getsignal(sig) is _on_signal:
                    signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
                del _installed[sig]
            except (ValueError, OSError, TypeError):  # pragma: no cover
                pass


def _on_signal(signum: int, frame: Any) -> None:
    """End every open session as interrupted, then let the signal do what it would have done."""
    prev = _installed.get(signum, signal.SIG_DFL)
    if prev == signal.SIG_IGN:  # the program ignores this signal: so does every run
        return
    name = signal.Signals(signum).name
    sessions = open_sessions()
    for s in sessions:
        s._signal = signum
    if callable(prev) and prev not in (signal.SIG_DFL, signal.SIG_IGN):
        prev(signum, frame)  # the program's own handler decides; its runs end as interrupted
        return
    for s in sessions:
        _stop_interrupted(s, f"terminated by {name}")
    _redeliver(signum, frame, prev)


def _stop_interrupted(session: Any, error: str) -> None:
    """Stop one session as interrupted from the signal handler (never raises)."""
    try:
        holder = getattr(session, "_stopping_thread", None)
        if holder is not None:
            if holder == threading.get_ident():
                return  # the signal interrupted this very session's stop(): it will not finish now
            deadline = time.monotonic() + STOP_WAIT_S  # another thread is stopping it: let it finish
            while session in _active and time.monotonic() < deadline:  # (until its run is written)
                time.sleep(0.01)
            return
        session.stop("interrupted", error)
    except Exception:
        pass


def _redeliver(signum: int, frame: Any, prev: Any) -> None:
    """Do what *signum* would have done had greentrack never handled it."""
    if callable(prev) and prev not in (signal.SIG_DFL, signal.SIG_IGN):
        prev(signum, frame)
        return
    if prev == signal.SIG_IGN:
        return
    try:
        signal.signal(signum, signal.SIG_DFL)
    except (ValueError, OSError):  # pragma: no cover
        return
    _installed.pop(signum, None)
    os.kill(os.getpid(), signum)


def _hook_process() -> None:
    """While a session is open: note uncaught exceptions (for the exit) and forks (for the child).

    Like the signal handler, both hooks are in place only while a session is open: whatever the
    interpreter still holds at its end keeps this module, and all it reaches, alive through
    shutdown, which costs milliseconds on every exit (see :mod:`greentrack.measure.atfork`).
    """
    global _hook
    if _hook is None:
        _hook = _excepthook_chain(sys.excepthook)
        sys.excepthook = _hook
    if hasattr(os, "register_at_fork"):
        if not atfork.registered:
            os.register_at_fork(after_in_child=atfork.after_in_child)
            atfork.registered = True
        if _forget_in_child not in atfork.callbacks:
            atfork.callbacks.append(_forget_in_child)


def _unhook_process() -> None:
    """No session is open: put the program's excepthook back, unless another hook was chained on
    top of greentrack's since (greentrack's then stays in the chain, transparent), and forget the
    exceptions noted (one an interactive session survived must not fail a later run at exit)."""
    global _hook
    _uncaught.clear()
    if _hook is not None and sys.excepthook is _hook:
        sys.excepthook = _hook.prev  # type: ignore[attr-defined]
        _hook = None
    if _forget_in_child in atfork.callbacks:
        atfork.callbacks.remove(_forget_in_child)


def _excepthook_chain(prev: Callable[..., Any]) -> Callable[..., Any]:
    def hook(et: Any, ev: Any, tb: Any) -> None:
        _uncaught.append(ev)
        prev(et, ev, tb)

    hook.prev = prev  # type: ignore[attr-defined]
    return hook


def _forget_in_child() -> None:
    """A forked child (DataLoader worker) must never finish its parent's runs.

    The child keeps the inherited handler: with no session of its own open, it does what the
    signal would have done (the program's handler, or the default action); sessions the child
    starts itself are handled like any.
    """
    for s in list(_active):
        s._forked = True
    _active.clear()
    _order.clear()
    _unhook_process()


@atexit.register
def _stop_at_exit() -> None:
    """Sessions started with start() and never stopped end with the interpreter."""
    for s in open_sessions():
        try:
            if _uncaught:
                ev = _uncaught[-1]
                if isinstance(ev, KeyboardInterrupt):
                    s.stop("interrupted", "KeyboardInterrupt")
                else:
                    s.stop("failed", f"{type(ev).__name__}: {ev}")
            else:
                s.stop()
        except Exception:
            pass

