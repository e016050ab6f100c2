"""Secrets never reach the database: values of secret-looking options are redacted from stored command lines.

A command line is stored with each run (``greentrack run``, the pytest plugin, ``Session(command=...)``).
Before it is written, and again whenever one is read back, these are replaced by ``***``:

- the value of an option whose name matches a pattern: ``--api-key=abc``, ``--api-key abc``,
  ``-token abc`` (the next word, unless it is itself an option);
- the value of an environment assignment whose name matches: ``HF_TOKEN=abc python train.py``;
- the password of a URL: ``https://user:pw@host`` becomes ``https://user:***@host``.

Patterns are shell-style globs matched, case-insensitively, against the option or variable
name without its leading dashes. The default list is :data:`DEFAULT_PATTERNS`; the setting
``GREENTRACK_REDACT`` (or ``[tool.greentrack] redact``, a list or a comma-separated string)
replaces it, and ``none`` turns redaction off. The program itself still gets its real
arguments: only the stored copy is redacted.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from typing import Iterable, Sequence

DEFAULT_PATTERNS: tuple[str, ...] = ("*key*", "*token*", "*password*", "*passwd*", "*secret*", "*credential*")
MASK = "***"
# compiled by re on first use: most words of a command line hold no "=" and no "@", and never need them
_URL_PW = r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)"
_ASSIGN = r"(?s)^([A-Za-z_][A-Za-z0-9_]*)=(.*)$"
_OPT_EQ = r"(?s)^(-{1,2}[^=\s]+)=(.*)$"


def patterns() -> tuple[str, ...]:
    """The configured patterns (``GREENTRACK_REDACT`` > ``[tool.greentrack] redact`` > default)."""
    from ..settings import env, load_tool_config

    raw: object = env("GREENTRACK_REDACT")
    if raw is None:
        try:
            raw = load_tool_config().get("redact")
        except Exception:  # a broken pyproject must not stop a run: the defaults protect
            raw = None
    if raw is None:
        return DEFAULT_PATTERNS
    items: Iterable[object] = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list) else [raw]
    pats = tuple(str(p).strip().lower() for p in items if str(p).strip())
    if pats in ((), ("none",), ("off",)):
        return ()
    return pats


def _secret(name: str, pats: Sequence[str]) -> bool:
    n = name.lstrip("-").lower()
    return bool(n) and any(_glob(n, p) for p in pats)


def _glob(name: str, pat: str) -> bool:
    """``fnmatch.fnmatchcase(name, pat)``; a ``*word*`` pattern (the defaults) as a substring test,
    which needs no regular expression compiled."""
    inner = pat[1:-1]
    if len(pat) >= 2 and pat[0] == "*" == pat[-1] and not any(c in inner for c in "*?[]"):
        return inner in name
    return fnmatch.fnmatchcase(name, pat)


def redact_args(args: Sequence[str], pats: Sequence[str] | None = None) -> list[str]:
    """*args* with secret values replaced by ``***`` (see the module docstring)."""
    pats = patterns() if pats is None else pats
    if not pats:
        return list(args)
    out: list[str] = []
    mask_next = False
    for a in args:
        if mask_next:
            mask_next = False
            if not a.startswith("-") or a == "-":
                out.append(MASK)
                continue
        eq = "=" in a
        m = re.match(_OPT_EQ, a) if eq else None
        if m and _secret(m.group(1), pats):
            out.append(f"{m.group(1)}={MASK}")
            continue
        if a.startswith("-") and len(a) > 1 and not eq and _secret(a, pats):
            out.append(a)
            mask_next = True
            continue
        m = re.match(_ASSIGN, a) if eq else None
        if m and _secret(m.group(1), pats):
            out.append(f"{m.group(1)}={MASK}")
            continue
        out.append(re.sub(_URL_PW, lambda m: m.group(1) + MASK + m.group(3), a) if "@" in a else a)
    return out


def redact_command(command: str, pats: Sequence[str] | None = None) -> str:
    """A stored command line (``shlex.join`` text) with its secrets redacted."""
    pats = patterns() if pats is None else pats
    if not command:
        return command
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: redact word by word on whitespace
        return " ".join(redact_args(command.split(" "), pats))
    clean = redact_args(words, pats)
    return command if clean == words else shlex.join(clean)
