"""Errors greentrack raises for bad input: each carries one line meant for a person."""

from __future__ import annotations

import difflib
from typing import Iterable


class GreentrackError(Exception):
    """A user-facing error. ``str(err)`` is one clear line; the CLI prints it and exits 2."""

    exit_code = 2


class ConfigError(GreentrackError):
    """Bad configuration: unknown backend, unwritable database, bad config file."""


class UnknownRegionError(GreentrackError):
    """A region that no grid-intensity plugin knows."""


class SchemaError(GreentrackError):
    """The database was written by a newer greentrack, or is not a greentrack database."""


class NotFoundError(GreentrackError):
    """A run, scenario or other named thing that does not exist."""


def suggest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean: a, b?)"`` for close matches of *word*, or ``""``."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    # substring matches help for codes such as "fr" -> "FRA"
    if len(close) < n:
        for low, _orig in lowered.items():
            if word.lower() and word.lower() in low and low not in close:
                close.append(low)
            if len(close) >= n:
                break
    if not close:
        return ""
    return " (did you mean: " + ", ".join(_printable(lowered[c]) for c in close) + "?)"


def _printable(s: str) -> str:
    """*s* with control characters written as escapes, so an error stays one printable line."""
    return s if s.isprintable() else "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)
