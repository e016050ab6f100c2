"""Shared fixtures: every test gets its own database file and the mock backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar, cast

import pytest

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _greentrack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate each test: own DB, mock GPU, no user config, no inherited plugin blocks."""
    monkeypatch.setenv("GREENTRACK_DB", str(tmp_path / "greentrack.db"))
    monkeypatch.setenv("GREENTRACK_BACKEND", "mock")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))  # the spool of runs not yet written
    for var in ("GREENTRACK_REGION", "GREENTRACK_MOCK", "GREENTRACK_MOCK_GPUS", "GREENTRACK_MOCK_FEATURES",
                "GREENTRACK_MOCK_FAIL_AFTER", "GREENTRACK_DISABLE_PLUGINS", "GREENTRACK_SAMPLE_INTERVAL",
                "GREENTRACK_FLUSH_INTERVAL", "RANK", "WORLD_SIZE", "LOCAL_RANK", "GREENTRACK_JOB_ID",
                "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "GREENTRACK_SPOOL",
                "GREENTRACK_LOCK_TIMEOUT", "GREENTRACK_REDACT",
                # this suite's own pytest-xdist worker, when run with -n: not the pytester runs' business
                # (pytest-benchmark, for one, reads PYTEST_XDIST_WORKER and warns on stderr)
                "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    # run from a folder without a pyproject.toml so [tool.greentrack] of this repo is not read
    monkeypatch.chdir(tmp_path)
    from greentrack import plugins

    plugins.reset()
    _forget_said()
    yield
    plugins.reset()


def _forget_said() -> None:
    """'Said once' messages are per process; each test starts afresh."""
    import greentrack

    # the notify module the Session class in use reports through (pytester may swap modules)
    greentrack.Session.stop.__globals__["_say_once"].__globals__["forget"]()


def wait_for(got: Callable[[], T], what: str, timeout_s: float = 20.0) -> T:
    """Call *got* every 50 ms until it returns something true, and return that; fail after *timeout_s*.

    For what a background thread or another process does on its own schedule (a flush, a write): on a
    loaded machine it comes late, so a test waits for it instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = got()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} in {timeout_s:g} s"
        time.sleep(0.05)


def stored_energy_j(open_store: Callable[[], Any], run_id: str) -> float:
    """The energy the database holds for *run_id* so far (0 before its row or first flush is written)."""
    try:
        store = open_store()
    except Exception:  # no database file yet
        return 0.0
    try:
        return float(store.get_run(run_id)["energy_j"] or 0.0)
    except Exception:  # no row yet
        return 0.0
    finally:
        store.close()


def kill_once_stored(proc: Any, open_store: Callable[[], Any], run_id: str, joules: float) -> float:
    """SIGKILL *proc* once the database holds more than *joules* for *run_id* (its flushes stored them,
    however late a loaded machine makes them); returns what was stored before the kill. The process is
    killed even when the wait fails."""
    def stored() -> float:
        e = stored_energy_j(open_store, run_id)
        return e if e > joules else 0.0

    try:
        return wait_for(stored, f"flush of more than {joules:g} J of the run's energy")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def install_plugin(plugin_dir: Path, root: Path) -> Path:
    """Install a plugin of ``plugins/`` into ``root/site`` with pip, as a user installs one; returns the folder."""
    import shutil

    src = root / plugin_dir.name  # a copy: the in-tree build leaves build/ and *.egg-info behind
    shutil.copytree(plugin_dir, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-input", "--no-deps", "--target", str(target)]
    first = subprocess.run(pip + ["--no-build-isolation", str(src)], capture_output=True, text=True, timeout=120)
    if first.returncode != 0:
        # setuptools older than 70.1 builds wheels only with the 'wheel' package; without it (or
        # without setuptools) pip fetches the build backend declared in the plugin's pyproject.toml
        again = subprocess.run(pip + [str(src)], capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, first.stderr[-1500:] + "\n---\n" + again.stderr[-1500:]
    return target


def read_artifact(path: Path) -> dict[str, Any]:
    """The ``--greentrack-json`` artifact of a pytest session (schema ``greentrack.pytest``): session, tests,
    checks, energy method, model."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["schema"] == "greentrack.pytest", doc.get("schema")
    return cast("dict[str, Any]", doc)


def artifact_tests(path: Path) -> dict[str, dict[str, Any]]:
    """``{test name: its record}`` from the ``--greentrack-json`` artifact (energy_j, co2e_g, duration_s,
    budget, over_budget, budget_checked, outcome, method...); the name is the node id's last part."""
    return {t["nodeid"].rpartition("::")[2]: t for t in read_artifact(path)["tests"]}


@pytest.fixture
def ci_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This machine as a CI runner: the auto backend finds no GPU and no RAPL; the model's watts are fixed."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "auto")
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(tmp_path / "no-powercap"))
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.nvml")
    monkeypatch.setenv("GREENTRACK_CPU_WATTS_PER_THREAD", "4")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "greentrack.db"


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite file through SQLite's own backup API (WAL contents included)."""
    import sqlite3

    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


