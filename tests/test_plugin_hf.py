"""plugins/greentrack-hf installed for real (pip --target), measuring a real tiny transformers.Trainer on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_plugin

from greentrack.store.sqlite import Store

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "greentrack-hf"

# shared by the scripts below: a tiny GPT-2 built from a config (no download) and random token data
TINY = """
import json, os, sys, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from greentrack_hf import GreentrackCallback, precision_of

def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": ids, "labels": ids.clone()} for ids in torch.randint(0, 50, (n, 8), generator=g)]

def tiny_gpt2(**config):
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, bos_token_id=0,
                                      eos_token_id=0, **config))
"""

# three train() runs in one process (importing torch and transformers is most of the time):
#   ok     - stored in GREENTRACK_DB, named and tagged by the callback, seq_len given
#   nodb   - db inside a regular file: greentrack measures without storing; tokens counted by the Trainer
#   strict - the same db with strict=True: the session cannot start, the callback reports it, training goes on
TRAIN = TINY + """
def train(out, cb, slow=None, **extra):
    model = tiny_gpt2(n_positions=16)
    args = TrainingArguments(output_dir=out, max_steps=8, per_device_train_batch_size=2,
                             per_device_eval_batch_size=2, eval_strategy="steps", eval_steps=4, logging_steps=4,
                             use_cpu=True, save_strategy="no", disable_tqdm=True, **{"report_to": [], **extra})
    trainer = Trainer(model=model, args=args, train_dataset=data(32, 1), eval_dataset=data(200, 2),
                      callbacks=[cb] + ([slow] if slow else []))
    trainer.train()
    r = cb.result
    print("RESULT " + json.dumps({
        "global_step": trainer.state.global_step, "errors": cb.errors,
        "last_log": trainer.state.log_history[-1], "history": trainer.state.log_history,
        "run": None if r is None else {"id": r.run_id, "name": r.name, "status": r.status, "steps": r.steps,
                                       "samples": r.samples, "tokens": r.tokens, "energy_j": r.energy_j,
                                       "energy_kwh": r.energy_kwh, "co2e_kg": r.co2e_kg,
                                       "phases": [[p.name, p.energy_j, p.duration_s] for p in r.phases]},
    }), flush=True)

tmp, blocked_db = sys.argv[1], sys.argv[2]
tiny = tiny_gpt2()
plain = TrainingArguments(output_dir=tmp + "/p", use_cpu=True, report_to=[])
fp16 = TrainingArguments(output_dir=tmp + "/p", fp16=True, report_to=[])
print("PRECISION " + json.dumps([precision_of(plain, tiny), precision_of(plain, tiny.to(torch.bfloat16)),
                                 precision_of(fp16, tiny)]))
try:
    GreentrackCallback(seq_len="2048")
except ValueError as exc:
    print("SEQLEN " + json.dumps(str(exc)))
# TensorBoard as the report_to integration: the live figures added at on_log must reach it
os.environ["TENSORBOARD_LOGGING_DIR"] = tmp + "/tb"
from transformers import TrainerCallback

class Slow(TrainerCallback):  # 0.3 s a step: a run of a few seconds, against which the edges of the run are small
    def on_step_end(self, *a, **k):
        time.sleep(0.3)

train(tmp + "/out-ok", GreentrackCallback("tiny-gpt2", tags={"technique": "full"}, region="FR", seq_len=8),
      report_to=["tensorboard"], slow=Slow())
del os.environ["TENSORBOARD_LOGGING_DIR"]
train(tmp + "/out-nodb", GreentrackCallback(db=blocked_db), include_num_input_tokens_seen=True,
      gradient_accumulation_steps=2)
train(tmp + "/out-strict", GreentrackCallback("strict", db=blocked_db, strict=True))
"""

# two ranks of CPU DDP (gloo) under torchrun: each process measures its own (mock) GPU
DDP = TINY + """
model = tiny_gpt2(n_positions=16)
args = TrainingArguments(output_dir=sys.argv[1], max_steps=4, per_device_train_batch_size=2, report_to=[],
                         use_cpu=True, save_strategy="no", disable_tqdm=True, ddp_backend="gloo", logging_steps=2)
