"""The process around the sessions: SIGTERM, fork, interpreter exit and uncaught exceptions.

- SIGTERM: a session started on the main thread installs a handler that ends its run as
  ``interrupted`` and then lets the signal do what it would have done (the program's own
  handler runs instead when it has one);
- fork: a forked child (a DataLoader worker) forgets its parent's sessions, so its exit never
  finishes the parent's runs;
- exit: sessions started with ``start()`` and never stopped end with the interpreter, as
  ``failed`` when an uncaught exception is what ended it.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import weakref
from typing import Any, Callable

_active: "weakref.WeakSet[Any]" = weakref.WeakSet()
_uncaught: list[BaseException] = []


def track(session: Any) -> None:
    """Count *session* among this process's open sessions."""
    _active.add(session)


def forget(session: Any) -> None:
    _active.discard(session)


def install_sigterm(session: Any) -> None:
    """End *session* as ``interrupted`` on SIGTERM (main thread only: Python's rule for handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        prev = signal.getsignal(signal.SIGTERM)
    except (ValueError, AttributeError):  # pragma: no cover
        return
    session._prev_sigterm = prev

    def on_sigterm(signum: int, frame: Any) -> None:
        if getattr(session, "_forked", False):  # inherited by a forked child: not our run
            signal.signal(signal.SIGTERM, prev if prev is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        session._sigterm = True
        if callable(prev) and prev not in (signal.SIG_DFL, signal.SIG_IGN):
            prev(signum, frame)  # the program's own handler decides; the run ends as interrupted
            return
        session.stop("interrupted", "terminated by SIGTERM")
        if prev == signal.SIG_IGN:
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
        session._sigterm_handler = on_sigterm
    except ValueError:  # pragma: no cover
        pass


def restore_sigterm(session: Any) -> None:
    """Put back the SIGTERM handler that was there before *session* started."""
    h = getattr(session, "_sigterm_handler", None)
    if h is None or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is h:
            prev = session._prev_sigterm
            signal.signal(signal.SIGTERM, prev if prev is not None else signal.SIG_DFL)
    except (ValueError, TypeError):  # pragma: no cover
        pass


def _excepthook_chain(prev: Callable[..., Any]) -> Callable[..., Any]:
    def hook(et: Any, ev: Any, tb: Any) -> None:
        _uncaught.append(ev)
        prev(et, ev, tb)

    return hook


def _forget_in_child() -> None:
    """A forked child (DataLoader worker) must never finish its parent's runs."""
    for s in list(_active):
        _active.discard(s)
        s._forked = True


@atexit.register
def _stop_at_exit() -> None:
    """Sessions started with start() and never stopped end with the interpreter."""
    for s in list(_active):
        try:
            if _uncaught:
                ev = _uncaught[-1]
                s.stop("failed", f"{type(ev).__name__}: {ev}")
            else:
                s.stop()
        except Exception:
            pass


sys.excepthook = _excepthook_chain(sys.excepthook)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
