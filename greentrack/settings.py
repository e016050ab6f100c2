"""Every setting greentrack reads, in one place: ``GREENTRACK_*`` variables and ``[tool.greentrack]`` keys.

Precedence, highest first: an explicit argument (``Session(db=...)``, ``--db``), the
environment variable, the ``[tool.greentrack]`` table of the nearest ``pyproject.toml``,
then the default. :data:`SETTINGS` lists each one with its meaning; ``greentrack doctor``
and the docs list them from it, and a test fails when the code reads one that is not here.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError


class Setting:
    """One setting: its environment variable, its ``[tool.greentrack]`` key (if any), its meaning.

    A plain class, not a dataclass: :mod:`greentrack.settings` is imported by every session and by
    the pytest plugin, and a dataclass's generated methods cost 0.2 to 0.8 ms each at import."""

    __slots__ = ("env", "key", "default", "help")

    def __init__(self, env: str, key: str | None, default: str, help: str) -> None:
        self.env = env
        self.key = key
        self.default = default
        self.help = help

    def __repr__(self) -> str:
        return f"Setting({self.env!r}, {self.key!r})"


SETTINGS: tuple[Setting, ...] = (
    Setting("GREENTRACK_DB", "db", "$XDG_DATA_HOME/greentrack/greentrack.db",
            "database: a SQLite file (a relative pyproject value is relative to the pyproject's folder) or a "
            "postgresql:// URL (credentials: in the URL, a libpq service file or PG* variables; never stored)"),
    Setting("GREENTRACK_BACKEND", "backend", "auto",
            "power source: auto, nvml, mock, rapl, none, or a plugin's source; several with commas"),
    Setting("GREENTRACK_REGION", "region", "(world average, labelled)", "grid region used when a session names none"),
    Setting("GREENTRACK_SAMPLE_INTERVAL", "sample_interval_s", "(per source)", "seconds between power polls"),
    Setting("GREENTRACK_FLUSH_INTERVAL", "flush_interval_s", "2", "seconds between writes of the series to the store"),
    Setting("GREENTRACK_DISABLE_PLUGINS", None, "", "comma-separated plugin names not to load (built-ins included)"),
    Setting("GREENTRACK_MOCK", "mock_trace", "load:70,600",
            "mock trace: constant:W, step:LOW,HIGH,PERIOD, load:IDLE,BUSY, replay:FILE.csv"),
    Setting("GREENTRACK_MOCK_GPUS", "mock_gpus", "1", "number of simulated GPUs"),
    Setting("GREENTRACK_MOCK_FEATURES", None, "counter,buffer",
            "what the mock GPU offers: counter, buffer, instant (comma-separated)"),
    Setting("GREENTRACK_MOCK_FAIL_AFTER", None, "",
            "the mock GPU's reads fail after this many seconds; S:D fails from S for D seconds (fault tests)"),
    Setting("GREENTRACK_ALL_GPUS", None, "", "1: under torchrun, measure every visible GPU, not only the rank's own"),
    Setting("GREENTRACK_NVML_COUNTER", None, "on", "off: ignore NVML's energy counter (totals from the power series)"),
    Setting("GREENTRACK_NVML_SERIES", None, "(best available)",
            "force NVML's series method: buffer, instant or average"),
    Setting("GREENTRACK_RAPL_ROOT", None, "/sys/class/powercap", "where the RAPL powercap tree is mounted"),
    Setting("GREENTRACK_CPU_WATTS_PER_THREAD", "cpu_watts_per_thread",
            "(CPU model's TDP / its threads, from codecarbon's CPU table; else 4)",
            "cpu-model source: watts drawn by one fully busy hardware thread (see docs/cpu-model.md)"),
    Setting("GREENTRACK_CPU_IDLE_SHARE", "cpu_idle_share", "0",
            "cpu-model source: share (0-1) of a thread's watts charged for each second of wall time, busy or not"),
    Setting("GREENTRACK_JOB_ID", None, "(TORCHELASTIC_RUN_ID, else SLURM_JOB_ID[.SLURM_STEP_ID])",
            "job id shared by the runs of one job, on every node; greentrack run sets it for its child"),
    Setting("GREENTRACK_HOST", None, "(this machine's name)",
            "host name stored with each run (a node of a job); running runs whose process is gone on this "
            "host read as lost"),
    Setting("GREENTRACK_PARENT_RUN_ID", None, "", "set by greentrack run for its child: the wrapper's run id"),
    Setting("GREENTRACK_PRICE_PER_KWH", None, "", "electricity price per kWh for the cost rows of greentrack diff"),
    Setting("GREENTRACK_GPU_STATE", None, "$XDG_STATE_HOME/greentrack/gpu-settings.json",
            "where greentrack tune records a GPU's original power limit and clocks until they are restored"),
    Setting("GREENTRACK_CURRENCY", "currency", "USD", "currency of GREENTRACK_PRICE_PER_KWH, shown with every cost"),
    Setting("GREENTRACK_PUE", "pue", "1.0 (not applied)",
            "power usage effectiveness of the data centre where runs are measured, a number >= 1.0: CO2e = energy x "
            "PUE x grid intensity (sessions, greentrack run and the pytest plugin, when they are given none)"),
    Setting("GREENTRACK_LOCK_TIMEOUT", None, "3",
            "seconds a session's last write waits for a database locked by another process before the run goes to "
            "the spool (stop() returns within about this plus 1 s)"),
    Setting("GREENTRACK_SPOOL", None, "$XDG_STATE_HOME/greentrack/spool",
            "folder of runs that could not be written (locked, full or missing database), delivered later"),
    Setting("GREENTRACK_REDACT", "redact", "*key*,*token*,*password*,*passwd*,*secret*,*credential*",
            "option/variable name patterns whose values are redacted from stored command lines; none: off"),
    Setting("GREENTRACK_DEBUG", None, "", "1: the CLI shows the traceback of an unexpected error"),
    Setting("", "scenarios", "", "[tool.greentrack.scenarios.NAME] tables: your own scenarios (see docs/carbon.md)"),
    Setting("", "scenario_files", "", "list of scenario TOML/JSON files to load"),
)
BY_ENV = {s.env: s for s in SETTINGS if s.env}

