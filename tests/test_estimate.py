"""Estimates: published footprints reproduced from their stated inputs, the memory model, bad input."""

from __future__ import annotations

import json

import pytest

from greentrack.carbon import estimate as est
from greentrack.carbon.memory import GB, memory
from greentrack.carbon.scenarios import Catalogue


# Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models", arXiv:2302.13971,
# Table 15: GPU-hours on A100-80GB at 400 W, PUE 1.1, 0.385 kgCO2eq/KWh -> MWh and tCO2eq.
@pytest.mark.parametrize("model,gpu_hours,mwh,tco2", [
    ("LLaMA-7B", 82_432, 36, 14),
    ("LLaMA-13B", 135_168, 59, 23),
    ("LLaMA-33B", 530_432, 233, 90),
    ("LLaMA-65B", 1_022_362, 449, 173),
    ("OPT-175B", 809_472, 356, 137),
])
def test_llama1_table15(model, gpu_hours, mwh, tco2):
    fp = est.footprint(gpu_hours, 400, pue=1.1, intensity_g_per_kwh=385)
    assert int(fp.kwh / 1000) == mwh  # the table truncates MWh (65B: 449.8 printed as 449)
    assert round(fp.co2e_kg / 1000) == tco2


# Touvron et al. 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models", arXiv:2307.09288,
# Table 2: GPU-hours and power per GPU -> tCO2eq (same PUE 1.1 and 0.385 kg/kWh as LLaMA 1).
LLAMA2 = [("7B", 184_320, 400, 31.22), ("13B", 368_640, 400, 62.44), ("34B", 1_038_336, 350, 153.90),
          ("70B", 1_720_320, 400, 291.42)]


@pytest.mark.parametrize("model,gpu_hours,watts,tco2", LLAMA2)
def test_llama2_table2(model, gpu_hours, watts, tco2):
    fp = est.footprint(gpu_hours, watts, pue=1.1, intensity_g_per_kwh=385)
    assert 0 <= fp.co2e_kg / 1000 - tco2 < 0.01  # the table truncates to two decimals (13B: 62.4476 -> 62.44)


def test_llama2_total():
    total = sum(est.footprint(h, w, 1.1, 385).co2e_kg for _, h, w, _ in LLAMA2)
    assert total / 1000 == pytest.approx(539.00, abs=0.01)


def test_gpt3_patterson_2021():
    # Patterson et al. 2021, "Carbon Emissions and Large Neural Network Training", arXiv:2104.10350,
    # Table 4, GPT-3: 10,000 V100 for 14.8 days, 330 W average, PUE 1.10, 429 gCO2e/kWh
    # -> 1,287 MWh and 552 tCO2e.
    fp = est.footprint(10_000 * 14.8 * 24, 330, pue=1.10, intensity_g_per_kwh=429)
    assert fp.kwh / 1000 == pytest.approx(1287, rel=0.005)
    assert fp.co2e_kg / 1000 == pytest.approx(552, rel=0.005)


def test_bloom_dynamic_and_embodied():
    # Luccioni, Viguier & Ligozat 2023, "Estimating the Carbon Footprint of BLOOM", JMLR 24(253):
    # 1,082,990 A100 GPU-hours at 400 W -> 433,196 kWh, x 57 gCO2eq/kWh -> 24.69 t (dynamic);
    # embodied 11.2 t (150 kg per GPU + 2,500 kg per 8-GPU node, 6 years, 85% use).
    emb = Catalogue.load().get("onprem").embodied_kg_per_gpu_hour()  # the shipped embodied figures
    fp = est.footprint(1_082_990, 400, pue=1.0, intensity_g_per_kwh=57, embodied_kg_per_gpu_hour=emb)
    assert round(fp.kwh) == 433_196
    assert fp.operational_kg / 1000 == pytest.approx(24.69, abs=0.005)
    assert fp.embodied_kg / 1000 == pytest.approx(11.2, abs=0.05)


def test_llama_65b_from_flops():
    # LLaMA 65B: 65.2e9 parameters, 1.4e12 tokens, 380 tokens/s/GPU on 2048 A100-80GB, about 21 days
    # (Touvron et al. 2023, section 2.4). 380 tokens/s is an MFU of 380 x 6N / 312 TFLOPS.
    mfu = 380 * 6 * 65.2e9 / 312e12
    e = est.estimate(65.2e9, 1.4e12, gpu="A100-80GB", precision="bf16", mfu=mfu, gpus=2048)
    assert e.gpu_hours == pytest.approx(1_022_362, rel=0.005)  # Table 15
    assert e.duration_s / 86400 == pytest.approx(21, abs=0.5)


