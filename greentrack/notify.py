"""How greentrack reports without breaking anything: one line on stderr, once per process."""

from __future__ import annotations

import sys
import threading

from .units import one_line

_said: set[str] = set()
_reported: set[tuple[str, str]] = set()
_lock = threading.Lock()


def say_once(msg: str, key: str | None = None) -> None:
    """``greentrack: <msg>`` on stderr, the first time this message (or this *key*) is said in this process."""
    k = msg if key is None else "\0" + key
    with _lock:
        if k in _said:
            return
        _said.add(k)
    print(f"greentrack: {one_line(msg)}", file=sys.stderr)


def warn_once(plugin: str, hook: str, exc: BaseException) -> None:
    """Report a failing plugin or sensor once per (plugin, hook)."""
    with _lock:
        if (plugin, hook) in _reported:
            return
        _reported.add((plugin, hook))
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"greentrack: {one_line(plugin)} failed in {one_line(hook)}: {type(exc).__name__}: {one_line(msg)} "
          "(ignored; the run goes on)", file=sys.stderr)


def forget() -> None:
    """Forget what was said (tests)."""
    with _lock:
        _said.clear()
        _reported.clear()
