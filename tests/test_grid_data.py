"""The grid table built from codecarbon's data files: rows it cannot use are skipped, the others kept.

codecarbon's data changes between releases; greentrack reads its files directly. Here a small data
folder in codecarbon's layout holds one unusable row ahead of each usable one (a country without an
intensity, an unknown Canadian province, Finland listed among the bidding zones, a cloud row without
a number), so a loop that stops at the first bad row instead of skipping it loses the rows after it.
Each test kills mutants of ``greentrack/carbon/grid.py`` the shipped data cannot tell apart.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from greentrack.carbon import grid

CACHED = (grid.world_average, grid.country_table, grid.subdivision_table, grid.cloud_table, grid._codecarbon_version)


@pytest.fixture
def fresh_tables():
    for f in CACHED:
        f.cache_clear()
    yield
    for f in CACHED:
        f.cache_clear()


def write_data(root: Path) -> Path:
    """A codecarbon data folder (``<root>/codecarbon/data``) with a bad row before each good one."""
    d = root / "codecarbon" / "data"
    (d / "private_infra" / "2023").mkdir(parents=True)
    (d / "cloud").mkdir()
    (root / "codecarbon" / "__init__.py").write_text("")
    (root / "codecarbon" / "_version.py").write_text('__version__ = "9.9.9"\n')
    (d / "private_infra" / "carbon_intensity_per_source.json").write_text(json.dumps({"world_average": 475}))
    (d / "private_infra" / "global_energy_mix.json").write_text(json.dumps({
        "AAA": {"country_name": "Nowhere", "year": 2023},
        "FRA": {"country_name": "France", "carbon_intensity": 56.0, "year": 2023},
    }))
    (d / "private_infra" / "2023" / "usa_emissions.json").write_text(json.dumps({
        "_source": {"name": "EPA eGRID test"},  # no year: 2023, the folder's
        "california": {"regionCode": "CA", "emissions": 500.0},
    }))
    (d / "private_infra" / "2023" / "canada_energy_mix.json").write_text(json.dumps({
        "atlantis": {"total": 10.0, "coal": 10.0},
        "quebec": {"total": 100.0, "coal": 0.0, "naturalGas": 10.0, "hydro": 90.0},  # no petroleum key
    }))
    (d / "private_infra" / "nordic_emissions.json").write_text(json.dumps({"data": {
        "FI": {"emission_factor": 80.0, "year": 2023, "description": "Finland"},
        "SE3": {"emission_factor": 20.0, "year": 2023, "description": "Stockholm"},
    }}))
    with open(d / "cloud" / "impact.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["provider", "providerName", "region", "country_name", "city", "impact", "source"])
        w.writerow(["gcp", "Google Cloud Platform", "broken-1", "Nowhere", "Nowhere", "n/a", "test"])
        w.writerow(["gcp", "Google Cloud Platform", "x-west1", "Atlantis", "", "321", "test"])
    return root


def test_unusable_rows_are_skipped_and_the_rest_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     fresh_tables: None) -> None:
    """Kills ``continue`` -> ``break`` in each table's loop, ``or`` -> ``and`` in the Canadian skip test, a
    missing fuel counted as 1 instead of 0, the wrong year or source on US states and provinces, and a
    codecarbon version not read from the package the data comes from."""
    data = write_data(tmp_path) / "codecarbon" / "data"
    monkeypatch.setattr(grid, "codecarbon_data_dir", lambda: data)
    assert set(grid.country_table()) == {"FRA"}
    sub = grid.subdivision_table()
    assert set(sub) == {"US-CA", "CA-QC", "SE3"}
    us = sub["US-CA"]
    assert us.g_per_kwh == pytest.approx(500.0 * 0.45359237) and us.year == 2023
    assert us.source == "EPA eGRID test via codecarbon 9.9.9"  # the version read from the data's own package
    qc = sub["CA-QC"]
    assert qc.g_per_kwh == pytest.approx(0.10 * 743.8415916) and qc.year == 2023  # gas only; no oil, no coal
    cloud = grid.cloud_table()
    assert "gcp:broken-1" not in cloud
    assert cloud["gcp:x-west1"].g_per_kwh == 321.0 and cloud["gcp:x-west1"].label == "GCP x-west1 (Atlantis)"
    assert "gcp:me-central1" not in cloud  # neither spelling in these files: no alias to make
    # mapped cloud regions: us-east-1 (Virginia) has no entry here and is skipped; us-west-1 (California) is kept
    assert "aws:us-east-1" not in cloud
    assert cloud["aws:us-west-1"].location == "US-CA" and cloud["aws:eu-west-3"].location == "FRA"


def test_mapped_cloud_region_names_where_its_location_comes_from() -> None:
    """Kills the source's provider part taken from the wrong side of ``' ('``."""
    src = grid.cloud_table()["aws:us-east-1"].source
    assert src.endswith("; region location per AWS, 'Regions and Availability Zones' 2025"), src


def _isolate_imports(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.delitem(sys.modules, "codecarbon", raising=False)
    monkeypatch.setattr(sys, "path", [str(path)])
    import importlib

    importlib.invalidate_caches()


def test_without_codecarbon_the_table_falls_back_to_the_world_average(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      fresh_tables: None) -> None:
    """Kills ``and`` for ``or`` in ``codecarbon_data_dir``: codecarbon not installed, or installed as a single
    module, or as a package without its data, gives no data folder (and the 475 g/kWh world average)."""
    _isolate_imports(monkeypatch, tmp_path)  # nothing importable as codecarbon
    assert grid.codecarbon_data_dir() is None
    w = grid.world_average()
    assert (w.g_per_kwh, w.year) == (475.0, 2019) and "via codecarbon" not in w.source
    single = tmp_path / "single"
    single.mkdir()
    (single / "codecarbon.py").write_text("")
    _isolate_imports(monkeypatch, single)
    assert grid.codecarbon_data_dir() is None
    bare = tmp_path / "bare"
    (bare / "codecarbon").mkdir(parents=True)
    (bare / "codecarbon" / "__init__.py").write_text("")
    _isolate_imports(monkeypatch, bare)
    assert grid.codecarbon_data_dir() is None


def test_a_four_letter_query_finds_a_name_containing_it() -> None:
    """Kills ``len(q) > 4`` / ``>= 5``: four letters inside a name (not at a word's start) match it."""
    assert "FRA" in [it.region for it in grid.search_regions("ranc")]
    assert "FRA" not in [it.region for it in grid.search_regions("anc")]



# ---- a plugin's answer, checked (check_intensity), and old-style hook wrappers ---------------------------

def _it(g: object = 400.0, region: object = "TEST", source: object = "a test feed",
        year: object = 2026) -> grid.Intensity:
    return grid.Intensity(region, g, source, year, "test")  # type: ignore[arg-type]


def test_a_plugins_intensity_is_accepted_from_0_to_5000_g_and_made_a_float() -> None:
    """Kills the bounds moved (``0 < g``, ``1 <= g``, ``g < 5000``) and an integer figure kept as an integer."""
    assert grid.check_intensity(_it(0.0)).g_per_kwh == 0.0
    assert grid.check_intensity(_it(5000.0)).g_per_kwh == 5000.0
    whole = grid.check_intensity(_it(400))
    assert whole.g_per_kwh == 400.0 and type(whole.g_per_kwh) is float
    same = _it(512.5)
    assert grid.check_intensity(same) is same
    assert grid.check_intensity(_it(year=None)).year is None  # a figure without a year is fine


@pytest.mark.parametrize("bad, error", [
    (_it(5000.5), ValueError), (_it(-0.5), ValueError), (_it(float("nan")), ValueError),
    (_it(True), TypeError), (_it("400"), TypeError),
    (_it(source="  "), ValueError), (_it(source=None), ValueError), (_it(region=None), ValueError),
    (_it(year="2020"), TypeError), (_it(year=True), TypeError), ("400 g", TypeError),
])
def test_a_plugins_intensity_that_breaks_a_rule_is_refused(bad: object, error: type) -> None:
    """Kills each rule loosened (``and`` for ``or``, the year's check inverted)."""
    with pytest.raises(error):
        grid.check_intensity(bad)


def test_an_old_style_hook_wrapper_that_fails_is_said_once_and_the_table_answers(capsys) -> None:
    """A hookwrapper (pluggy's old style: not isolated) that forces an answer that is no Intensity, or raises:
    said once each, and the static table gives France's figure (a raising one made every region unknown)."""
    import warnings

    import greentrack
    from greentrack import plugins
    from greentrack.notify import forget

    france = grid.lookup_static("FR")
    assert france is not None

    class Forcing:
        @greentrack.hookimpl(hookwrapper=True)
        def greentrack_grid_intensity(self, region, at):
            outcome = yield
            outcome.force_result("400 g")

    plugins.register(Forcing(), name="forcing")
    for _ in range(2):
        assert grid.lookup("FR") == france
    plugins.get_plugin_manager().unregister(name="forcing")
    first = capsys.readouterr().err
    assert first.count("greentrack: greentrack_grid_intensity failed in a hook wrapper: ") == 1
    assert "TypeError: returned str '400 g', not a greentrack Intensity" in first
    forget()  # each failure is said once per process: the next one again

    class Raising:
        @greentrack.hookimpl(hookwrapper=True)
        def greentrack_grid_intensity(self, region, at):
            yield
            raise RuntimeError("wrapper bug")

    plugins.register(Raising(), name="raising")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pluggy's PluggyTeardownRaisedWarning
        assert grid.lookup("FR") == france
        with pytest.raises(grid.UnknownRegionError):
            grid.lookup("Atlantis")
    err = capsys.readouterr().err
    assert err.count("greentrack: greentrack_grid_intensity failed in a hook wrapper: RuntimeError: wrapper bug") == 1
