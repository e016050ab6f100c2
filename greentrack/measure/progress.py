"""A live status line at the bottom of the terminal, with the program's own output scrolling above it.

Used by ``session(..., progress=True)`` and by ``greentrack run`` (on a terminal). Drawn with
rich (imported only here, only when a display starts). Text written while the line is shown,
by this process (``sys.stdout``/``sys.stderr``) or by a wrapped command (through a pseudo-
terminal), is fed to :class:`LiveStatus`: a complete line is printed above the status line, and
a line still being written (a progress bar redrawn with ``\\r``, as tqdm does) is shown just above
it until it is complete. A rich progress bar started on rich's console while the line is shown
nests into the same display. The figures come from :func:`greentrack.measure.snapshot.snapshot`:
no hardware is read on the display's thread.

Limits: text written straight to the file descriptors (a C extension, a child process of the
session's program) bypasses the display and may be overdrawn by it; cursor movements other
than ``\\r`` (tqdm's stacked bars, ``position=1``) are not interpreted.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import Any, Callable, TextIO

from ..units import fmt_co2, fmt_duration, fmt_energy, plural, shorten

REFRESH_PER_SECOND = 4


class LineSplitter:
    """Turns a stream of terminal text into complete lines and the line being written.

    ``\\r\\n`` and ``\\n`` end a line; a lone ``\\r`` starts the line over (what a progress bar does),
    so only the text after the last ``\\r`` is kept, as a terminal would show it.
    """

    def __init__(self) -> None:
        self.partial = ""
        self._cr = False  # a "\r" ended the last chunk: it may be the first half of "\r\n"

    def feed(self, text: str) -> list[str]:
        """Add *text*; returns the lines it completed."""
        if self._cr:
            text = "\r" + text
            self._cr = False
        if text.endswith("\r"):
            text, self._cr = text[:-1], True
        text = text.replace("\r\n", "\n")
        parts = text.split("\n")
        done: list[str] = []
        for i, part in enumerate(parts):
            if "\r" in part:
                self.partial = part.rsplit("\r", 1)[1]
            else:
                self.partial += part
            if i < len(parts) - 1:
                done.append(self.partial)
                self.partial = ""
        return done

    def close(self) -> list[str]:
        """What is left as a last line (an unfinished line is kept on screen when the display ends)."""
        self._cr = False
        left, self.partial = self.partial, ""
        return [left] if left.strip() else []


class _StreamProxy(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr`` while a display is shown: text goes to the display."""

    def __init__(self, key: str, original: TextIO, status: "LiveStatus") -> None:
        self._key = key
        self._original = original
        self._status = status

    @property
    def rich_proxied_file(self) -> TextIO:  # rich writes to the real stream, not back into this proxy
        return self._original

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._status.feed(self._key, text)
        return len(text)

    def flush(self) -> None:
        self._status.refresh()

    def isatty(self) -> bool:
        return self._original.isatty()

    def fileno(self) -> int:
        return self._original.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._original, "errors", None)

    def __getattr__(self, name: str) -> Any:  # buffer, name, mode, line_buffering...
        return getattr(self._original, name)


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (OSError, ValueError, AttributeError):
        return False


def status_text(session: Any, now: float | None = None) -> str:
    """``greentrack llama-ft: 1m02s  412 W  7.120 Wh  3.42 gCO2e  1,200 steps  phase eval``."""
    from .snapshot import snapshot

    f = snapshot(session, now)
    parts = [fmt_duration(f.elapsed_s), "- W" if f.power_w is None else f"{f.power_w:.0f} W", fmt_energy(f.energy_j)]
    if f.co2e_kg is not None:
        parts.append(fmt_co2(f.co2e_kg))
    if f.steps:
        parts.append(plural(f.steps, "step"))
    if f.phase:
        parts.append(f"phase {shorten(f.phase, 24)}")
    return f"greentrack {shorten(session.name, 30)}: " + "  ".join(parts)


