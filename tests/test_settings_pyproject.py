"""Reading ``[tool.greentrack]`` from the nearest pyproject.toml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from greentrack.errors import ConfigError
from greentrack.settings import load_tool_config, resolve_pue


def test_the_table_is_read_with_relative_paths_rooted_at_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.greentrack]\nregion = "FR"\n')
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    conf = load_tool_config(sub)
    assert conf == {"region": "FR", "_root": str(tmp_path.resolve())}


@pytest.mark.parametrize("text", [
    '[tool]\ngreentrack = { region = "SE" }\n',  # an inline table
    'tool.greentrack.region = "SE"\n',  # dotted keys at the top
    '[tool."greentrack"]\nregion = "SE"\n',  # a quoted key
    "[tool.'greentrack']\nregion = 'SE'\n",  # a literal-string key
    '[ tool . greentrack ]\nregion = "SE"\n',  # spaces around the dots
    '[tool]\ngreentrack.region = "SE"\n',  # dotted keys in the tool table
    '[tool.greentrack.x]\ny = 1\n[tool.greentrack]\nregion = "SE"\n',  # a sub-table first
    '[project]\ndependencies = ["greentrack>=0.1"]\n[tool.greentrack]\nregion = "SE"\n',  # a dependency too
])
def test_every_toml_spelling_of_the_table_is_found(tmp_path: Path, text: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    assert load_tool_config(tmp_path)["region"] == "SE"


def test_a_file_that_never_names_greentrack_is_not_parsed(tmp_path: Path) -> None:
    # another tool's broken table is not greentrack's business: no error, no settings
    (tmp_path / "pyproject.toml").write_text('[tool.black\nline-length = 100\n')
    assert load_tool_config(tmp_path) == {"_root": str(tmp_path.resolve())}
    # and TOML's parser is not even imported for it (it costs a few milliseconds per session)
    code = ("import sys; from greentrack.settings import load_tool_config; "
            f"load_tool_config(__import__('pathlib').Path({str(tmp_path)!r})); print('tomllib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("deps", [
    'dependencies = ["torch>=2.3", "greentrack>=0.1"]',
    'dependencies = ["greentrack[pytest] ; python_version >= \'3.10\'"]',
    'dependencies = [\n  "greentrack~=0.1",\n  "greentrack-hf",\n]',
])
def test_a_file_that_names_greentrack_only_as_a_dependency_is_not_parsed(tmp_path: Path, deps: str) -> None:
    """A user's pyproject names greentrack among its dependencies: that is no table of settings, and
    TOML's parser is neither imported nor run (another tool's broken table is not reported here)."""
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "x"\n{deps}\n\n[tool.black\nline-length = 100\n')
    assert load_tool_config(tmp_path) == {"_root": str(tmp_path.resolve())}
    code = ("import sys; from greentrack.settings import load_tool_config; "
            f"load_tool_config(__import__('pathlib').Path({str(tmp_path)!r})); print('tomllib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_broken_file_that_names_greentrack_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.greentrack\nregion = 'FR'\n")
    with pytest.raises(ConfigError, match=r"^cannot read .*pyproject.toml: Expected ']'"):
        load_tool_config(tmp_path)


def test_the_table_is_parsed_once_per_change_of_the_file(tmp_path: Path) -> None:
    f = tmp_path / "pyproject.toml"
    f.write_text('[tool.greentrack]\nregion = "FR"\n')
    first = load_tool_config(tmp_path)
    assert load_tool_config(tmp_path) is first  # unchanged file: not parsed again
    f.write_text('[tool.greentrack]\nregion = "DE"\n')
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10_000_000))  # a later modification time
    assert load_tool_config(tmp_path)["region"] == "DE"


@pytest.mark.parametrize("raw, want", [("1", 1.0), ("1.0", 1.0), ("1.05", 1.05), (" 1.58 ", 1.58)])
def test_a_pue_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str, want: float) -> None:
    monkeypatch.setenv("GREENTRACK_PUE", raw)
    assert resolve_pue(conf={"pue": 3.0}) == want  # the environment over the pyproject


@pytest.mark.parametrize("raw", ["0.99", "inf", "nan", "-1", "high", ""])
def test_a_bad_pue_from_the_environment_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("GREENTRACK_PUE", raw)
    if not raw:  # empty: unset
        assert resolve_pue(conf={}) == 1.0
        return
    with pytest.raises(ConfigError, match=r"^GREENTRACK_PUE must be a finite number >= 1.0 \(power usage "
                                          rf"effectiveness\), got '{raw}'$"):
        resolve_pue(conf={})


def test_the_pyproject_pue_given_or_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GREENTRACK_PUE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.greentrack]\npue = 1.2\n")
    assert resolve_pue() == 1.2  # no table given: the nearest pyproject's
    assert resolve_pue(conf={"pue": 1.4}) == 1.4  # a table given (the session's settings): that one
    assert resolve_pue(conf={}) == 1.0 and resolve_pue(2.0, conf={"pue": 1.4}) == 2.0
    for bad in (True, float("inf"), "1,5"):
        with pytest.raises(ConfigError, match=r"^\[tool.greentrack\] pue must be a finite number >= 1.0"):
            resolve_pue(conf={"pue": bad})
