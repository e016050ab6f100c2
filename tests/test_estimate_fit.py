"""Estimates that do not fit, fine-tuning (LoRA, QLoRA) memory, GPU-aware precision; published figures cited."""

from __future__ import annotations

import json

import pytest

from greentrack.carbon import estimate as est
from greentrack.carbon.memory import GB, NF4_DQ_BYTES, adapter_params, memory

LLAMA_7B = dict(layers=32, hidden=4096, ffn_hidden=11008)  # Touvron et al. 2023, Table 2; config intermediate_size
LLAMA_65B = dict(layers=80, hidden=8192, ffn_hidden=22016)


def test_175b_fp16_a100_without_checkpointing_is_not_presented_as_a_plan():
    e = est.estimate(175e9, precision="fp16", gpu="A100")
    assert not e.fits and e.gpus is None and e.duration_s is None and e.footprint is None and e.energy_kwh is None
    assert "activations" in e.problem and "A100-SXM4-80GB" in e.problem
    fixes = {f.change: f for f in e.fixes}
    assert fixes["--checkpointing"].gpus == est.estimate(175e9, precision="fp16", gpu="A100", checkpointing=True).gpus
    assert fixes["--checkpointing"].gpu == "A100-SXM4-80GB"
    larger = [f for f in e.fixes if f.change.startswith("--gpu ")]
    assert larger and all(est.gpu_table()[f.gpu]["memory_gb"] > 80 for f in larger)
    for f in larger:  # each suggestion, applied, fits on the GPUs it names
        again = est.estimate(175e9, precision="fp16", gpu=f.gpu, checkpointing="--checkpointing" in f.change)
        assert again.fits and again.gpus == f.gpus


def test_too_few_gpus_names_the_part_of_memory_and_the_count_that_fits():
    e = est.estimate(70e9, gpu="H100", gpus=2)
    assert not e.fits and e.duration_s is None and e.gpus == 2
    assert "optimizer states" in e.problem and "2 x H100-SXM5-80GB cannot hold" in e.problem
    need = est.estimate(70e9, gpu="H100").gpus
    assert any(f.change == f"--gpus {need}" and f.gpus == need for f in e.fixes)
    assert est.estimate(70e9, gpu="H100", gpus=need).fits


def test_cli_does_not_fit(cli):
    r = cli("estimate", "--params", "175B", "--precision", "fp16", "--gpu", "A100")
    assert r.returncode == 0, r.stderr
    assert "DOES NOT FIT: one micro-batch's activations" in r.stdout
    assert "--checkpointing" in r.stdout and "x A100-SXM4-80GB" in r.stdout
    assert "the fewest that fit" not in r.stdout and "days)" not in r.stdout and "CO2e total" not in r.stdout
    d = json.loads(cli("estimate", "--params", "175B", "--precision", "fp16", "--gpu", "A100", "--format",
                       "json").stdout)
    assert d["fits"] is False and d["gpus"] is None and d["energy_kwh"] is None
    assert {"change": "--checkpointing", "gpu": "A100-SXM4-80GB"}.items() <= d["fixes"][0].items()


def test_peft_trainable_parameter_counts():
    # Hugging Face PEFT, LLaMA-7B, r=8 on q_proj and v_proj: print_trainable_parameters() prints
    # "trainable params: 4194304 || all params: 6742609920 || trainable%: 0.0622" (alpaca-lora's setting)
    assert adapter_params(32, 4096, 8, ("q", "v")) == 4_194_304
    m = memory(6_738_415_616, mode="lora", **LLAMA_7B)
    assert m.trainable_params == 4_194_304 and m.lora_rank == 8 and m.target_modules == ("q", "v")
    # r=64 on all seven linear layers of a LLaMA-7B block (QLoRA's Guanaco recipe): 64 * (11*4096 + 3*11008) * 32
    assert memory(6.74e9, mode="qlora", **LLAMA_7B).trainable_params == 159_907_840


def test_qlora_65b_fits_one_48gb_gpu():
    # Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", arXiv:2305.14314: QLoRA "reduces the
    # average memory requirements of finetuning a 65B parameter model from >780GB of GPU memory to <48GB";
    # "paged optimizers are critical to do 33B/65B QLoRA tuning on a single 24/48GB GPU". Guanaco-65B setting
    # (scripts/finetune_guanaco_65b.sh): NF4 + double quantization, r=64 on all linear layers, gradient
    # checkpointing, 512 target tokens; LLaMA-65B is 65.2B parameters, 80 layers x 8192.
    m = memory(65.2e9, mode="qlora", checkpointing=True, seq_len=512, **LLAMA_65B)
    assert m.training / GB < 48  # everything, optimizer states included, under 48 GB
    full = memory(65.2e9, "bf16", mode="full")
    assert full.model_states / GB > 780  # regular 16-bit fine-tuning
    e = est.estimate(65.2e9, 1e8, mode="qlora", gpu="RTX-A6000", checkpointing=True, seq_len=512, **LLAMA_65B)
    assert e.fits and e.gpus == 1 and e.memory.paged_optimizer
    # without paging, the optimizer states must sit on the GPU too: over the 90% counted usable
    tight = est.estimate(65.2e9, 1e8, mode="qlora", gpu="RTX-A6000", checkpointing=True, seq_len=512,
                         paged_optimizer=False, **LLAMA_65B)
    assert tight.gpus_to_fit == 2
    # 33B on a 24 GB GPU (LLaMA-33B: 32.5B, 60 layers x 6656, MLP 17920)
    m33 = memory(32.5e9, mode="qlora", checkpointing=True, seq_len=512, layers=60, hidden=6656, ffn_hidden=17920)
    assert (m33.resident_states + m33.activations) / GB < 24 * 0.9


