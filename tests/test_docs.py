"""The docs keep up with the code: hooks, settings, commands, generated parts and links.

Modelled on datasette's tests/test_docs.py: each hook, setting and command is its own test
case, so a failure names what is undocumented.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from greentrack import hookspecs
from greentrack.settings import BY_ENV, SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", DOCS / "gen_docs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- hooks
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("greentrack_") and hasattr(f, "greentrack_spec"))


def test_hooks_were_found():
    assert "greentrack_session_end" in HOOKS and "greentrack_grid_intensity" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_is_documented_in_plugins_md(hook: str):
    assert re.search(rf"^### `{hook}\(", _read("plugins.md"), re.M), f"{hook} is not documented in docs/plugins.md"


def test_plugins_md_documents_no_hook_that_does_not_exist():
    documented = re.findall(r"^### `(greentrack_\w+)\(", _read("plugins.md"), re.M)
    assert sorted(documented) == HOOKS


# --------------------------------------------------------------------------- settings
def _env_names_in_source() -> list[str]:
    """Every GREENTRACK_* name written anywhere in greentrack/'s Python files (``GREENTRACK_NVML_*`` is no name)."""
    pattern = re.compile(r"\bGREENTRACK_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])")
    found: set[str] = set()
    for path in (ROOT / "greentrack").rglob("*.py"):
        found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return sorted(found)


SOURCE_ENV = _env_names_in_source()
REGISTERED_ENV = sorted(s.env for s in SETTINGS if s.env)
REGISTERED_KEYS = sorted(s.key for s in SETTINGS if s.key)


def test_the_source_scan_finds_settings():
    assert {"GREENTRACK_DB", "GREENTRACK_NVML_SERIES", "GREENTRACK_DEBUG"} <= set(SOURCE_ENV)


@pytest.mark.parametrize("name", SOURCE_ENV)
def test_every_variable_the_code_names_is_registered(name: str):
    assert name in BY_ENV, f"{name} appears in greentrack/ but is not in greentrack.settings.SETTINGS"


@pytest.mark.parametrize("name", sorted(set(SOURCE_ENV) | set(REGISTERED_ENV)))
def test_every_variable_is_documented_in_settings_md(name: str):
    assert f"`{name}`" in _read("settings.md"), f"{name} is not documented in docs/settings.md"


@pytest.mark.parametrize("key", REGISTERED_KEYS)
def test_every_pyproject_key_is_documented_in_settings_md(key: str):
    assert f"`{key}`" in _read("settings.md"), f"[tool.greentrack] {key} is not documented in docs/settings.md"


def test_settings_table_rows_follow_the_registry():
    text = _read("settings.md")
    block = text[text.index("<!-- generated: settings -->"):text.index("<!-- end generated -->")]
    rows = [ln for ln in block.splitlines() if ln.startswith("| ") and not ln.startswith("| environment")]
    assert len(rows) == len(SETTINGS)


# --------------------------------------------------------------------------- commands
def _builtin_command_paths() -> list[str]:
    """``greentrack X [Y]`` for every command greentrack itself registers through load_commands()."""
    import click

    from greentrack.cli import load_commands

    def walk(cmd: click.Command, path: str) -> list[str]:
        out = [path]
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                module = getattr(sub.callback, "__module__", "") or ""
                if module.startswith("greentrack.cli") and not sub.hidden:  # a plugin's commands are its own docs
                    out += walk(sub, f"{path} {name}")
        return out

    return walk(load_commands(), "greentrack")


def test_commands_were_found():
    assert {"greentrack report", "greentrack doctor", "greentrack import codecarbon"} <= set(_builtin_command_paths())


def test_every_cli_command_is_in_cli_md():
    text = _read("cli.md")
    missing = [p for p in _builtin_command_paths() if f"\n## {p}\n" not in text]
    assert not missing, f"missing from docs/cli.md (run: python docs/gen_docs.py): {missing}"


def test_generated_docs_are_current():
    stale = [str(p.relative_to(ROOT)) for p in _gen_docs().stale()]
    assert not stale, f"stale: {stale}; run: python docs/gen_docs.py"