class LiveStatus:
    """The status line of *session* at the bottom of a terminal, text written meanwhile scrolling above.

    *stream*: the terminal to draw on (default ``sys.stderr``). *capture*: also take over
    ``sys.stdout``/``sys.stderr`` of this process while shown (the Python API; ``greentrack run``
    feeds its child's output with :meth:`feed` instead). :meth:`start` does nothing when *stream*
    is not a terminal (unless *force*), and a display that fails is reported once and dropped:
    it never breaks the program.
    """

    def __init__(self, session: Any, stream: TextIO | None = None, capture: bool = False,
                 text: Callable[[], str] | None = None, force: bool = False) -> None:
        self.session = session
        self.stream = stream if stream is not None else sys.stderr
        self.capture = capture
        self.force = force
        self._text = text or (lambda: status_text(session))
        self._splitters: dict[str, LineSplitter] = {}
        self._lock = threading.RLock()  # the splitters (the display's thread reads them)
        self._print_lock = threading.Lock()  # keeps lines in order; never held by the display's thread
        self._live: Any = None
        self._console: Any = None
        self._saved: dict[str, Any] = {}
        self.active = False

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "LiveStatus":
        if self.active or not (self.force or is_terminal(self.stream)):
            return self
        try:
            from rich.console import Console
            from rich.live import Live

            self._console = self._pick_console(Console)
            self._live = Live(get_renderable=self._render, console=self._console, auto_refresh=True,
                              refresh_per_second=REFRESH_PER_SECOND, transient=True, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start(refresh=True)
        except Exception as exc:  # no terminal after all, rich missing or failing: measure without a display
            from ..notify import say_once

            say_once(f"no live display: {type(exc).__name__}: {exc}")
            self._live = None
            return self
        self.active = True
        if self.capture:
            self._capture()
        return self

    def stop(self) -> None:
        """Print what is left of unfinished lines, remove the status line, give the streams back."""
        if not self.active:
            return
        with self._print_lock, self._lock:
            self.active = False
            leftovers = [ln for sp in self._splitters.values() for ln in sp.close()]
        try:
            for ln in leftovers:
                self._print_line(ln)
            self._live.stop()
        except Exception:
            pass
        finally:
            self._release()

    def _pick_console(self, Console: Any) -> Any:
        """rich's shared console when it draws on our terminal (a rich progress bar then nests into our
        display instead of fighting it); else a console of our own on *stream*."""
        if self.capture and self.stream is sys.stderr and _same_terminal(sys.stdout, sys.stderr):
            import rich

            console = rich.get_console()
            # rich >= 14.1 nests a second Live on the same console; an older rich would raise instead
            if console.is_terminal and hasattr(console, "_live_stack"):
                return console
        return Console(file=self.stream, force_terminal=True if self.force else None)

    def _capture(self) -> None:
        for key in ("stdout", "stderr"):
            stream = getattr(sys, key)
            if isinstance(stream, _StreamProxy) or not _same_terminal(stream, self.stream):
                continue
            self._saved[key] = stream
            setattr(sys, key, _StreamProxy(key, stream, self))

    def _release(self) -> None:
        for key, original in self._saved.items():
            if isinstance(getattr(sys, key), _StreamProxy) and getattr(sys, key)._status is self:
                setattr(sys, key, original)
        self._saved.clear()

    # text ----------------------------------------------------------------------------------------
    def feed(self, key: str, text: str) -> None:
        """Text written to stream *key*: complete lines are printed above the status line."""
        with self._print_lock:
            with self._lock:
                if not self.active:  # not shown (or no longer): the text goes where it would have gone
                    out = self._saved.get(key) or self.stream
                    try:
                        out.write(text)
                        out.flush()
                    except (OSError, ValueError):
                        pass
                    return
                sp = self._splitters.get(key)
                if sp is None:
                    sp = self._splitters[key] = LineSplitter()
                done = sp.feed(text)
            for ln in done:  # outside self._lock: printing takes rich's locks, which the display's thread holds
                self._print_line(ln)

    def refresh(self) -> None:
        if self.active and self._live is not None:
            try:
                self._live.refresh()
            except Exception:
                pass

    def _print_line(self, line: str) -> None:
        from rich.text import Text

        self._console.print(Text.from_ansi(line), soft_wrap=True, highlight=False)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        with self._lock:
            partials = [sp.partial for sp in self._splitters.values() if sp.partial.strip()]
        try:
            status = self._text()
        except Exception as exc:  # a figure that cannot be read must not end the display
            status = f"greentrack: {type(exc).__name__}"
        return Group(*[Text.from_ansi(p) for p in partials], Text(status, style="green"))


def _same_terminal(a: Any, b: Any) -> bool:
    """Both streams are terminals, and the same one where that can be told."""
    if not (is_terminal(a) and is_terminal(b)):
        return False
    try:
        return os.ttyname(a.fileno()) == os.ttyname(b.fileno())
    except (OSError, ValueError, AttributeError):
        return True