trainer = Trainer(model=model, args=args, train_dataset=data(64, 1), callbacks=[GreentrackCallback("ddp")])
trainer.train()
with open(f"{sys.argv[1]}/history-{trainer.args.process_index}.json", "w") as fh:
    json.dump(trainer.state.log_history, fh)
"""

# a LoRA adapter on the tiny GPT-2 (peft): tagged peft=lora, model = the base model's class
PEFT = TINY + """
from peft import LoraConfig, get_peft_model

base = tiny_gpt2(n_positions=16)
model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], task_type="CAUSAL_LM"))
args = TrainingArguments(output_dir=sys.argv[1], max_steps=2, per_device_train_batch_size=2, report_to=[],
                         use_cpu=True, save_strategy="no", disable_tqdm=True)
Trainer(model=model, args=args, train_dataset=data(8, 1), callbacks=[GreentrackCallback("lora")]).train()
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed into its own folder, the way a user installs it."""
    target = install_plugin(PLUGIN_DIR, tmp_path_factory.mktemp("hf-install"))
    assert (target / "greentrack_hf" / "callback.py").is_file()
    assert len(list(target.glob("greentrack_hf-*.dist-info"))) == 1
    return target


def _env(site: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENTRACK_")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
               GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="constant:300", GREENTRACK_FLUSH_INTERVAL="0.1",
               GREENTRACK_DB=str(tmp_path / "runs.db"), XDG_STATE_HOME=str(tmp_path / "xdg-state"),
               TRANSFORMERS_OFFLINE="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return env


@pytest.fixture(scope="module")
def trainer_deps() -> None:
    """Skip without what a real Trainer run needs."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it with PyTorch


