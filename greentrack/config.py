"""Where settings come from: argument > environment > ``[tool.greentrack]`` > default.

Environment variables:

- ``GREENTRACK_DB``       database file
- ``GREENTRACK_BACKEND``  power source: ``auto`` (default), ``nvml``, ``mock``, ``none``, or a plugin's
- ``GREENTRACK_REGION``   grid region used when a session names none
- ``GREENTRACK_MOCK``     mock trace, e.g. ``constant:300``, ``step:100,400,2``, ``load:60,450``,
                          ``replay:trace.csv``
- ``GREENTRACK_MOCK_GPUS`` number of mock GPUs (default 1)
- ``GREENTRACK_DISABLE_PLUGINS`` comma-separated plugin names not to load
- ``GREENTRACK_SAMPLE_INTERVAL`` / ``GREENTRACK_FLUSH_INTERVAL`` seconds
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV_DB = "GREENTRACK_DB"
ENV_BACKEND = "GREENTRACK_BACKEND"
ENV_REGION = "GREENTRACK_REGION"


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/greentrack/greentrack.db``, else ``~/.local/share/greentrack/greentrack.db``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "greentrack" / "greentrack.db"


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above *start* (the working directory)."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        p = d / "pyproject.toml"
        if p.is_file():
            return p
    return None


_toml_cache: dict[Path, tuple[float, dict[str, Any]]] = {}


def load_tool_config(start: Path | None = None) -> dict[str, Any]:
    """The ``[tool.greentrack]`` table of the nearest pyproject.toml, or ``{}``.

    Relative paths in it are resolved against the pyproject's folder (key ``_root``).
    """
    p = find_pyproject(start)
    if p is None:
        return {}
    try:
        mtime = p.stat().st_mtime
        cached = _toml_cache.get(p)
        if cached and cached[0] == mtime:
            return cached[1]
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib  # type: ignore[no-redef]
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except Exception as exc:  # a broken pyproject must not stop a training run
        raise ConfigError(f"cannot read {p}: {exc}") from None
    conf = dict(data.get("tool", {}).get("greentrack", {}) or {})
    conf["_root"] = str(p.parent)
    _toml_cache[p] = (mtime, conf)
    return conf


@dataclass
class Settings:
    """Resolved settings for one session or command."""

    db_path: Path
    backend: str = "auto"
    region: str | None = None
    sample_interval_s: float | None = None
    flush_interval_s: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict)


def _float_env(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        val = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if val <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return val


def resolve_db_path(db: str | os.PathLike[str] | None = None, conf: dict[str, Any] | None = None) -> Path:
    """Database path: argument > ``GREENTRACK_DB`` > ``[tool.greentrack] db`` > default."""
    if db:
        return Path(db).expanduser()
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    conf = load_tool_config() if conf is None else conf
    if conf.get("db"):
        p = Path(str(conf["db"])).expanduser()
        return p if p.is_absolute() else Path(conf["_root"]) / p
    return default_db_path()


def resolve(
    db: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    region: str | None = None,
    sample_interval_s: float | None = None,
    flush_interval_s: float | None = None,
) -> Settings:
    """Resolve every setting with the documented precedence."""
    conf = load_tool_config()
    backend = backend or os.environ.get(ENV_BACKEND) or conf.get("backend") or "auto"
    region = region or os.environ.get(ENV_REGION) or conf.get("region")
    si = sample_interval_s or _float_env("GREENTRACK_SAMPLE_INTERVAL", None) or conf.get("sample_interval_s")
    fi = flush_interval_s or _float_env("GREENTRACK_FLUSH_INTERVAL", None) or conf.get("flush_interval_s") or 2.0
    for label, v in (("sample_interval_s", si), ("flush_interval_s", fi)):
        if v is not None and (not isinstance(v, (int, float)) or v <= 0):
            raise ConfigError(f"{label} must be a positive number, got {v!r}")
    return Settings(
        db_path=resolve_db_path(db, conf),
        backend=str(backend).strip().lower(),
        region=str(region) if region else None,
        sample_interval_s=float(si) if si else None,
        flush_interval_s=float(fi),
        extra=conf,
    )
