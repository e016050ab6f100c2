"""Shared fixtures: every test gets its own database file and the mock backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
                "GREENTRACK_LOCK_TIMEOUT", "GREENTRACK_REDACT"):
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


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "greentrack.db"


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
            timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m greentrack ARGS`` in a real subprocess with the test's environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "greentrack", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, input=input)


@pytest.fixture
def cli():
    """``cli("report", "--last", "3")`` -> CompletedProcess of a real ``greentrack`` subprocess."""
    return run_cli
