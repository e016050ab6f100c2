"""The plugin's own settings: ``GREENTRACK_PROMETHEUS_*`` variables and ``[tool.greentrack.prometheus]`` keys.

Precedence, highest first: the environment variable, the ``[tool.greentrack.prometheus]`` table of
the nearest ``pyproject.toml``, then the default. ``greentrack serve-metrics`` options override both.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from greentrack.errors import ConfigError
from greentrack.settings import Setting  # the same record the core's settings use

SETTINGS: tuple[Setting, ...] = (
    Setting("GREENTRACK_PROMETHEUS_PORT", "port", "(off)",
            "serve /metrics from each process that runs a session on this port (+ LOCAL_RANK under a "
            "launcher that sets it); 0 lets the system pick one; unset: no endpoint"),
    Setting("GREENTRACK_PROMETHEUS_ADDR", "addr", "0.0.0.0",
            "address the endpoint listens on (127.0.0.1: this machine only; :: for IPv6)"),
    Setting("GREENTRACK_PROMETHEUS_GRACE", "grace_s", "120",
            "seconds an ended run is still reported (its final values) before its series are dropped"),
    Setting("GREENTRACK_PROMETHEUS_LINGER", "linger_s", "0",
            "at process exit, wait up to this many seconds for one scrape of the final values"),
)
BY_ENV = {s.env: s for s in SETTINGS}
DEFAULT_GRACE_S = 120.0
DEFAULT_NODE_PORT = 9478


@dataclass(frozen=True)
class Config:
    """Resolved settings. ``port`` None: the per-process endpoint is off."""

    port: int | None = None
    addr: str = "0.0.0.0"
    grace_s: float = DEFAULT_GRACE_S
    linger_s: float = 0.0


def _table() -> dict[str, Any]:
    from greentrack.settings import load_tool_config

    conf = load_tool_config()
    table = conf.get("prometheus")
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError("[tool.greentrack.prometheus] must be a table (port = 9500, grace_s = 120, ...)")
    unknown = sorted(set(table) - {s.key for s in SETTINGS})
    if unknown:
        from greentrack.errors import suggest

        raise ConfigError(f"unknown key {unknown[0]!r} in [tool.greentrack.prometheus]"
                          + suggest(unknown[0], [s.key for s in SETTINGS]))
    return table


def _raw(name: str, table: dict[str, Any]) -> tuple[Any, str]:
    s = BY_ENV[name]
    v = os.environ.get(name, "").strip()
    if v:
        return v, name
    if s.key in table:
        return table[s.key], f"[tool.greentrack.prometheus] {s.key}"
    return None, name


def parse_port(value: Any, where: str) -> int:
    """A TCP port (0 to 65535); anything else is a one-line ConfigError naming *where* it came from."""
    try:
        if isinstance(value, bool):
            raise ValueError
        port = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(f"{where}={value!r} is not a port number (0 to 65535)") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}={value!r} is not a port number (0 to 65535)")
    return port


def parse_seconds(value: Any, where: str) -> float:
    """A duration in seconds, zero or more."""
    try:
        if isinstance(value, bool):
            raise ValueError
        s = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}={value!r} is not a number of seconds") from None
    if not math.isfinite(s) or s < 0:
        raise ConfigError(f"{where}={value!r} must be a number of seconds, zero or more")
    return s


def load() -> Config:
    """The settings in force now; a bad value raises :class:`greentrack.errors.ConfigError` (one line)."""
    table = _table()
    port_raw, where = _raw("GREENTRACK_PROMETHEUS_PORT", table)
    port = None if port_raw is None else parse_port(port_raw, where)
    addr_raw, _ = _raw("GREENTRACK_PROMETHEUS_ADDR", table)
    addr = str(addr_raw).strip() if addr_raw is not None else "0.0.0.0"
    grace_raw, where = _raw("GREENTRACK_PROMETHEUS_GRACE", table)
    grace = DEFAULT_GRACE_S if grace_raw is None else parse_seconds(grace_raw, where)
    linger_raw, where = _raw("GREENTRACK_PROMETHEUS_LINGER", table)
    linger = 0.0 if linger_raw is None else parse_seconds(linger_raw, where)
    return Config(port=port, addr=addr or "0.0.0.0", grace_s=grace, linger_s=linger)


def process_port(base: int) -> int:
    """The port this process serves on: *base*, plus ``LOCAL_RANK`` when a launcher set it (0 stays 0)."""
    lr = os.environ.get("LOCAL_RANK", "").strip()
    if base == 0 or not lr.isdigit():
        return base
    port = base + int(lr)
    if port > 65535:
        raise ConfigError(f"GREENTRACK_PROMETHEUS_PORT={base} + LOCAL_RANK={lr} is past 65535")
    return port
