"""compare: a measured run (mock GPUs, real SQLite) replayed under scenarios, library and CLI."""

from __future__ import annotations

import json
import time

import pytest

import greentrack
from greentrack import api
from greentrack.carbon import compare as cmp
from greentrack.carbon import grid
from greentrack.carbon.scenarios import Catalogue
from greentrack.errors import GreentrackError, NotFoundError
from greentrack.store.sqlite import open_store
from greentrack.views import compare as cmp_views


@pytest.fixture
def run_id(monkeypatch: pytest.MonkeyPatch, run_cache) -> str:
    """A finished run on two mock GPUs at a constant 300 W, on the aws:us-east-1 grid (built once, copied)."""
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:300")
    monkeypatch.setenv("GREENTRACK_MOCK_GPUS", "2")

    def build() -> str:
        with greentrack.session("cmp-train", region="aws:us-east-1", backend="mock") as s:
            for _ in range(5):
                time.sleep(0.06)
                s.step(samples=8)
        assert s.result.energy_j and s.result.energy_j > 0
        return s.result.run_id

    return run_cache("compare-run", build)


def test_replay_follows_each_scenarios_figures(run_id: str):
    run = open_store().get_run(run_id)
    assert run["region"] == "aws:us-east-1"
    c = cmp.compare_run(run, ["aws:us-east-1", "onprem:FR", "gcp:europe-west9"])
    assert [r.scenario for r in c.rows] == ["measured", "aws:us-east-1", "onprem:FR", "gcp:europe-west9"]
    assert c.n_gpus == 2
    it_kwh = run["energy_j"] / 3.6e6
    gpu_hours = 2 * run["duration_s"] / 3600
    cat = Catalogue.load()
    measured = c.rows[0]
    assert measured.operational_kg == pytest.approx(run["co2e_kg"])
    assert measured.cost_usd is None and measured.embodied_kg is None
    for row in c.rows[1:]:
        sc = cat.get(row.scenario)
        g = grid.lookup(sc.region).g_per_kwh
        assert row.it_kwh == pytest.approx(it_kwh)
        assert row.facility_kwh == pytest.approx(it_kwh * sc.pue)
        assert row.operational_kg == pytest.approx(it_kwh * sc.pue * g / 1000)
        assert row.embodied_kg == pytest.approx(gpu_hours * sc.embodied_kg_per_gpu_hour())
        assert row.cost_usd == pytest.approx(sc.cost_usd(it_kwh * sc.pue, gpu_hours)["total"])
    scen = c.rows[1:]
    assert c.cheapest == min(scen, key=lambda r: r.cost_usd).scenario
    assert c.cleanest == min(scen, key=lambda r: r.total_kg).scenario
    # the same grid as measured, plus PUE: the cloud replay emits exactly PUE times the measured CO2e
    assert c.rows[1].operational_kg == pytest.approx(measured.operational_kg * cat.get("aws").pue)
    assert any("Mock GPU" in n for n in c.notes)  # scenarios price H100/A100, the run used mock GPUs


def test_compare_from_store_and_renderers(run_id: str):
    c = api.compare(run_id[:6], ["onprem:DE", "azure:swedencentral"])
    text = cmp_views.render_text(c)
    assert "cheapest: " in text and "cleanest" in text and "grid figures:" in text
    assert "onprem:DE" in text and "azure:swedencentral" in text
    html = cmp_views.render_html(c)
    assert html.startswith('<table class="greentrack-compare">') and "cheapest" in html
    d = c.as_dict()
    assert json.loads(json.dumps(d))["rows"][1]["scenario"] == "onprem:DE"


def test_compare_cli_text_and_json(run_id: str, cli):
    r = cli("compare", "last", "-s", "aws:us-east-1", "-s", "onprem:FR")
    assert r.returncode == 0, r.stderr
    assert "cheapest:" in r.stdout and "kgCO2e total" in r.stdout
    r = cli("compare", run_id, "-s", "gcp:us-central1", "-s", "onprem:SE3", "--format", "json")
    data = json.loads(r.stdout)
    assert data["run_id"] == run_id and data["cheapest"] in ("gcp:us-central1", "onprem:SE3")
    assert {row["scenario"] for row in data["rows"]} == {"measured", "gcp:us-central1", "onprem:SE3"}
    r = cli("compare", "last", "-s", "onprem:Frnace")
    assert r.returncode == 2 and "did you mean" in r.stderr and "Traceback" not in r.stderr
    r = cli("compare", "nosuchrun", "-s", "onprem")
    assert r.returncode == 2 and r.stderr.startswith("greentrack: error:") and "Traceback" not in r.stderr
    r = cli("compare", "last")
    assert r.returncode == 2 and "--scenario" in r.stderr


def test_a_run_without_energy_cannot_be_replayed(monkeypatch: pytest.MonkeyPatch):
    with greentrack.session("no-energy", backend="none") as s:
        time.sleep(0.01)
    run = open_store().get_run(s.result.run_id)
    assert run["energy_j"] is None
    with pytest.raises(GreentrackError, match="no measured energy"):
        cmp.compare_run(run, ["onprem"])
    with pytest.raises(NotFoundError):
        api.compare(s.result.run_id, ["nope"])