def test_flops_6nd_and_chinchilla_tokens():
    # GPT-3 175B on 300B tokens: 3.14e23 FLOPs (Brown et al. 2020, Table D.1)
    assert est.estimate(175e9, 300e9).flops == pytest.approx(3.14e23, rel=0.005)
    # Chinchilla: 70B parameters, 1.4T tokens, 20 tokens per parameter (Hoffmann et al. 2022)
    e = est.estimate(70e9)
    assert e.tokens == pytest.approx(1.4e12)
    assert any(a.name == "tokens" and "Chinchilla" in a.source for a in e.assumptions)


def test_store_rule_of_thumb_is_bytes_per_parameter():
    # 1B parameters take 4 / 2 / 2 / 1 GB in fp32 / fp16 / bf16 / int8; 4-bit NF4 takes 0.5 GB plus its
    # double-quantised constants, 0.127 bits per parameter (Dettmers et al. 2023, section 3)
    got = {p: memory(1e9, p).weights / GB for p in ("fp32", "fp16", "bf16", "int8")}
    assert got == {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}
    assert memory(1e9, "4bit").weights / GB == pytest.approx(0.5 + 0.127 / 8, abs=1e-4)


def test_train_rule_of_thumb_explained_part_by_part():
    # ~80 / 40 / 40 / 20 GB to train 1B parameters: everything in the one precision (states="same"),
    # Adam, and the activations of 3 sequences of 2048 tokens kept without recomputation.
    rule = {"fp32": 80, "fp16": 40, "bf16": 40, "int8": 20}
    for p, gb in rule.items():
        m = memory(1e9, p, states="same", micro_batch=3, seq_len=2048, flash_attention=False)
        bpp = m.bytes_per_param()
        w = bpp["weights"]
        assert bpp["gradients"] == w and bpp["optimizer_states"] == 2 * w and bpp["master_weights"] == 0
        assert m.model_states / GB == pytest.approx(4 * m.weights / GB)  # 16 / 8 / 8 / 4 GB
        assert m.training / GB == pytest.approx(gb, rel=0.03)
        assert m.activations > m.model_states  # most of the 20x is activations, which grow with the batch
    m1 = memory(1e9, "fp32", states="same", micro_batch=1, flash_attention=False)
    m3 = memory(1e9, "fp32", states="same", micro_batch=3, flash_attention=False)
    assert m3.activations == pytest.approx(3 * m1.activations) and m3.model_states == m1.model_states


def test_mixed_precision_adam_is_16_bytes_per_parameter():
    # ZeRO (Rajbhandari et al. 2020): fp16/bf16 weights and gradients, fp32 master weights and Adam
    # moments: 2 + 2 + 4 + 4 + 4 = 16 bytes per parameter.
    m = memory(7.5e9, "bf16", states="fp32")
    assert m.model_states / m.params == 16
    assert memory(7.5e9, "bf16", optimizer="sgd").model_states / 7.5e9 == 8  # no optimizer states
    full = memory(7e9, "bf16", checkpointing=False).activations
    ckpt = memory(7e9, "bf16", checkpointing=True).activations
    assert ckpt < full / 5


