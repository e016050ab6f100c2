"""plugins/greentrack-wandb installed for real (pip --target): a plain PyTorch loop's live figures in an
offline Weights & Biases run, read back from the run's own file (run-<id>.wandb)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import install_plugin
from plain_loop import PLAIN, plain_env

from greentrack.store.sqlite import Store

pytest.importorskip("torch")
pytest.importorskip("wandb")

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "greentrack-wandb"

SCRIPT = PLAIN + """
import wandb
from greentrack_wandb import WandbEnergy

run = wandb.init(project="greentrack-test", mode="offline", dir=sys.argv[1])
with greentrack.session("wandb", region="FR") as s:
    energy = WandbEnergy(s, run)
    last = train(s, lambda step, loss: (run.log({"loss": loss}, step=step), energy.log(step)))
    energy.finish(last)
run.finish()
# no W&B run: reported once, the loop goes on
with greentrack.session("no-run") as s2:
    lonely = WandbEnergy(s2)
    steps = train(s2, lambda step, loss: lonely.log(step), steps=20, sleep=0)
    lonely.finish(steps)
print("RESULT " + json.dumps({"id": s.id, "errors": energy.errors, "lonely": lonely.errors, "lonely_steps": steps}),
      flush=True)
"""


def wandb_records(path: Path) -> Iterator[Any]:
    """The records of a W&B run file: a LevelDB-style log (32 KiB blocks, 7-byte record headers) of protobufs."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:
            break
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # full, or last part
            rec = pb.Record()
            rec.ParseFromString(buf + chunk if kind == 4 else chunk)
            yield rec
        buf = chunk if kind == 2 else (buf + chunk if kind == 3 else b"")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("wandb")
    site = install_plugin(PLUGIN_DIR, tmp)
    env = plain_env(site, tmp, WANDB_SILENT="true", WANDB_MODE="offline", WANDB_DIR=str(tmp))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp)], env=env, cwd=tmp, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (res,) = [json.loads(x[7:]) for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    (path,) = (tmp / "wandb").glob("offline-run-*/run-*.wandb")
    history, summary, artifacts = [], {}, []
    for rec in wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "artifact":
            artifacts.append(rec.artifact)
    return {**res, "tmp": tmp, "stderr": out.stderr, "history": history, "summary": summary, "artifacts": artifacts}


def test_history_summary_and_report_artifact(logged: dict) -> None:
    run = Store(logged["tmp"] / "runs.db").get_run(logged["id"])
    rows = [h for h in logged["history"] if "greentrack/energy_j" in h]
    # every 10 steps in the rows of the user's own logs (loss), then the closing interval one step later
    assert [h["_step"] for h in rows] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 101]
    assert all("loss" in h for h in rows[:-1])
    assert sum(h["greentrack/energy_j"] for h in rows) == pytest.approx(run["energy_j"], rel=0.01)
    for h in rows[:-1]:
        assert h["greentrack/j_per_step"] == pytest.approx(h["greentrack/energy_j"] / 10, rel=1e-6)
        assert h["greentrack/j_per_sample"] == pytest.approx(h["greentrack/energy_j"] / 80, rel=1e-6)
    kwh = [h["greentrack/energy_kwh"] for h in rows]
    assert kwh == sorted(kwh)
    summary = logged["summary"]
    (eval_phase,) = [p for p in run["phases"] if p["name"] == "eval"]
    assert summary["greentrack/total_energy_j"] == pytest.approx(run["energy_j"])
    assert summary["greentrack/total_co2e_kg"] == pytest.approx(run["co2e_kg"])
    assert summary["greentrack/phase/eval_j"] == pytest.approx(eval_phase["energy_j"])
    assert summary["greentrack/run_id"] == logged["id"] and summary["greentrack/status"] == "finished"
    assert summary["greentrack/intensity_g_per_kwh"] == run["intensity_g_per_kwh"]
    assert summary["greentrack/intensity_source"] == run["intensity_source"]
    (art,) = logged["artifacts"]
    assert art.type == "greentrack-report" and art.name == f"greentrack-report-{logged['id']}"
    assert [c.path for c in art.manifest.contents] == [f"report-{logged['id']}.html"]
    assert logged["errors"] == []


def test_no_run_is_reported_once_and_the_loop_goes_on(logged: dict) -> None:
    assert logged["lonely_steps"] == 20
    assert logged["lonely"] == ["init: RuntimeError: no W&B run: call wandb.init() first or pass run="]
    said = [x for x in logged["stderr"].splitlines() if x.startswith("greentrack: wandb:")]
    assert len(said) == 1 and "training goes on" in said[0]