ENV_DB = "GREENTRACK_DB"
ENV_BACKEND = "GREENTRACK_BACKEND"
ENV_REGION = "GREENTRACK_REGION"
ENV_DISABLE_PLUGINS = "GREENTRACK_DISABLE_PLUGINS"


def env(name: str) -> str | None:
    """The value of a registered ``GREENTRACK_*`` variable (None when unset or empty)."""
    if name not in BY_ENV:  # a typo here would silently read nothing: fail loudly in development
        raise KeyError(f"{name} is not a registered setting (add it to greentrack.settings.SETTINGS)")
    return os.environ.get(name) or None



def host_name() -> str:
    """The host name stored with runs: ``GREENTRACK_HOST``, else this machine's name (``os.uname``)."""
    return env("GREENTRACK_HOST") or os.uname().nodename


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/greentrack/greentrack.db``, else ``~/.local/share/greentrack/greentrack.db``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "greentrack" / "greentrack.db"


def spool_dir() -> Path:
    """Where runs that could not be written wait (:mod:`greentrack.store.spool`): ``GREENTRACK_SPOOL``, else
    ``$XDG_STATE_HOME/greentrack/spool``, else ``~/.local/state/greentrack/spool``."""
    given = env("GREENTRACK_SPOOL")
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "greentrack" / "spool"


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above *start* (the working directory)."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        p = d / "pyproject.toml"
        if p.is_file():
            return p
    return None


_toml_cache: dict[Path, tuple[float, dict[str, Any]]] = {}