def test_gpus_to_fit_and_to_store():
    e = est.estimate(70e9, precision="bf16", gpu="H100")
    room = 80 * GB * 0.9 - e.memory.activations
    assert e.gpus_to_fit == -(-e.memory.model_states // room)
    assert e.gpus == e.gpus_to_fit
    assert est.estimate(70e9, precision="4bit", gpu="H100").gpus_to_store == 1  # 36 GB of weights
    assert est.estimate(70e9, precision="bf16", gpu="H100").gpus_to_store == 2  # 140 GB
    assert est.estimate(70e9, precision="bf16", gpu="H200").gpus_to_store == 2
    e = est.estimate(7e9, 1.4e12, gpu="H100", max_days=10)
    assert e.duration_s / 86400 <= 10 and est.estimate(7e9, 1.4e12, gpu="H100", gpus=e.gpus - 1).duration_s / 86400 > 10


def test_scenario_and_overrides_flow_through():
    base = est.estimate(7e9, 1.4e12, gpu="H100", gpus=64, scenario="aws:us-east-1")
    sc = Catalogue.load().get("aws:us-east-1")
    assert base.footprint.pue == sc.pue
    assert base.cost_usd == pytest.approx(base.gpu_hours * sc.value("price_per_gpu_hour"))
    assert base.footprint.embodied_kg == pytest.approx(base.gpu_hours * sc.embodied_kg_per_gpu_hour())
    assert base.footprint.kwh == pytest.approx(base.gpu_hours * 0.7 * sc.pue)
    half = est.estimate(7e9, 1.4e12, gpu="H100", gpus=64, scenario="aws:us-east-1", mfu=0.2)
    assert half.duration_s == pytest.approx(2 * base.duration_s)
    over = est.estimate(7e9, 1.4e12, gpu="H100", gpus=64, scenario="aws:us-east-1", pue=1.5, intensity_g_per_kwh=100,
                        gpu_power_w=500, price_per_gpu_hour=2.0)
    assert over.footprint.kwh == pytest.approx(over.gpu_hours * 0.5 * 1.5)
    assert over.footprint.operational_kg == pytest.approx(over.footprint.kwh * 0.1)
    assert over.cost_usd == pytest.approx(over.gpu_hours * 2.0)
    plain = est.estimate(1e9)
    assert plain.intensity.fallback and plain.footprint.pue == 1.0 and plain.cost_usd is None
    assert any("world average" in n for n in plain.notes)


@pytest.mark.parametrize("kwargs,message", [
    ({"params": 0}, "parameters must be a positive number"),
    ({"params": -7e9}, "parameters must be a positive number"),
    ({"params": 7e9, "tokens": 0}, "tokens must be a positive number"),
    ({"params": 7e9, "precision": "fp9"}, "unknown precision 'fp9'"),
    ({"params": 7e9, "gpu": "H1000"}, "unknown GPU 'H1000'"),
    ({"params": 7e9, "gpu": "V100", "precision": "bf16"}, "the V100-SXM2-32GB has no bf16"),
    ({"params": 7e9, "gpu": "A100", "precision": "fp8"}, "the A100-SXM4-80GB has no fp8"),
    ({"params": 7e9, "mode": "qlora", "precision": "bf16"}, "QLoRA keeps the frozen base in 4-bit"),
    ({"params": 7e9, "mode": "full", "precision": "4bit"}, "4bit weights cannot be trained directly"),
    ({"params": 7e9, "gpu": "V100", "precision": "int8"}, "the V100-SXM2-32GB has no int8"),
    ({"params": 7e9, "mode": "lora", "target_modules": "q,vv"}, "unknown target module 'vv'"),
    ({"params": 7e9, "mode": "lora", "lora_rank": 0}, "LoRA rank must be a positive integer"),
    ({"params": 7e9, "mode": "fine"}, "unknown mode 'fine'"),
    ({"params": 7e9, "lora_rank": 8}, "--lora-rank and --target-modules are for --mode lora or qlora"),
    ({"params": 7e9, "mfu": 1.5}, "MFU must be between 0 and 1"),
    ({"params": 7e9, "gpus": 0}, "GPUs must be a positive integer"),
    ({"params": 7e9, "scenario": "onprme"}, "unknown scenario 'onprme'"),
    ({"params": 7e9, "optimizer": "adma"}, "unknown optimizer 'adma'"),
])
def test_bad_input_one_line(kwargs, message):
    from greentrack.errors import GreentrackError

    with pytest.raises(GreentrackError) as exc:
        est.estimate(**kwargs)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_estimate_cli(cli, tmp_path):
    r = cli("estimate", "--params", "7B", "--tokens", "1.4T", "--gpu", "H100", "--precision", "bf16",
            "--scenario", "onprem:FR", "--gpus", "64")
    assert r.returncode == 0, r.stderr
    for part in ("weights", "gradients", "optimizer states", "activations", "FLOPs", "GPU-hours", "CO2e total",
                 "cost", "assumptions", "[--mfu]", "[--gpu-power-w]", "Uptime Institute"):
        assert part in r.stdout, part
    r = cli("estimate", "--params", "7e9", "--format", "json")
    d = json.loads(r.stdout)
    assert d["tokens"] == 1.4e11 and d["memory_gb"]["weights"] == 14.0 and d["assumptions"]
    bad = tmp_path / "sc.toml"
    bad.write_text('[scenarios.mine]\nkind = "cloud"\nregion = "FR"\npue = 1.2\n')
    for args, msg in ((["--params", "0"], "must be positive"), (["--params", "-5"], "must be positive"),
                      (["--params", "7B", "--tokens", "0"], "must be positive"),
                      (["--params", "seven"], "is not a number"),
                      (["--params", "7B", "--precision", "int3"], "unknown precision"),
                      (["--params", "7B", "--gpu", "B300"], "unknown GPU"),
                      (["--params", "7B", "-s", "nowhere"], "unknown scenario"),
                      (["--params", "7B", "--scenarios", str(bad), "-s", "mine"],
                       "missing field 'price_per_gpu_hour'")):
        r = cli("estimate", *args)
        assert r.returncode == 2, args
        assert msg in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (args, r.stderr)
