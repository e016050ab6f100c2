"""plugins/greentrack-tensorboard installed for real (pip --target): a plain PyTorch loop's live figures
written through torch.utils.tensorboard's SummaryWriter, read back from the event files."""

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
pytest.importorskip("tensorboard")

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "greentrack-tensorboard"

SCRIPT = PLAIN + """
from torch.utils.tensorboard import SummaryWriter
from greentrack_tensorboard import TensorBoardEnergy

out, blocked = sys.argv[1], sys.argv[2]
with greentrack.session("tb", region="FR") as s, SummaryWriter(out + "/tb") as writer:
    energy = TensorBoardEnergy(writer, s)
    last = train(s, lambda step, loss: (writer.add_scalar("loss", loss, step), energy.log(step)))
    final = energy.finish(last)
# a log directory that cannot be made: reported once, the loop goes on
with greentrack.session("tb-broken") as s2:
    broken = TensorBoardEnergy(blocked + "/tb", s2)
    steps = train(s2, lambda step, loss: broken.log(step), steps=20, sleep=0)
    broken.finish(steps)
print("RESULT " + json.dumps({"id": s.id, "errors": energy.errors, "final": final, "broken": broken.errors,
                              "broken_steps": steps, "broken_status": s2.result.status}), flush=True)
"""


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("tensorboard")
    site = install_plugin(PLUGIN_DIR, tmp)
    blocker = tmp / "plain-file"
    blocker.write_text("not a folder\n")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp), str(blocker)], env=plain_env(site, tmp),
                         cwd=tmp, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (res,) = [json.loads(x[7:]) for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    return {**res, "tmp": tmp, "stderr": out.stderr}


def test_scalars_in_the_event_files_add_up_to_the_stored_run(logged: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Store(logged["tmp"] / "runs.db").get_run(logged["id"])
    acc = EventAccumulator(str(logged["tmp"] / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    energy = acc.Scalars("greentrack/energy_j")
    # every 10 steps, then the closing interval at the last step
    assert [e.step for e in energy] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100]
    assert sum(e.value for e in energy) == pytest.approx(run["energy_j"], rel=0.01)
    assert len(acc.Scalars("loss")) == 10
    kwh = [e.value for e in acc.Scalars("greentrack/energy_kwh")]
    assert kwh == sorted(kwh)
    # per step and per sample over each interval: 10 steps of 8 samples of 32 tokens
    for e, per_step, per_token in zip(energy[:-1], acc.Scalars("greentrack/j_per_step"),
                                      acc.Scalars("greentrack/j_per_token")):
        assert per_step.value == pytest.approx(e.value / 10, rel=1e-5)
        assert per_token.value == pytest.approx(e.value / 2560, rel=1e-5)
    assert acc.Scalars("greentrack/total_energy_j")[-1].value == pytest.approx(run["energy_j"], rel=1e-6)
    assert acc.Scalars("greentrack/total_co2e_kg")[-1].value == pytest.approx(run["co2e_kg"], rel=1e-6)
    (eval_phase,) = [p for p in run["phases"] if p["name"] == "eval"]
    assert acc.Scalars("greentrack/phase/eval_j")[-1].value == pytest.approx(eval_phase["energy_j"], rel=1e-6)
    assert logged["errors"] == [] and logged["final"]["greentrack/total_energy_j"] == pytest.approx(run["energy_j"])


def test_a_failing_writer_is_reported_once_and_the_loop_goes_on(logged: dict) -> None:
    assert logged["broken_steps"] == 20 and logged["broken_status"] == "finished"
    assert len(logged["broken"]) == 1 and logged["broken"][0].startswith("log: ")
    said = [x for x in logged["stderr"].splitlines() if x.startswith("greentrack: tensorboard:")]
    assert len(said) == 1 and "training goes on" in said[0]
    assert "Traceback" not in logged["stderr"]