def _may_name_the_table(raw: bytes) -> bool:
    """Whether *raw* (a pyproject.toml) may define ``tool.greentrack``: the name followed, after a quote and
    spaces, by what follows a key or a table's name (``]``, ``.``, ``=``, the line's or the file's end).

    Every spelling does (``[tool.greentrack]``, ``[tool."greentrack".x]``, ``greentrack = {...}``,
    ``tool.greentrack.pue = 1.2``); a dependency (``"greentrack>=0.1"``, ``"greentrack[pytest]"``) does not,
    and a file that names greentrack only so is not parsed. (A key spelled with escapes,
    ``"green\\u0074rack"``, is not seen.)"""
    i = raw.find(b"greentrack")
    while i >= 0:
        j = i + len(b"greentrack")
        if raw[j:j + 1] in (b'"', b"'"):
            j += 1
        while raw[j:j + 1] in (b" ", b"\t"):
            j += 1
        if raw[j:j + 1] in (b"]", b".", b"=", b"\r", b"\n", b""):
            return True
        i = raw.find(b"greentrack", j)
    return False


def load_tool_config(start: Path | None = None) -> dict[str, Any]:
    """The ``[tool.greentrack]`` table of the nearest pyproject.toml, or ``{}``.

    Relative paths in it are resolved against the pyproject's folder (key ``_root``). A file that
    never names greentrack as a key (:func:`_may_name_the_table`) has no such table and is not parsed:
    another tool's broken table is then not reported here, and TOML's parser, pure Python, is neither
    imported nor run (``benchmarks/bench_session_instructions.py`` counts what it costs).
    """
    p = find_pyproject(start)
    if p is None:
        return {}
    try:
        mtime = p.stat().st_mtime
        cached = _toml_cache.get(p)
        if cached and cached[0] == mtime:
            return cached[1]
        raw = p.read_bytes()
        if _may_name_the_table(raw):
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib  # type: ignore[no-redef, unused-ignore]
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = {}
    except Exception as exc:  # a broken pyproject must not stop a training run
        raise ConfigError(f"cannot read {p}: {exc}") from None
    conf = dict(data.get("tool", {}).get("greentrack", {}) or {})
    conf["_root"] = str(p.parent)
    _toml_cache[p] = (mtime, conf)
    return conf


class Settings:
    """Resolved settings for one session or command. A plain class, not a dataclass: every session and the
    pytest plugin import this module, and a dataclass's generated methods cost about 0.4 ms at import."""

    FIELDS = ("db_path", "backend", "region", "sample_interval_s", "flush_interval_s", "extra")
    __slots__ = FIELDS

    def __init__(self, db_path: Path | str, backend: str = "auto", region: str | None = None,
                 sample_interval_s: float | None = None, flush_interval_s: float = 2.0,
                 extra: dict[str, Any] | None = None) -> None:
        self.db_path = db_path  # a SQLite file, or a server URL (see resolve_db)
        self.backend = backend
        self.region = region
        self.sample_interval_s = sample_interval_s
        self.flush_interval_s = flush_interval_s
        self.extra: dict[str, Any] = {} if extra is None else extra

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq is

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={getattr(self, k)!r}' for k in self.FIELDS)})"


def resolve_pue(given: Any = None, conf: dict[str, Any] | None = None, source: str = "pue") -> float:
    """The PUE: *given* (named *source* in errors) > ``GREENTRACK_PUE`` > ``[tool.greentrack] pue`` > 1.0
    (not applied).

    Anything but a finite number >= 1.0 is a one-line :class:`ConfigError` naming where it came from.
    """
    from_env = (env("GREENTRACK_PUE") or "").strip()
    if given is not None:
        raw, src = given, source
    elif from_env:
        raw, src = from_env, "GREENTRACK_PUE"
    else:
        conf = load_tool_config() if conf is None else conf
        if conf.get("pue") is None:
            return 1.0
        raw, src = conf["pue"], "[tool.greentrack] pue"
    try:
        val = float(raw) if not isinstance(raw, bool) else float("nan")
    except (TypeError, ValueError):
        val = float("nan")
    if not (1.0 <= val < float("inf")):
        raise ConfigError(f"{src} must be a finite number >= 1.0 (power usage effectiveness), got {raw!r}")
    return val


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


