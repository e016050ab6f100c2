"""The house keeps its shape: the import-linter contracts in pyproject.toml, ruff and mypy, checked by the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


def test_layers_import_only_downward():
    """cli|pytest_plugin > api > study > views > measure > store > carbon > plugins > settings|units > errors."""
    out = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "Contracts: 3 kept, 0 broken." in out.stdout


def test_ruff_is_clean():
    out = subprocess.run([_tool("ruff"), "check", "-q", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]


def test_mypy_is_clean_on_the_package():
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