def test_the_cli_reference_is_each_commands_own_help(cli):
    """What ``greentrack X --help`` prints (usage line, every option) is in X's section of docs/cli.md."""
    text = _read("cli.md")
    for path in _builtin_command_paths():
        out = cli(*path.split()[1:], "--help")
        assert out.returncode == 0, out.stderr
        heading = f"\n## {path}\n"
        section = text[text.index(heading):]
        section = section[:section.find("\n## ", len(heading))]
        usage = next(ln for ln in out.stdout.splitlines() if ln.startswith("Usage:"))
        assert usage in section, (path, usage)
        options = set(re.findall(r"(?<![\w-])--?[a-z][\w-]*", out.stdout.split("Options:")[-1]))
        missing = [o for o in sorted(options) if o not in section]
        assert not missing, (path, missing)


# --------------------------------------------------------------------------- links
def _markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((ROOT / "plugins").glob("**/README.md"))]
    return [f for f in files if f.is_file() and "build" not in f.parts]


def _anchors(md: Path) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings."""
    gen = _gen_docs()
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    return {gen._slug(h) for h in re.findall(r"^#{1,6} +(.+?) *$", text, re.M)}


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _links() -> list[tuple[Path, str]]:
    out = []
    for md in _markdown_files():
        text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
        out += [(md, target) for target in LINK.findall(text)]
    return out


def test_markdown_files_and_links_were_found():
    files = {p.relative_to(ROOT).as_posix() for p in _markdown_files()}
    assert {"README.md", "docs/plugins.md", "docs/settings.md", "plugins/README.md"} <= files
    assert len(_links()) > 20


@pytest.mark.parametrize("md, target", _links(), ids=lambda v: v.relative_to(ROOT).as_posix()
                         if isinstance(v, Path) else str(v))
def test_links_point_to_files_and_headings_that_exist(md: Path, target: str):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
        return
    path, _, anchor = target.partition("#")
    dest = (md.parent / path).resolve() if path else md
    assert dest.exists(), f"{md.relative_to(ROOT)} links to {target}: no such file"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{md.relative_to(ROOT)} links to {target}: no such heading"


# --------------------------------------------------------------------------- the front door
def test_readme_gives_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    first = "python3 -m pip install -e . && python3 -m greentrack demo"
    tests = "python3 -m pip install -e '.[test]' && python3 -m pytest -q"
    assert first in readme and tests in readme
    ci_lines = [ln.strip() for ln in ci.splitlines() if "-m pytest" in ln and not ln.lstrip().startswith("#")]
    assert [ln.replace("pip install -q ", "pip install ") for ln in ci_lines] == [tests], \
        ".ci/run must run the README's test command (pip's -q aside)"


def test_mock_default_in_the_registry_is_the_mock_sources_default():
    from greentrack.measure.sources.mock import DEFAULT_TRACE

    assert BY_ENV["GREENTRACK_MOCK"].default == DEFAULT_TRACE


# --------------------------------------------------------------------------- examples that must work
def test_the_scenario_examples_in_carbon_md_load(tmp_path: Path):
    """The TOML and JSON scenario definitions shown in docs/carbon.md are valid, as shown."""
    import json

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    from greentrack.carbon.scenarios import Catalogue

    files, conf, names = [], {"_root": str(tmp_path)}, []
    for i, (lang, body) in enumerate(re.findall(r"```(toml|json)\n(.*?)```", _read("carbon.md"), re.S)):
        if body.lstrip().startswith("[tool.greentrack"):
            table = tomllib.loads(body)["tool"]["greentrack"]
            conf.update(table)
        else:
            files.append(tmp_path / f"example{i}.{lang}")
            files[-1].write_text(body, encoding="utf-8")
            table = json.loads(body) if lang == "json" else tomllib.loads(body)
        names += list(table["scenarios"])
    assert len(files) == 2 and "scenarios" in conf
    assert {"campus", "neocloud", "campus-gpu", "lab", "onprem:FR"} <= set(names)
    cat = Catalogue.load(files, conf=conf)
    for name in names:
        sc = cat.get(name)
        assert sc.pue >= 1.0 and sc.embodied_kg_per_gpu_hour() > 0, name
    assert cat.get("campus").figures["pue"].describe() == "facility meter, 2025 annual average, 2025"
    assert cat.get("onprem:FR").value("electricity_usd_per_kwh") == 0.21


def test_the_runs_json_fields_in_reports_md_are_the_schemas_fields():
    """The field table of the greentrack.runs schema lists exactly FIELD_NAMES, in order."""
    from greentrack.views.runs import FIELD_NAMES

    text = _read("reports.md")
    table = text[text.index("| field | meaning |"):]
    table = table[:table.index("\n\n")]
    names = [n for row in table.splitlines()[2:] for n in re.findall(r"`(\w+)`", row.split("|")[1])]
    assert names == FIELD_NAMES