class RunCache:
    """Runs measured once per test session, then copied into each test's own database.

    ``run_cache("key", build)`` calls *build()* (which measures real sessions into the test's
    database) the first time and keeps a copy of the database; later calls with the same key
    copy that database into the calling test's ``db_path`` and return what *build* returned.
    Each test still gets its own file, so what one test writes never reaches another.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[str, tuple[Path, Any]] = {}

    def __call__(self, key: str, build: Callable[[], T]) -> T:
        db = Path(os.environ["GREENTRACK_DB"])
        if key in self.built:
            template, value = self.built[key]
            _copy_db(template, db)
            return cast(T, value)
        value = build()
        template = self.root / f"{key}.db"
        _copy_db(db, template)
        self.built[key] = (template, value)
        return value


@pytest.fixture(scope="session")
def run_cache(tmp_path_factory: pytest.TempPathFactory) -> RunCache:
    return RunCache(tmp_path_factory.mktemp("run-cache"))


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
            timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m greentrack ARGS`` in a real subprocess with the test's environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "greentrack", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, input=input)


@dataclass
class CliResult:
    """What :func:`invoke_cli` gives: the fields of a ``CompletedProcess`` the tests read."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
               input: str | None = None) -> CliResult:
    """Run ``greentrack ARGS`` in this process with click's CliRunner, as a fresh process would see it.

    Each call starts from a new plugin manager and no "said once" messages (as a new process
    does), with *env* set and *cwd* as the working directory for the call only. An exception
    that escapes the command's own error handling is raised here, with its traceback, instead
    of becoming an exit status.
    """
    from click.testing import CliRunner

    from greentrack import plugins
    from greentrack.cli import load_commands

    plugins.reset()
    _forget_said()
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps stderr apart by itself
    old_cwd = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    tz = (env or {}).get("TZ")
    old_tz = os.environ.get("TZ")
    if tz is not None:  # a new process reads TZ at start; this one is told explicitly
        os.environ["TZ"] = tz
        time.tzset()
    try:
        res = runner.invoke(load_commands(), list(args), input=input, env=env, catch_exceptions=False,
                            prog_name="greentrack")
    finally:
        os.chdir(old_cwd)
        plugins.reset()
        if tz is not None:
            if old_tz is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old_tz
            time.tzset()
    return CliResult(["greentrack", *args], res.exit_code, res.stdout, res.stderr)


@pytest.fixture
def cli():
    """``cli("report", "--last", "3")`` -> a CliResult of ``greentrack`` run in process (click's CliRunner).

    For what needs a real process (signals, a child's exit code, a crash, output written by a
    child), use :func:`run_cli` (the ``cli_process`` fixture).
    """
    return invoke_cli


@pytest.fixture
def cli_process():
    """``cli_process("run", "--", ...)`` -> CompletedProcess of a real ``greentrack`` subprocess."""
    return run_cli


# PostgreSQL: one throwaway cluster per test session; the backend tests run on SQLite and on it -----------
@pytest.fixture(scope="session")
def pg_cluster():
    """A running throwaway PostgreSQL cluster (see tests/pg_cluster.py); skipped where PostgreSQL or
    psycopg is missing, unless CI_REQUIRE_POSTGRES=1 (.ci/run sets it: there a missing server fails)."""
    from pg_cluster import Cluster

    try:
        import psycopg  # noqa: F401

        cluster = Cluster()
    except (ImportError, FileNotFoundError, RuntimeError) as exc:
        if os.environ.get("CI_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL is not available here: {exc}")
    yield cluster
    cluster.close()


@pytest.fixture
def pg_url(pg_cluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh PostgreSQL database (its own schema) as GREENTRACK_DB."""
    url = pg_cluster.url()
    monkeypatch.setenv("GREENTRACK_DB", url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """GREENTRACK_DB for the test, on each backend in turn: a SQLite file, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return os.environ["GREENTRACK_DB"]
    url = request.getfixturevalue("pg_cluster").url()
    monkeypatch.setenv("GREENTRACK_DB", url)
    return url
