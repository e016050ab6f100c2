"""plugins/greentrack-lightning installed for real (pip --target), training a tiny Lightning model on CPU.

What the Trainer's loggers wrote (CSVLogger's metrics.csv) is read back and checked against
the runs greentrack stored: the logged interval energies add up to the stored total.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_plugin

from greentrack.store.sqlite import Store

pytest.importorskip("lightning")

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "greentrack-lightning"

# a tiny regression model; each step sleeps 20 ms so that a run lasts a few seconds and the
# edges of the mock's power series (one 20 ms tick each) stay small against its total
TINY = """
import json, sys, time
import torch
import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from greentrack_lightning import GreentrackCallback

class Tiny(pl.LightningModule):
    def __init__(self, lr=0.05, hidden=8, optim={"name": "sgd", "momentum": 0.0}):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def _loss(self, batch):
        time.sleep(0.02)
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch, i):
        loss = self._loss(batch)
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, i):
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, i):
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

def loader(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)

def trainer(out, cb, **kw):
    return pl.Trainer(accelerator="cpu", enable_progress_bar=False, enable_checkpointing=False,
                      enable_model_summary=False, logger=CSVLogger(out, name="tiny"), callbacks=[cb], **kw)
"""

# fit (with validation every 30 steps, 2 gradient-accumulation micro-batches a step) then test;
# then a fit whose session cannot start (strict, database inside a regular file)
FIT = TINY + """
out, blocked_db = sys.argv[1], sys.argv[2]
cb = GreentrackCallback(region="FR", tags={"dataset": "random"}, seq_len=16)
t = trainer(out, cb, max_steps=60, log_every_n_steps=10, val_check_interval=60, limit_val_batches=5,
            accumulate_grad_batches=2)
model = Tiny()
t.fit(model, loader(800, 1), loader(40, 2))
fit = {"id": cb.result.run_id, "errors": cb.errors, "log_dir": t.logger.log_dir, "last": cb.last_logged,
       "phases": cb.phase_energy_j}
t.test(model, loader(20, 3))
test = {"id": cb.result.run_id, "errors": cb.errors}
bad = GreentrackCallback("strict", db=blocked_db, strict=True)
t2 = trainer(out + "/strict", bad, max_steps=6, log_every_n_steps=2)
t2.fit(Tiny(), loader(40, 1))
print("RESULT " + json.dumps({"fit": fit, "test": test, "strict": {"errors": bad.errors, "result": bad.result,
                                                                  "global_step": t2.global_step,
                                                                  "log_dir": t2.logger.log_dir}}), flush=True)
"""

# two ranks of CPU DDP (gloo) under torchrun, each measuring its own (mock) GPU
DDP = TINY + """
cb = GreentrackCallback("ddp", per_rank=True)
t = trainer(sys.argv[1], cb, max_steps=60, log_every_n_steps=10, devices=2, strategy="ddp")
t.fit(Tiny(), loader(800, 1))
with open(f"{sys.argv[1]}/result-{t.global_rank}.json", "w") as fh:  # the ranks' stdout lines can interleave
    json.dump({"rank": t.global_rank, "run": cb.result.run_id, "errors": cb.errors, "collectives": cb.collectives,
               "log_dir": t.logger.log_dir}, fh)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = install_plugin(PLUGIN_DIR, tmp_path_factory.mktemp("lightning-install"))
    assert (target / "greentrack_lightning" / "callback.py").is_file()
    return target


def _env(site: Path, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENTRACK_")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
               GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="load:60,300", GREENTRACK_FLUSH_INTERVAL="0.5",
               GREENTRACK_DB=str(tmp / "runs.db"), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    return env


def _results(out: subprocess.CompletedProcess[str]) -> list[dict]:
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(x[7:]) for x in out.stdout.splitlines() if x.startswith("RESULT ")]