def test_double_quantization_saves_3_gb_on_65b():
    # Dettmers et al. 2023, section 3: constants of 32/64 = 0.5 bits per parameter become 8/64 + 32/(64*256)
    # = 0.127 bits, "approximately 3 GB for a 65B model"
    assert NF4_DQ_BYTES * 8 == pytest.approx(4.127, abs=0.001)
    saved = 65e9 * (0.5 - 0.127) / 8 / GB
    assert saved == pytest.approx(3.0, abs=0.05)
    assert memory(65e9, "4bit").weights / GB == pytest.approx(65e9 * 4.127 / 8 / GB, rel=1e-3)


def test_lora_counts_frozen_weights_adapters_gradients_and_states_apart():
    m = memory(7e9, "bf16", mode="lora", **LLAMA_7B)
    n = m.trainable_params
    assert m.weights == 7e9 * 2  # frozen bf16 base: no gradients, no optimizer states for it
    assert m.adapters == n * 4 and m.gradients == n * 4 and m.optimizer_states == n * 8  # PEFT's fp32 adapters
    assert m.master_weights == 0
    q = memory(7e9, mode="qlora", **LLAMA_7B)
    assert q.adapters == q.trainable_params * 2 and q.optimizer_states == q.trainable_params * 8  # bf16 + 32-bit Adam
    full = memory(7e9, "bf16")
    assert m.model_states < full.model_states / 7


def test_4bit_alone_does_not_count_full_adam_states():
    # the issue: --precision 4bit counted fp32 Adam states and master weights for all 70B (962 GB)
    e = est.estimate(70e9, precision="4bit", gpu="H100")
    m = e.memory
    assert e.mode == "qlora" and m.trainable_params < 0.02 * 70e9
    assert m.optimizer_states == pytest.approx(m.trainable_params * 8) and m.master_weights == 0
    assert m.model_states / GB < 60
    assert any("QLoRA" in n for n in e.notes)


def test_v100_gpu_hours_need_no_peak_and_bf16_is_refused(cli):
    # Patterson et al. 2021: GPT-3 on 10,000 V100 for 14.8 days -> 3,552,000 GPU-hours
    e = est.estimate(175e9, 300e9, gpu="V100", gpu_hours=3_552_000, gpus=10_000, checkpointing=True,
                     gpu_power_w=330, pue=1.1, intensity_g_per_kwh=429)
    assert e.precision == "fp16" and e.peak_tflops is None and e.mfu is None
    assert e.energy_kwh / 1000 == pytest.approx(1287, rel=0.005)
    assert e.duration_s / 86400 == pytest.approx(14.8)
    r = cli("estimate", "--params", "175B", "--gpu", "V100", "--gpu-hours", "3552000", "--gpus", "10000",
            "--checkpointing")
    assert r.returncode == 0, r.stderr
    assert "GPU-hours            3,552,000" in r.stdout and "peak TFLOPS" not in r.stdout
    assert "the V100-SXM2-32GB has no bf16: fp16 mixed precision" in r.stdout
    r = cli("estimate", "--params", "7B", "--gpu", "V100", "--precision", "bf16", "--gpu-hours", "100")
    assert r.returncode == 2 and "the V100-SXM2-32GB has no bf16" in r.stderr and r.stderr.count("\n") == 1


def test_cli_fine_tuning_modes(cli):
    r = cli("estimate", "--params", "7B", "--mode", "lora", "--lora-rank", "16", "--target-modules",
            "q_proj,k_proj,v_proj,o_proj", "--tokens", "1e8", "--gpu", "A100-40GB", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["mode"] == "lora" and d["lora_rank"] == 16 and d["target_modules"] == ["q", "k", "v", "o"]
    assert d["memory_gb"]["adapters"] == pytest.approx(d["trainable_params"] * 4 / GB)
    assert d["fits"] and d["gpus"] == 1 and d["energy_kwh"] > 0
    r = cli("estimate", "--params", "65B", "--mode", "qlora", "--gpu", "A6000", "--checkpointing", "--seq-len", "512",
            "--layers", "80", "--hidden", "8192", "--ffn-hidden", "22016")
    assert r.returncode == 0, r.stderr
    for part in ("QLoRA fine-tuning", "frozen weights", "adapters", "799.5M trainable", "paged to CPU memory",
                 "fits on 1 GPU", "give --tokens", "Dettmers et al. 2023"):
        assert part in r.stdout, part
