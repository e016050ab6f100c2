"""The one retry loop of the store: try again while another writer holds the lock, until a deadline."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def retry(fn: Callable[[], T], *, timeout_s: float, transient: Callable[[BaseException], bool],
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call *fn* until it returns, retrying errors that *transient* accepts until *timeout_s* has passed.

    The waits grow from 5 ms to 100 ms and never overshoot the deadline; the last error is
    re-raised when time is up (a *timeout_s* of 0 means: one try). Other errors pass at once.
    """
    deadline = clock() + max(0.0, timeout_s)
    delay = 0.005
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            left = deadline - clock()
            if left <= 0:
                raise
            sleep(min(delay, left))
            delay = min(delay * 2, 0.1)
