"""Grid intensity: the static table against codecarbon's own arithmetic, cloud regions, the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from greentrack import plugins
from greentrack.carbon import grid
from greentrack.errors import UnknownRegionError


@pytest.fixture(scope="module")
def cc():
    """codecarbon's emission calculator, imported only here to cross-check the figures."""
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import CloudMetadata, GeoMetadata
    from codecarbon.input import DataSource

    e = Emissions(DataSource())
    one = Energy.from_energy(kWh=1)

    def region(iso3: str, name: str, reg: str) -> float:
        return e.get_region_emissions(one, GeoMetadata(country_iso_code=iso3, country_name=name, region=reg)) * 1000

    def country(iso3: str, name: str) -> float:
        return e.get_country_emissions(one, GeoMetadata(country_iso_code=iso3, country_name=name)) * 1000

    def cloud(provider: str, reg: str) -> float:
        return e.get_cloud_emissions(one, CloudMetadata(provider=provider, region=reg)) * 1000

    return {"region": region, "country": country, "cloud": cloud}


def test_country_codes_and_names_agree_with_codecarbon(cc):
    fr = [grid.lookup(r) for r in ("FR", "fra", "France", " france ")]
    assert {i.region for i in fr} == {"FRA"} and len({i.g_per_kwh for i in fr}) == 1
    assert fr[0].g_per_kwh == pytest.approx(cc["country"]("FRA", "France"))
    assert fr[0].year and "Our World in Data" in fr[0].source
    assert grid.lookup("DE").g_per_kwh == pytest.approx(cc["country"]("DEU", "Germany"))


@pytest.mark.parametrize("key,iso3,name,reg", [
    ("US-CA", "USA", "United States", "california"),
    ("us-tx", "USA", "United States", "texas"),
    ("CA-QC", "CAN", "Canada", "quebec"),
    ("CA-AB", "CAN", "Canada", "alberta"),
    ("CN-BJ", "CHN", "China", "beijing"),
    ("SE3", "SWE", "Sweden", "SE3"),
    ("NO4", "NOR", "Norway", "NO4"),
])
def test_subdivisions_match_codecarbon(cc, key, iso3, name, reg):
    it = grid.lookup(key)
    assert it.g_per_kwh == pytest.approx(cc["region"](iso3, name, reg), rel=1e-9)
    assert it.year and it.source


def test_subdivision_names_and_country_precedence():
    assert grid.lookup("California").region == "US-CA"
    assert grid.lookup("Quebec").region == "CA-QC"
    assert grid.lookup("Georgia").kind == "country"  # the country wins a name clash; US-GA names the state
    assert grid.lookup("US-GA").kind == "us-state"
    assert grid.lookup("CA").region == "CAN"  # a bare ISO-2 code is the country


