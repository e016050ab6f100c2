"""plugins/greentrack-mlflow installed for real (pip --target): a plain PyTorch loop's live figures on an
MLflow run in a SQLite-backed tracking store, read back with MlflowClient."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_plugin
from plain_loop import PLAIN, plain_env

from greentrack.store.sqlite import Store

pytest.importorskip("torch")
pytest.importorskip("mlflow")

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "greentrack-mlflow"

SCRIPT = PLAIN + """
import mlflow
from greentrack_mlflow import MlflowEnergy

mlflow.set_experiment("greentrack-test")
with mlflow.start_run(run_name="tiny") as ml, greentrack.session("mlflow", region="FR") as s:
    energy = MlflowEnergy(s)
    last = train(s, lambda step, loss: (mlflow.log_metric("loss", loss, step=step), energy.log(step)))
    energy.finish(last)
# no active MLflow run: reported once, the loop goes on
with greentrack.session("no-run") as s2:
    lonely = MlflowEnergy(s2)
    steps = train(s2, lambda step, loss: lonely.log(step), steps=20, sleep=0)
    lonely.finish(steps)
print("RESULT " + json.dumps({"id": s.id, "ml": ml.info.run_id, "errors": energy.errors, "lonely": lonely.errors,
                              "lonely_steps": steps, "lonely_status": s2.result.status}), flush=True)
"""


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("mlflow")
    site = install_plugin(PLUGIN_DIR, tmp)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = plain_env(site, tmp, MLFLOW_TRACKING_URI=uri, MLFLOW_ARTIFACTS_DESTINATION=str(tmp / "artifacts"))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (res,) = [json.loads(x[7:]) for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    return {**res, "tmp": tmp, "uri": uri, "stderr": out.stderr}


def test_metrics_tags_and_report_on_the_mlflow_run(logged: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(logged["uri"])
    run = Store(logged["tmp"] / "runs.db").get_run(logged["id"])
    energy = sorted(client.get_metric_history(logged["ml"], "greentrack/energy_j"), key=lambda m: (m.step, m.timestamp))
    # with step=: every 10 steps, then the closing interval at the last step
    assert [m.step for m in energy] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100]
    assert sum(m.value for m in energy) == pytest.approx(run["energy_j"], rel=0.01)
    per_sample = {m.step: m.value for m in client.get_metric_history(logged["ml"], "greentrack/j_per_sample")}
    for m in energy[:-1]:
        assert per_sample[m.step] == pytest.approx(m.value / 80, rel=1e-6)
    kwh = [m.value for m in sorted(client.get_metric_history(logged["ml"], "greentrack/energy_kwh"),
                                   key=lambda m: (m.step, m.timestamp))]
    assert kwh == sorted(kwh) and len(kwh) == 11
    ml = client.get_run(logged["ml"])
    assert ml.data.metrics["greentrack/total_energy_j"] == pytest.approx(run["energy_j"])
    assert ml.data.metrics["greentrack/total_co2e_kg"] == pytest.approx(run["co2e_kg"])
    tags = ml.data.tags
    (eval_phase,) = [p for p in run["phases"] if p["name"] == "eval"]
    assert tags["greentrack.run_id"] == logged["id"] and tags["greentrack.status"] == "finished"
    assert float(tags["greentrack.energy_kwh"]) == pytest.approx(run["energy_j"] / 3.6e6, rel=1e-5)
    assert float(tags["greentrack.phase.eval_j"]) == pytest.approx(eval_phase["energy_j"], rel=1e-5)
    assert tags["greentrack.intensity"].startswith(f"{run['intensity_g_per_kwh']:g} gCO2e/kWh (")
    # the HTML report, as an artifact of the run
    (art,) = client.list_artifacts(logged["ml"], "greentrack")
    assert art.path == f"greentrack/report-{logged['id']}.html"
    local = client.download_artifacts(logged["ml"], art.path, str(logged["tmp"]))
    html = Path(local).read_text()
    assert html.startswith("<!doctype html>") and logged["id"] in html
    assert logged["errors"] == []


def test_no_active_run_is_reported_once_and_the_loop_goes_on(logged: dict) -> None:
    assert logged["lonely_steps"] == 20 and logged["lonely_status"] == "finished"
    assert logged["lonely"] == ["init: RuntimeError: no active MLflow run and no run_id given"]
    said = [x for x in logged["stderr"].splitlines() if x.startswith("greentrack: mlflow:")]
    assert said == ["greentrack: mlflow: init: RuntimeError: no active MLflow run and no run_id given "
                    "(logging stopped; training goes on)"]
