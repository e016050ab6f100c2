"""Reading ``[tool.greentrack]`` from the nearest pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from greentrack.errors import ConfigError
from greentrack.settings import load_tool_config


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


def test_a_broken_file_that_names_greentrack_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.greentrack\nregion = 'FR'\n")
    with pytest.raises(ConfigError, match=r"^cannot read .*pyproject.toml: Expected ']'"):
        load_tool_config(tmp_path)