def currency(given: str | None = None) -> str:
    """The currency costs are shown in: *given* > ``GREENTRACK_CURRENCY`` > ``[tool.greentrack] currency`` > USD.

    A code like USD or EUR, or a symbol; anything with spaces or control characters is a one-line error.
    """
    value = given or env("GREENTRACK_CURRENCY") or load_tool_config().get("currency") or "USD"
    text = str(value).strip()
    if not text or len(text) > 8 or any(c.isspace() or not c.isprintable() for c in text):
        raise ConfigError(f"bad currency {value!r}: use a code such as USD or EUR")
    return text.upper() if text.isalpha() else text


_URL = r"^([A-Za-z][A-Za-z0-9+.-]*):(//|$)"  # compiled on first use (re's cache): a plain path has no colon
#: URL schemes greentrack stores runs in (besides a plain file path, which is SQLite).
SERVER_SCHEMES = ("postgresql", "postgres")


def url_scheme(value: str | os.PathLike[str]) -> str | None:
    """The scheme of a URL-looking database value (``postgresql://...`` -> ``postgresql``), else None."""
    if not isinstance(value, (str, os.PathLike)):
        return None
    text = os.fspath(value)
    m = re.match(_URL, text) if ":" in text else None
    return m.group(1).lower() if m else None


def mask_url(url: str) -> str:
    """*url* with its password replaced by ``***`` (``postgresql://me:***@db/runs``); other text as is."""
    url = re.sub(r"((?:^|[?&\s])password=)[^&\s]*", r"\1***", url, flags=re.IGNORECASE)
    return re.sub(r"(://[^/@:\s]*:)[^/\s]*@", r"\1***@", url)


def db_location(value: str | os.PathLike[str], source: str = "--db") -> Path | str:
    """A database value as what it names: a server URL (str) or a SQLite file (Path).

    A URL of a scheme greentrack does not store runs in is one :class:`ConfigError` line
    (``GREENTRACK_DB=mysql://...`` must not become a folder named ``mysql:``).
    """
    scheme = url_scheme(value)
    if scheme is None:
        return Path(value).expanduser()
    text = os.fspath(value)
    if scheme in SERVER_SCHEMES:
        return text
    hint = " (for SQLite give the file path itself)" if scheme.startswith("sqlite") or scheme == "file" else ""
    raise ConfigError(f"{source}={mask_url(text)} is a URL of an unsupported scheme {scheme!r}: use a file path "
                      f"(SQLite) or a postgresql:// URL{hint}")


def is_server(location: Path | str) -> bool:
    """Whether a resolved database location is a server URL rather than a file."""
    return isinstance(location, str) and url_scheme(location) in SERVER_SCHEMES


def resolve_db(db: str | os.PathLike[str] | None = None, conf: dict[str, Any] | None = None) -> Path | str:
    """The database: argument > ``GREENTRACK_DB`` > ``[tool.greentrack] db`` > default.

    A SQLite file as a :class:`Path`, or a ``postgresql://`` URL as a ``str`` (see :func:`db_location`).
    """
    if db:
        return db_location(db)
    value = os.environ.get(ENV_DB)
    if value:
        return db_location(value, ENV_DB)
    conf = load_tool_config() if conf is None else conf
    if conf.get("db"):
        got = db_location(str(conf["db"]), "[tool.greentrack] db")
        if isinstance(got, str) or got.is_absolute():
            return got
        return Path(conf["_root"]) / got
    return default_db_path()


def resolve_db_path(db: str | os.PathLike[str] | None = None, conf: dict[str, Any] | None = None) -> Path:
    """The database *file* (see :func:`resolve_db`); a server URL is a one-line error here."""
    got = resolve_db(db, conf)
    if isinstance(got, str):
        raise ConfigError(f"{mask_url(got)} is a database server: this needs a SQLite file (use --db FILE)")
    return got


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
        db_path=resolve_db(db, conf),
        backend=str(backend).strip().lower(),
        region=str(region) if region else None,
        sample_interval_s=float(si) if si else None,
        flush_interval_s=float(fi),
        extra=conf,
    )
