"""Guarantee, fuzzed (hypothesis): no scenario file, run name, phase, tag, budget or step count
breaks a run, and none makes a later ``report``, ``show`` or export fail.

Bad input is one clear line (a GreentrackError; exit 2 at the command line), never a traceback.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greentrack
from greentrack.errors import GreentrackError

FUZZ = settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")

# --- scenario files -------------------------------------------------------------------------------

keys = st.one_of(st.sampled_from(["kind", "pue", "region", "price_per_gpu_hour", "embodied_kg_per_gpu",
                                  "embodied_lifetime_years", "electricity_usd_per_kwh", "hardware_usd_per_gpu",
                                  "hardware_lifetime_years", "extends", "template", "abstract", "description",
                                  "intensity_g_per_kwh", "value", "source", "year", "gpu"]),
                 st.text(min_size=1, max_size=12))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["cloud", "onprem", "FR", "aws:us-east-1", "onprem"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
scenario_docs = st.dictionaries(st.text(min_size=1, max_size=15), st.dictionaries(keys, values, max_size=8),
                                max_size=4)


def _toml_value(v):
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _to_toml(doc) -> str:
    lines = []
    for name, body in doc.items():
        lines.append(f"[scenarios.{json.dumps(name)}]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


@FUZZ
@given(doc=scenario_docs, as_json=st.booleans())
def test_no_scenario_file_raises_anything_but_one_clear_line(doc, as_json, tmp_path):
    from greentrack.carbon.scenarios import Catalogue

    path = tmp_path / ("s.json" if as_json else "s.toml")
    try:
        text = json.dumps({"scenarios": doc}) if as_json else _to_toml(doc)
    except ValueError:
        return
    path.write_text(text, encoding="utf-8")
    try:
        cat = Catalogue.load([path], conf={})
        for name in cat.names():
            try:
                sc = cat.get(name)
                assert sc.pue >= 1.0
            except GreentrackError as exc:
                assert "\n" not in str(exc) and str(exc)
        cat.all(strict=False)
    except GreentrackError as exc:
        assert "\n" not in str(exc) and str(exc)


@FUZZ
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".toml", ".json"]))
def test_scenario_files_of_any_bytes_are_a_usage_error_at_the_command_line(data, suffix, tmp_path):
    from greentrack.cli import load_commands

    path = tmp_path / f"x{suffix}"
    path.write_bytes(data)
    res = CliRunner().invoke(load_commands(), ["compare", "--list", "--scenarios", str(path)])
    assert res.exit_code in (0, 2), res.output
    if res.exit_code == 2:
        assert res.output.count("\n") <= 2 and "Traceback" not in res.output


# --- run names, phases, tags, steps -------------------------------------------------------------------

hostile_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@FUZZ
@given(name=hostile_text, phase=hostile_text, tag_key=hostile_text, tag_value=hostile_text,
       samples=st.one_of(st.none(), st.integers(-5, 10**9), st.floats(), st.text(max_size=3), st.booleans()))
def test_no_run_name_phase_tag_or_step_count_breaks_a_run_or_a_later_report(name, phase, tag_key, tag_value,
                                                                              samples, db_path):
    from greentrack.api import query_runs, show_view
    from greentrack.views.runs import render
    from greentrack.views.show import render_show, show_json

    with greentrack.session(name, tags={tag_key: tag_value}, backend="none", region="FR") as s:
        with s.phase(phase):
            s.step(samples=samples)
    assert s.result.status == "finished" and s.result.steps == 1
    rows = query_runs(db=db_path, last=None)
    for fmt in ("table", "markdown"):
        assert not RAW.findall(render(rows, fmt).replace("\n", ""))
    json.loads(render(rows, "json"))
    for row in csv.DictReader(io.StringIO(render(rows, "csv"))):
        assert not row["name"].startswith(("=", "+", "-", "@", "\t", "\r"))
    view = show_view(s.id, db=db_path, width=30)
    assert not RAW.findall(render_show(view).replace("\n", ""))
    assert json.loads(show_json(view))["name"] == (name if name.strip() else "run")  # a blank name: the default


@pytest.mark.parametrize("name", ["", " ", "\r", "\t\n"])
def test_a_blank_run_name_gets_the_default_everywhere(name, db_path):
    """Found by the fuzz test above: a name of blanks only was stored as given, and read back as no name
    ("?", with a note), since the store's rule for a name is non-empty text."""
    from greentrack.api import query_runs, show_view
    from greentrack.views.show import show_json

    with greentrack.session(name, backend="none", region="FR") as s:
        pass
    assert s.name == "run"
    (row,) = query_runs(db=db_path, last=None)
    assert row["name"] == "run" and not any("shown as empty" in n for n in row.get("notes") or [])
    assert json.loads(show_json(show_view(s.id, db=db_path, width=30)))["name"] == "run"