@pytest.fixture(scope="module")
def trained(trainer_deps: None, site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("hf-train")
    blocker = tmp / "plain-file"
    blocker.write_text("not a folder\n")
    out = subprocess.run([sys.executable, "-c", TRAIN, str(tmp), str(blocker / "runs.db")], env=_env(site, tmp),
                         cwd=tmp, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(x[7:]) for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    assert len(lines) == 3, out.stdout[-2000:]
    precision = [json.loads(x[10:]) for x in out.stdout.splitlines() if x.startswith("PRECISION ")]
    seq_len_error = [json.loads(x[7:]) for x in out.stdout.splitlines() if x.startswith("SEQLEN ")]
    return {"tmp": tmp, "precision": precision, "seq_len_error": seq_len_error,
            "blocker": blocker, "stderr": out.stderr, **dict(zip(("ok", "nodb", "strict"), lines))}


def test_trainer_run_is_measured_and_stored(trained: dict) -> None:
    ok = trained["ok"]
    run = ok["run"]
    assert ok["global_step"] == 8 and ok["errors"] == []
    assert run["status"] == "finished" and run["steps"] == 8 and run["samples"] == 16 and run["tokens"] == 16 * 8
    stored = Store(trained["tmp"] / "runs.db").get_run(run["id"])
    assert stored["name"] == "tiny-gpt2" and stored["status"] == "finished"
    assert stored["steps"] == 8 and stored["samples"] == 16 and stored["tokens"] == 128
    assert stored["region"] == "FRA" and stored["energy_j"] == pytest.approx(run["energy_j"])
    assert stored["tags"] == {"model": "GPT2LMHeadModel", "precision": "fp32", "technique": "full"}
    # eval_steps=4 of max_steps=8: two evaluations, each a phase with its own energy
    evals = [p for p in stored["phases"] if p["name"] == "eval"]
    assert len(evals) == 2 and [p[0] for p in run["phases"]] == ["eval", "eval"]
    for p, (_n, energy_j, duration_s) in zip(evals, run["phases"]):
        assert p["energy_j"] > 0 and p["energy_j"] == pytest.approx(energy_j)
        assert p["ended_at"] > p["started_at"] and duration_s > 0
        # constant 300 W mock: a phase's energy is its duration times 300 W (reconciled to the 10 Hz counter)
        assert p["energy_j"] == pytest.approx(300.0 * (p["ended_at"] - p["started_at"]), rel=0.2)
    assert sum(p["energy_j"] for p in evals) < run["energy_j"]
    # the totals are the last entry of the Trainer's log history
    assert ok["last_log"] == {"greentrack/energy_kwh": run["energy_kwh"], "greentrack/co2e_kg": run["co2e_kg"],
                              "step": 8}
    assert run["energy_kwh"] > 0 and run["co2e_kg"] > 0


def test_unstorable_db_measures_without_storing(trained: dict) -> None:
    nodb = trained["nodb"]
    run = nodb["run"]
    assert nodb["global_step"] == 8 and nodb["errors"] == []
    # no name given: the last part of output_dir; tokens counted by the Trainer (include_num_input_tokens_seen);
    # gradient_accumulation_steps=2: a step is 2 x 2 samples of 8 tokens
    assert run["name"] == "out-nodb" and run["status"] == "finished"
    assert run["steps"] == 8 and run["samples"] == 32 and run["tokens"] == 32 * 8
    assert run["energy_j"] > 0 and nodb["last_log"]["greentrack/energy_kwh"] == run["energy_kwh"]
    assert [s["name"] for s in Store(trained["tmp"] / "runs.db").list_runs(last=None)] == ["tiny-gpt2"]
    assert "the run is measured and kept until it can be written" in trained["stderr"]
    assert "kept in the spool" in trained["stderr"]  # delivered once the database can be written (docs/storage.md)


def test_session_failure_does_not_break_training(trained: dict) -> None:
    strict = trained["strict"]
    assert strict["global_step"] == 8 and strict["run"] is None
    assert len(strict["errors"]) == 1 and strict["errors"][0].startswith("on_train_begin: ")
    said = [line for line in trained["stderr"].splitlines() if line.startswith("greentrack: hf:")]
    assert len(said) == 1 and "training goes on" in said[0] and str(trained["blocker"]) in said[0]
    assert "Traceback" not in trained["stderr"]
    # training completed and logged as usual, with no greentrack entry
    assert "train_runtime" in strict["last_log"] and not any(k.startswith("greentrack/") for k in strict["last_log"])


def test_precision_tag(trained: dict) -> None:
    # fp32 arguments: the model's dtype decides; fp16=True in the arguments wins over the dtype
    assert trained["precision"] == [["fp32", "bf16", "fp16"]]


def test_bad_seq_len_is_refused_when_the_callback_is_made(trained: dict) -> None:
    assert trained["seq_len_error"] == ["GreentrackCallback: seq_len must be a positive integer, got '2048'"]


def test_each_rank_measures_its_own_gpu(trainer_deps: None, site: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed.run")
    db = tmp_path / "runs.db"
    # created first: two processes creating one new database at the same instant can collide on
    # its switch to WAL (greentrack reports it and measures without storing; see the plugin's note)
    Store(db).close()
    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    env = _env(site, tmp_path)
    env.update(GREENTRACK_MOCK_GPUS="2")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tmp_path / "out")], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [Store(db).get_run(r["id"]) for r in Store(db).list_runs(last=None)]
    assert sorted(r["rank"] for r in runs) == [0, 1] and {r["world_size"] for r in runs} == {2}
    assert len({r["job_id"] for r in runs}) == 1 and runs[0]["job_id"]  # torchrun's run id
    for r in runs:
        # each rank: its own GPU only; 4 steps of the global batch 2 per device x 2 ranks
        assert [d["key"] for d in r["devices"]] == [f"gpu{r['rank']}"]
        assert r["status"] == "finished" and r["steps"] == 4 and r["samples"] == 16 and r["energy_j"] > 0
        assert r["tags"] == {"model": "GPT2LMHeadModel", "precision": "fp32"}
    assert "greentrack: hf:" not in out.stderr
    # rank 0 logs the job's figures (one all-reduce per log); its last log holds the job's totals
    history = [json.loads((tmp_path / "out" / f"history-{r}.json").read_text()) for r in (0, 1)]
    job = [h for h in history[0] if "greentrack/energy_j" in h]
    # four steps of a tiny model take a fraction of a second: on a loaded machine the step-2 log can come before
    # the first sample (not logged; the next interval starts where it did), and then the step-4 one too
    assert job and job[-1]["step"] == 4 and "train_loss" in job[-1] and {h["step"] for h in job} <= {2, 4}
    total = sum(r["energy_j"] for r in runs)
    assert job[-1]["greentrack/total_energy_j"] == pytest.approx(total, rel=0.01)
    # the interval energies add up to the two runs' power series (a run this short is too short for its
    # counter-reconciled total to be within 1 % of the series on a loaded machine: see test_plugin_lightning)
    series = sum(d["series_energy_j"] for r in runs for d in r["devices"])
    assert sum(h["greentrack/energy_j"] for h in job) == pytest.approx(series, rel=1e-6)
    # the samples of a step are already the global batch on each rank: J/sample uses rank 0's count
    periodic = job[-2] if len(job) > 1 else job[-1]  # a step log (steps 3-4, or 1-4), else the closing one
    spans = periodic["greentrack/energy_j"] / periodic["greentrack/j_per_step"]
    assert periodic["greentrack/j_per_sample"] == pytest.approx(periodic["greentrack/energy_j"] / (4 * spans))
    assert not any(k.startswith("greentrack/") for h in history[1] for k in h if h is not history[1][-1])


def test_live_figures_reach_report_to_integrations(trained: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ok = trained["ok"]
    run = ok["run"]
    live = [h for h in ok["history"] if "greentrack/energy_j" in h]
    # logging_steps=4 and eval_steps=4 of 8 steps: loss logs at 4 and 8, evaluation logs at 4 and 8, then the
    # Trainer's last log (train_loss), which ends the run and carries the closing interval and the totals; a log
    # taken before the sampler's first power sample (the first, on a fast machine) has no figure to add
    assert [h["step"] for h in live][-3:] == [8, 8, 8] and len(live) >= 4
    assert "train_loss" in live[-1] and live[-1]["greentrack/total_energy_j"] == pytest.approx(run["energy_j"])
    assert live[-1]["greentrack/total_co2e_kg"] == pytest.approx(run["co2e_kg"])
    # the interval energies add up to the run's power series exactly, and to its (counter) total within 1 %
    (device,) = Store(trained["tmp"] / "runs.db").get_run(run["id"])["devices"]
    assert sum(h["greentrack/energy_j"] for h in live) == pytest.approx(device["series_energy_j"], rel=1e-6)
    assert sum(h["greentrack/energy_j"] for h in live) == pytest.approx(run["energy_j"], rel=0.01)
    kwh = [h["greentrack/energy_kwh"] for h in live]
    assert kwh == sorted(kwh)
    # the interval up to the loss log at step 8 holds 4 steps (or 8 when nothing was measured at step 4)
    # of the global batch 2, 8 tokens a sample
    (at8,) = [h for h in live if h["step"] == 8 and "loss" in h]
    steps = at8["greentrack/energy_j"] / at8["greentrack/j_per_step"]
    assert round(steps) in (4, 8) and steps == pytest.approx(round(steps), rel=1e-6)
    assert at8["greentrack/j_per_token"] == pytest.approx(at8["greentrack/energy_j"] / (16 * round(steps)), rel=1e-6)
    # report_to=["tensorboard"]: the Trainer's TensorBoard writer got every figure (as train/<name>)
    acc = EventAccumulator(str(trained["tmp"] / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    logged = [e.value for e in acc.Scalars("train/greentrack/energy_j")]
    assert len(logged) == len(live)
    assert sum(logged) == pytest.approx(sum(h["greentrack/energy_j"] for h in live), rel=1e-5)
    assert acc.Scalars("train/greentrack/total_energy_kwh")[-1].value == pytest.approx(run["energy_kwh"], rel=1e-5)


def test_peft_model_is_tagged(trainer_deps: None, site: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    script = tmp_path / "lora.py"
    script.write_text(PEFT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], env=_env(site, tmp_path),
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = Store(tmp_path / "runs.db").list_runs(last=None)
    run = Store(tmp_path / "runs.db").get_run(row["id"])
    assert run["name"] == "lora" and run["steps"] == 2 and run["samples"] == 4
    assert run["tags"] == {"model": "GPT2LMHeadModel", "precision": "fp32", "peft": "lora"}


def test_import_without_transformers_is_a_clear_error(site: Path, tmp_path: Path) -> None:
    code = "import sys; sys.modules['transformers'] = None; import greentrack_hf"
    out = subprocess.run([sys.executable, "-c", code], env=_env(site, tmp_path), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: greentrack-hf needs the 'transformers' package")
    assert last.endswith("install it with: pip install transformers")