def _rows(log_dir: str, runs: int = 1) -> list[dict[str, float]]:
    """The rows of CSVLogger's file, up to the closing row of the *runs*-th run (trainer.test() appends its own)."""
    out: list[dict[str, float]] = []
    with open(Path(log_dir) / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out.append({k: float(v) for k, v in row.items() if v != ""})
            runs -= "greentrack/total_energy_j" in out[-1]
            if runs == 0:
                break
    return out


@pytest.fixture(scope="module")
def fitted(site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("lightning-fit")
    blocker = tmp / "plain-file"
    blocker.write_text("not a folder\n")
    out = subprocess.run([sys.executable, "-c", FIT, str(tmp / "logs"), str(blocker / "runs.db")],
                         env=_env(site, tmp), cwd=tmp, capture_output=True, text=True, timeout=300)
    (res,) = _results(out)
    return {**res, "tmp": tmp, "stderr": out.stderr, "blocker": blocker}


def test_live_figures_reach_the_csv_logger_and_add_up(fitted: dict) -> None:
    store = Store(fitted["tmp"] / "runs.db")
    run = store.get_run(fitted["fit"]["id"])
    rows = _rows(fitted["fit"]["log_dir"])
    live = [r for r in rows if "greentrack/energy_j" in r]
    # log_every_n_steps=10 of 60 optimizer steps: 6 logging steps, then the closing row at the end
    assert [int(r["step"]) for r in live] == [9, 19, 29, 39, 49, 59, 60]
    assert all(r["greentrack/energy_j"] > 0 for r in live)
    # the interval energies add up to the stored (counter-reconciled) total within 1 %
    assert sum(r["greentrack/energy_j"] for r in live) == pytest.approx(run["energy_j"], rel=0.01)
    # cumulative kWh grows and ends at the total; CO2e is France's intensity times it
    kwh = [r["greentrack/energy_kwh"] for r in live]
    assert kwh == sorted(kwh) and kwh[-1] == pytest.approx(run["energy_j"] / 3.6e6, rel=0.01)
    assert live[-1]["greentrack/co2e_g"] == pytest.approx(kwh[-1] * run["intensity_g_per_kwh"], rel=1e-4)
    # 10 steps of 2 micro-batches of 4 samples, 16 tokens each, per logging interval
    for r in live[:-1]:
        assert r["greentrack/j_per_step"] == pytest.approx(r["greentrack/energy_j"] / 10, rel=1e-5)
        assert r["greentrack/j_per_sample"] == pytest.approx(r["greentrack/energy_j"] / 80, rel=1e-5)
        assert r["greentrack/j_per_token"] == pytest.approx(r["greentrack/energy_j"] / 1280, rel=1e-5)
        assert 60 <= r["greentrack/power_w"] <= 300 * 1.5  # the mock draws 60 W idle, 300 W busy
    # the closing row carries the reconciled totals, equal to the stored run's
    final = live[-1]
    assert final["greentrack/total_energy_j"] == pytest.approx(run["energy_j"], rel=1e-6)
    assert final["greentrack/total_co2e_kg"] == pytest.approx(run["co2e_kg"], rel=1e-6)
    assert final["greentrack/phase/validate_j"] == pytest.approx(
        sum(p["energy_j"] for p in run["phases"] if p["name"] == "validate"), rel=1e-5)
    assert fitted["fit"]["errors"] == [] and fitted["test"]["errors"] == []


def test_run_is_named_tagged_and_phased(fitted: dict) -> None:
    store = Store(fitted["tmp"] / "runs.db")
    fit, test = store.get_run(fitted["fit"]["id"]), store.get_run(fitted["test"]["id"])
    assert fit["name"] == test["name"] == "tiny/version_0"
    assert fit["status"] == "finished" and fit["steps"] == 60 and fit["samples"] == 480 and fit["tokens"] == 480 * 16
    assert fit["tags"] == {"dataset": "random", "hidden": "8", "lightning_run": "tiny/version_0", "lr": "0.05",
                           "model": "Tiny", "optim.momentum": "0.0", "optim.name": "sgd", "precision": "32-true",
                           "stage": "fit"}
    # the sanity check (2 batches) and two validations of 5 batches (every 60 micro-batches), each a phase
    assert [p["name"] for p in fit["phases"]] == ["sanity_check", "validate", "validate"]
    for p in fit["phases"]:
        assert p["energy_j"] > 0 and p["ended_at"] - p["started_at"] > 0.04
    # each validation loop's live energy, logged when it ended, is the stored phase's within 5 %
    logged = [r["greentrack/validate/energy_j"] for r in _rows(fitted["fit"]["log_dir"])
              if "greentrack/validate/energy_j" in r]
    assert len(logged) == 2
    for e, p in zip(logged, fit["phases"][1:]):
        assert e == pytest.approx(p["energy_j"], rel=0.05)
    # trainer.test(): its own run, one "test" phase, its closing row after the fit's in the same file
    assert test["tags"]["stage"] == "test" and test["steps"] == 0
    assert [p["name"] for p in test["phases"]] == ["test"] and test["phases"][0]["energy_j"] > 0
    closing = [r for r in _rows(fitted["fit"]["log_dir"], runs=2) if "greentrack/total_energy_j" in r]
    assert closing[1]["greentrack/total_energy_j"] == pytest.approx(test["energy_j"], rel=1e-6)
    assert closing[1]["greentrack/phase/test_j"] == pytest.approx(test["phases"][0]["energy_j"], rel=1e-6)


def test_failing_session_does_not_break_training(fitted: dict) -> None:
    strict = fitted["strict"]
    assert strict["global_step"] == 6 and strict["result"] is None
    assert len(strict["errors"]) == 1 and strict["errors"][0].startswith("setup: ")
    said = [x for x in fitted["stderr"].splitlines() if x.startswith("greentrack: lightning:")]
    assert len(said) == 1 and "training goes on" in said[0] and str(fitted["blocker"]) in said[0]
    assert "Traceback" not in fitted["stderr"]
    rows = _rows(strict["log_dir"])
    assert any("loss" in r for r in rows) and not any(k.startswith("greentrack/") for r in rows for k in r)


def test_ddp_job_totals_are_the_sum_of_the_ranks(site: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed.run")
    db = tmp_path / "runs.db"
    Store(db).close()  # created first: two processes creating one database at once can collide on WAL
    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tmp_path / "logs")], env=_env(site, tmp_path, GREENTRACK_MOCK_GPUS="2"),
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads((tmp_path / "logs" / f"result-{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["rank"] for r in results) == [0, 1] and all(r["errors"] == [] for r in results)
    # one all-reduce per logging step (6) and one at the end, never per step (60)
    assert [r["collectives"] for r in results] == [7, 7]
    store = Store(db)
    runs = {r["rank"]: store.get_run(r["id"]) for r in store.list_runs(last=None)}
    assert sorted(runs) == [0, 1] and [d["key"] for d in runs[1]["devices"]] == ["gpu1"]
    stored_total = runs[0]["energy_j"] + runs[1]["energy_j"]
    (rank0,) = [r for r in results if r["rank"] == 0]
    live = [r for r in _rows(rank0["log_dir"]) if "greentrack/energy_j" in r]  # only rank 0 writes
    assert [int(r["step"]) for r in live] == [9, 19, 29, 39, 49, 59, 60]
    # the job totals logged by rank 0: the sum of the two stored runs
    assert live[-1]["greentrack/total_energy_j"] == pytest.approx(stored_total, rel=0.01)
    assert sum(r["greentrack/energy_j"] for r in live) == pytest.approx(stored_total, rel=0.01)
    # each rank's own figures too, adding up to the job's interval; samples are both ranks' (2 x 10 x 4)
    for r in live:
        assert r["greentrack/rank0/energy_j"] + r["greentrack/rank1/energy_j"] == pytest.approx(
            r["greentrack/energy_j"], rel=1e-5)
    for r in live[:-1]:
        assert r["greentrack/j_per_sample"] == pytest.approx(r["greentrack/energy_j"] / 80, rel=1e-5)
    for rank, run in runs.items():
        assert run["samples"] == 240 and run["steps"] == 60
        assert sum(r[f"greentrack/rank{rank}/energy_j"] for r in live) == pytest.approx(run["energy_j"], rel=0.01)


def test_import_without_lightning_is_a_clear_error(site: Path, tmp_path: Path) -> None:
    code = "import sys; sys.modules['lightning'] = None; import greentrack_lightning"
    out = subprocess.run([sys.executable, "-c", code], env=_env(site, tmp_path), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: greentrack-lightning needs the 'lightning' package")


def test_gpu_benchmark_dry_run(tmp_path: Path) -> None:
    """benchmarks/gpu_lightning.py (to run on a GPU machine) runs end to end on CPU with the mock GPU."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_lightning.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENTRACK_")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", GREENTRACK_DB=str(tmp_path / "unused.db"))
    out = subprocess.run([sys.executable, str(script), "--dry-run", "--reps", "1", "--steps", "60", "--log-every", "20",
                          "--out", str(tmp_path / "out.json")], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((tmp_path / "out.json").read_text())
    assert res["dry_run"] is True and res["reps"] == 1 and res["device"] == "cpu (mock GPU)"
    (row,) = res["rows"]
    assert row["bare"]["steps"] == row["greentrack"]["steps"] == 60
    # 3 logging steps + closing; the whole loop takes ~0.15 s, so on a loaded machine the first log (step 20, ~50 ms
    # in) can come before the mock's first sample: that interval is not logged and the next one starts where it did
    assert row["greentrack"]["logged_intervals"] in (3, 4) and row["greentrack"]["errors"] == []
    assert row["greentrack"]["logged_sum_j"] == pytest.approx(row["greentrack"]["stored_total_j"], rel=0.05)
    assert res["logged_vs_stored_pct"] == [row["greentrack"]["logged_vs_stored_pct"]]
