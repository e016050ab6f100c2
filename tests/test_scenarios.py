"""Scenarios: shipped data with sourced figures, templates, overrides from pyproject, files and plugins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from greentrack import plugins
from greentrack.carbon import grid, scenarios
from greentrack.carbon.scenarios import HOURS_PER_YEAR, Catalogue, ScenarioError
from greentrack.errors import NotFoundError, UnknownRegionError


def test_every_shipped_figure_names_source_and_year():
    data = json.loads((grid.DATA_DIR / "scenarios.json").read_text())["scenarios"]
    seen = 0
    for name, raw in data.items():
        for key, val in raw.items():
            if key in scenarios.FIGURES:
                assert isinstance(val, dict), (name, key)
                assert val["source"] and isinstance(val["year"], int) and 2015 <= val["year"] <= 2026, (name, key)
                seen += 1
    assert seen >= 12


def test_every_shipped_scenario_builds_with_known_gpu_and_region():
    from greentrack.carbon.estimate import find_gpu

    items = scenarios.Catalogue.load().all()
    assert {"aws:us-east-1", "azure:eastus", "gcp:us-central1", "onprem:FR", "onprem"} <= {s.name for s in items}
    assert "embodied-bloom" not in {s.name for s in items}  # abstract: only shared figures
    for s in items:
        assert s.kind in ("cloud", "onprem") and s.origin == "built-in"
        assert s.pue >= 1.0
        assert s.intensity().g_per_kwh > 0
        if s.gpu:
            find_gpu(s.gpu)
        for f in s.figures.values():
            assert f.source and f.year


def test_templates_put_the_same_figures_on_another_grid():
    cat = Catalogue.load()
    de = cat.get("onprem:DE")
    assert de.region == "DE" and de.intensity() == grid.lookup("DE")
    assert de.figures == cat.get("onprem").figures
    west = cat.get("aws:eu-west-1")
    assert west.region == "aws:eu-west-1" and west.intensity() == grid.lookup("aws:eu-west-1")
    assert west.value("price_per_gpu_hour") == cat.get("aws").value("price_per_gpu_hour")
    with pytest.raises(UnknownRegionError, match="did you mean"):
        cat.get("aws:eu-wst-1")
    with pytest.raises(NotFoundError, match="did you mean: onprem"):
        cat.get("onprme")


def test_costs_and_embodied_follow_the_figures():
    cat = Catalogue.load()
    op = cat.get("onprem:FR")
    hw_per_h = op.value("hardware_usd_per_gpu") / (op.value("hardware_lifetime_years") * HOURS_PER_YEAR
                                                   * op.value("hardware_use_rate"))
    cost = op.cost_usd(facility_kwh=100.0, gpu_hours=10.0)
    assert cost["electricity"] == pytest.approx(100.0 * op.value("electricity_usd_per_kwh"))
    assert cost["hardware"] == pytest.approx(10.0 * hw_per_h)
    assert cost["total"] == pytest.approx(cost["electricity"] + cost["hardware"])
    aws = cat.get("aws:us-east-1")
    assert aws.cost_usd(100.0, 10.0)["total"] == pytest.approx(10.0 * aws.value("price_per_gpu_hour"))
    assert aws.hardware_usd_per_gpu_hour() == 0.0
    emb = aws.value("embodied_kg_per_gpu") / (aws.value("embodied_lifetime_years") * HOURS_PER_YEAR
                                               * aws.value("embodied_use_rate"))
    assert aws.embodied_kg_per_gpu_hour() == pytest.approx(emb)


def test_pyproject_adds_and_overrides_scenarios(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.greentrack.scenarios."onprem:FR"]\n'
        'electricity_usd_per_kwh = { value = 0.21, source = "our 2026 contract", year = 2026 }\n'
        "[tool.greentrack.scenarios.lab]\n"
        'extends = "onprem"\nregion = "CA-QC"\npue = 1.3\n'
        'description = "the lab cluster"\n')
    cat = Catalogue.load()
    fr = cat.get("onprem:FR")
    assert fr.value("electricity_usd_per_kwh") == 0.21 and fr.origin == "pyproject.toml"
    assert fr.figures["electricity_usd_per_kwh"].source == "our 2026 contract"
    assert fr.value("pue") == cat.get("onprem").value("pue")  # the other keys are kept
    lab = cat.get("lab")
    assert lab.pue == 1.3 and lab.figures["pue"].source == "set in pyproject.toml"
    assert lab.intensity().region == "CA-QC"
    assert lab.value("hardware_usd_per_gpu") == cat.get("onprem").value("hardware_usd_per_gpu")


def test_a_plugin_registers_and_overrides_scenarios():
    class Ours:
        @plugins.hookimpl
        def greentrack_register_scenarios(self, register):
            register({"kind": "cloud", "region": "SE3", "pue": 1.05, "price_per_gpu_hour": 2.0,
                      "embodied_kg_per_gpu": 300, "embodied_lifetime_years": 5}, name="neocloud:se")
            register({"price_per_gpu_hour": {"value": 6.0, "source": "negotiated", "year": 2026}}, name="aws")

    plugins.register(Ours(), name="ours")
    cat = Catalogue.load()
    neo = cat.get("neocloud:se")
    assert neo.origin.startswith("plugin") and neo.intensity().region == "SE3"
    assert cat.get("aws").value("price_per_gpu_hour") == 6.0
    assert cat.get("aws:us-east-1").value("price_per_gpu_hour") == 6.0  # extends sees the override
    plugins.unregister(name="ours")
    assert Catalogue.load().get("aws").value("price_per_gpu_hour") != 6.0


@pytest.mark.parametrize("body,message", [
    ('[scenarios.x]\nkind = "cloud"\nregion = "FR"\nprice_per_gpu_hour = 2\n'
     "embodied_kg_per_gpu = 1\nembodied_lifetime_years = 4\n", "missing field 'pue'"),
    ('[scenarios.x]\nregion = "FR"\npue = 1.2\n', "missing field 'kind'"),
    ('[scenarios.x]\nextends = "onprem"\npeu = 1.2\n', "unknown field 'peu' (did you mean: pue"),
    ('[scenarios.x]\nextends = "onprem"\npue = 0.8\n', "pue = 0.8 must be between 1 and 5"),
    ('[scenarios.x]\nextends = "onprem"\npue = "high"\n', "pue must be a number"),
    ('[scenarios.x]\nextends = "onprme"\n', "extends unknown scenario 'onprme'"),
    ('[scenarios.x]\nkind = "edge"\n', "kind must be cloud or onprem"),
    ('[scenarios.x\n', "cannot parse scenario file"),
])
def test_bad_scenario_files_give_one_clear_line(tmp_path: Path, body: str, message: str):
    f = tmp_path / "sc.toml"
    f.write_text(body)
    with pytest.raises(ScenarioError) as exc:
        Catalogue.load([f]).get("x")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_json_scenario_file(tmp_path: Path):
    f = tmp_path / "sc.json"
    f.write_text(json.dumps({"scenarios": {"cheap": {"extends": "gcp", "price_per_gpu_hour": 1.0}}}))
    s = scenarios.Catalogue.load([f]).get("cheap")
    assert s.value("price_per_gpu_hour") == 1.0 and s.origin == str(f)


def test_compare_list_cli(cli, tmp_path: Path):
    r = cli("compare", "--list")
    assert r.returncode == 0, r.stderr
    assert "onprem:<region>" in r.stdout and "aws:us-east-1" in r.stdout
    r = cli("compare", "--list", "--format", "json")
    names = {s["name"] for s in json.loads(r.stdout)}
    assert "gcp:us-central1" in names
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenarios.mine]\nkind = "onprem"\nregion = "FR"\npue = 1.4\n')
    r = cli("compare", "last", "--scenarios", str(bad), "-s", "mine")
    assert r.returncode == 2
    assert "missing field 'electricity_usd_per_kwh'" in r.stderr and "Traceback" not in r.stderr