@settings(deadline=None, max_examples=5, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_text, phases=st.lists(hostile_text, min_size=1, max_size=3))
def test_no_run_or_phase_name_breaks_the_html_report(name, phases, db_path):
    pytest.importorskip("matplotlib")
    from greentrack.api import html_report, query_runs

    with greentrack.session(name, backend="mock", region="FR", exact_edges=False) as s:
        for ph in phases:
            with s.phase(ph):
                s.step()
    rows = query_runs(db=db_path, last=3)
    text = html_report(rows, db=db_path, detail=1)
    assert "could not be drawn" not in text and text.rstrip().endswith("</html>")


# --- budgets ----------------------------------------------------------------------------------------

budgets = st.one_of(st.none(), st.floats(), st.integers(-10, 10**12), st.text(max_size=5), st.booleans(),
                    st.lists(st.integers(), max_size=2))


@FUZZ
@given(kwh=budgets, co2=budgets)
def test_no_budget_value_breaks_a_run(kwh, co2):
    """Any budget value: a valid one is used, anything else is one ConfigError when the session is made."""
    def valid(v):
        if v is None:
            return True
        try:
            f = float(v) if not isinstance(v, bool) else math.nan
        except (TypeError, ValueError):
            return False
        return 0 <= f < math.inf

    if not (valid(kwh) and valid(co2)):
        with pytest.raises(GreentrackError, match="must be a finite number >= 0"):
            greentrack.session("budgeted", budget_kwh=kwh, budget_co2e_kg=co2, backend="none")
        return
    with greentrack.session("budgeted", budget_kwh=kwh, budget_co2e_kg=co2, backend="none") as s:
        s.step()
    assert s.result.status == "finished"
    assert s.budget_kwh == (None if kwh is None else float(kwh))
    assert s.budget_co2e_kg == (None if co2 is None else float(co2))


@FUZZ
@given(kwh=st.floats(min_value=0, max_value=1e3), co2=st.floats(min_value=0, max_value=1e3))
def test_pytest_marker_budgets_of_any_finite_size_are_accepted(kwh, co2):
    from greentrack.pytest_plugin.energy import marker_budget

    assert marker_budget(_Item(pytest.mark.energy_budget(kwh=kwh, co2e_g=co2).mark)) == {"kwh": kwh, "co2e_g": co2}


@FUZZ
@given(val=st.one_of(st.floats(allow_nan=True), st.text(max_size=4), st.booleans(), st.just(-1)))
def test_pytest_marker_budgets_that_are_not_numbers_fail_the_test_with_one_line(val):
    from greentrack.pytest_plugin.energy import marker_budget

    Item = functools.partial(_Item, pytest.mark.energy_budget(kwh=val).mark)

    try:
        num = float(val)
    except (TypeError, ValueError):
        num = math.nan
    if not isinstance(val, bool) and 0 <= num < math.inf:
        assert marker_budget(Item()) == {"kwh": num}
        return
    with pytest.raises(pytest.fail.Exception) as info:
        marker_budget(Item())
    assert "\n" not in str(info.value)


class _Item:
    """A test item as the plugin reads it (pytest's Node: its own markers and its parent), with one marker."""

    def __init__(self, mark):
        self.own_markers = [mark]
        self.parent = None