def test_gcp_regions_are_codecarbons_direct_figures(cc):
    d = grid.codecarbon_data_dir()
    with open(d / "cloud" / "impact.csv", newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    for row in rows:
        it = grid.lookup(f"gcp:{row['region']}")
        assert it.g_per_kwh == float(row["impact"])
        assert it.kind == "cloud" and it.year == 2023
    assert grid.lookup("gcp:us-central1").g_per_kwh == pytest.approx(cc["cloud"]("gcp", "us-central1"))
    # codecarbon spells this region 'me-cenrtal1'; the real name answers with the same figure
    assert grid.lookup("gcp:me-central1").g_per_kwh == grid.lookup("gcp:me-cenrtal1").g_per_kwh


def test_aws_and_azure_regions_use_their_location_and_name_the_mapping():
    mapping = json.loads((grid.DATA_DIR / "cloud_regions.json").read_text())
    for provider in ("aws", "azure"):
        assert mapping[provider]["_source"] and mapping[provider]["_year"]
        for reg, info in mapping[provider].items():
            if reg.startswith("_"):
                continue
            it = grid.lookup(f"{provider}:{reg}")
            loc = grid.lookup(info["location"])
            assert it.g_per_kwh == loc.g_per_kwh, reg
            assert it.location == loc.region
            assert "region location per" in it.source
    assert grid.lookup("aws:us-east-1").location == "US-VA"
    assert grid.lookup("AWS:US-EAST-1").region == "aws:us-east-1"
    assert grid.lookup("google:europe-west9").region == "gcp:europe-west9"


def test_every_entry_names_source_and_year():
    items = grid.all_regions()
    assert len(items) > 400
    kinds = {it.kind for it in items}
    assert {"world", "country", "us-state", "ca-province", "cn-province", "bidding-zone", "cloud"} <= kinds
    for it in items:
        assert it.source and it.year, it
        assert it.g_per_kwh >= 0


def test_no_region_is_a_labelled_world_average():
    it = grid.lookup(None)
    assert it.fallback and it.label == "world average" and it.year == 2019
    assert grid.lookup("") == it


def test_unknown_region_suggests_close_matches():
    with pytest.raises(UnknownRegionError, match=r"did you mean: .*France"):
        grid.lookup("Frnace")
    with pytest.raises(UnknownRegionError, match=r"aws:us-east-1"):
        grid.lookup("aws:us-est-1")


def test_a_plugin_overrides_the_static_table():
    class Hourly:
        @plugins.hookimpl
        def greentrack_grid_intensity(self, region, at):
            if region.upper() == "FR":
                return grid.Intensity("FR", 12.5, "test hourly feed", 2026, "France (hourly)")
            return None

    plugins.register(Hourly(), name="hourly")
    assert grid.lookup("FR").g_per_kwh == 12.5
    assert grid.lookup("DE").source.startswith("Our World in Data")  # others still from the table
    plugins.unregister(name="hourly")
    assert grid.lookup("FR").g_per_kwh != 12.5


def test_import_greentrack_does_not_import_codecarbon():
    code = ("import sys, greentrack; from greentrack.carbon import grid; grid.lookup('US-CA'); "
            "grid.lookup('aws:us-east-1'); print('codecarbon' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_regions_cli_search_json_and_errors(cli):
    r = cli("regions", "virginia")
    assert r.returncode == 0, r.stderr
    assert "US-VA" in r.stdout and "aws:us-east-1" in r.stdout and "sources" in r.stdout
    r = cli("regions", "US-CA", "--format", "json")
    data = json.loads(r.stdout)
    assert data[0]["region"] == "US-CA" and data[0]["year"] == 2023 and data[0]["source"]
    r = cli("regions", "--format", "json")
    assert len(json.loads(r.stdout)) == len(grid.all_regions())
    r = cli("regions", "Frnace")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "did you mean" in r.stderr and "Traceback" not in r.stderr


def test_without_codecarbons_data_a_country_code_says_why_not_did_you_mean_itself(tmp_path):
    """A broken install (a codecarbon package without its data folder, first on the path): the regional
    figures are missing, and the message says so and how to fix it, never 'unknown region FR (did you
    mean: FR?)'; a session goes on with the labelled world average."""
    fake = tmp_path / "site" / "codecarbon"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    code = """
import os, greentrack
from greentrack.carbon import grid
for region in ("FR", "fr", "Atlantis"):
    try:
        grid.lookup(region)
    except Exception as exc:
        print(type(exc).__name__, exc)
with greentrack.session("no-data", region="FR", backend="mock", store=False) as s:
    pass
print("session", s.result.status, s.intensity.source)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    why = "the regional figures come from codecarbon's data files, which were not found (pip install codecarbon)"
    assert lines[0] == f"UnknownRegionError no grid intensity for region 'FR': {why}"
    assert lines[1] == f"UnknownRegionError no grid intensity for region 'fr': {why}"
    assert lines[2].startswith("UnknownRegionError unknown region 'Atlantis'") and "did you mean" not in lines[2]
    assert lines[3].startswith("session finished ")
    assert p.stderr.count("no grid intensity for region 'FR'") == 1 and "world average" in p.stderr
    doc = subprocess.run([sys.executable, "-m", "greentrack", "doctor"], capture_output=True, text=True, timeout=60,
                         env=env, cwd=tmp_path)
    assert doc.returncode == 0, doc.stderr
    assert "Grid intensity: codecarbon's data files were not found (pip install codecarbon)" in doc.stdout
