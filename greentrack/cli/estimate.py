"""``greentrack estimate``: plan a training run (memory, GPUs, FLOPs, duration, energy, CO2e, cost)."""

from __future__ import annotations

import json
import re

import click

_SIZE = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)
_MULT = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_size(label: str, text: str | None) -> float | None:
    """``7e9``, ``7B``, ``1.4T``, ``350M`` -> float; anything else is a one-line error."""
    from ..carbon.memory import EstimateError

    if text is None:
        return None
    m = _SIZE.match(text)
    if not m:
        raise EstimateError(f"{label} {text!r} is not a number: use 7e9, 7B, 1.4T or 350M")
    value = float(m.group(1)) * _MULT[m.group(2).lower()]
    if value <= 0:
        raise EstimateError(f"{label} must be positive, got {text!r}")
    return value


@click.command("estimate")
@click.option("--params", "-p", required=True, help="Parameters: 7e9, 7B, 350M.")
@click.option("--tokens", "-t", default=None, help="Training tokens: 1.4e12, 1.4T (default: 20 per parameter).")
@click.option("--precision", default=None,
              help="fp32, fp16, bf16, fp8, int8 or 4bit (default: bf16; fp16 on a GPU without bf16; 4bit for qlora).")
@click.option("--mode", type=click.Choice(["full", "lora", "qlora"], case_sensitive=False), default=None,
              help="full training, or fine-tuning adapters on a frozen base: lora, qlora (4-bit base). "
                   "Default: full (qlora for 4bit, lora for int8).")
@click.option("--lora-rank", type=int, default=None, help="LoRA rank (default: 8 for lora, 64 for qlora).")
@click.option("--target-modules", default=None,
              help="Adapted matrices: q,k,v,o,gate,up,down (q_proj... accepted), attention, mlp or all-linear "
                   "(default: q,v for lora, all-linear for qlora).")
@click.option("--ffn-hidden", type=int, default=None, help="MLP inner size for adapter shapes (default 8/3 x hidden).")
@click.option("--paged-optimizer/--no-paged-optimizer", default=None,
              help="lora/qlora: optimizer states may wait in CPU memory (default: on for qlora).")
@click.option("--gpu", default="H100", show_default=True,
              help="GPU model: H100, H200, A100, A100-40GB, V100, L4, L40S, A6000, MI300X.")
@click.option("--gpus", type=int, default=None, help="GPUs to train on (default: the fewest that fit).")
@click.option("--days", type=float, default=None,
              help="Without --gpus: use enough GPUs to finish within this many days.")
@click.option("--mfu", type=float, default=None, help="Model FLOPs utilisation, 0-1 (default 0.4).")
@click.option("--scenario", "-s", default=None,
              help="Where it runs: aws:us-east-1, onprem:FR, ... (PUE, grid, prices).")
@click.option("--scenarios", "files", multiple=True, type=click.Path(dir_okay=False), help="Extra scenario file.")
@click.option("--region", default=None, help="Grid region (overrides the scenario's).")
@click.option("--intensity", type=float, default=None, help="Grid intensity, gCO2e/kWh (overrides region).")
@click.option("--pue", type=float, default=None, help="PUE (overrides the scenario's; default 1.0).")
@click.option("--gpu-power-w", type=float, default=None, help="Average power per GPU (default: datasheet maximum).")
@click.option("--gpu-hours", default=None, help="Known GPU-hours (skips the FLOPs-based duration).")
@click.option("--peak-tflops", type=float, default=None, help="Peak TFLOPS per GPU at the compute precision.")
@click.option("--price-per-gpu-hour", type=float, default=None, help="USD per GPU-hour (overrides the scenario).")
@click.option("--optimizer", default="adam", show_default=True, help="adam, adamw, sgd-momentum or sgd.")
@click.option("--states", type=click.Choice(["fp32", "same"]), default="fp32", show_default=True,
              help="Optimizer states and master weights in fp32 (mixed precision) or in the training precision.")
@click.option("--seq-len", type=int, default=2048, show_default=True)
@click.option("--micro-batch", type=int, default=1, show_default=True, help="Sequences per GPU per step.")
@click.option("--layers", type=int, default=None, help="Transformer layers (default: from a GPT-3-like shape).")
@click.option("--hidden", type=int, default=None, help="Hidden size (default: from a GPT-3-like shape).")
@click.option("--flash/--no-flash", default=True, show_default=True,
              help="Attention scores not stored (flash attention).")
@click.option("--checkpointing", is_flag=True, help="Full activation checkpointing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def estimate_cmd(params: str, tokens: str | None, precision: str | None, mode: str | None, lora_rank: int | None,
                 target_modules: str | None, ffn_hidden: int | None, paged_optimizer: bool | None, gpu: str,
                 gpus: int | None, days: float | None, mfu: float | None,
                 scenario: str | None, files: tuple[str, ...], region: str | None, intensity: float | None,
                 pue: float | None, gpu_power_w: float | None, gpu_hours: str | None, peak_tflops: float | None,
                 price_per_gpu_hour: float | None, optimizer: str, states: str, seq_len: int, micro_batch: int,
                 layers: int | None, hidden: int | None, flash: bool, checkpointing: bool, fmt: str) -> None:
    """Estimate a training run before launching it; every assumption is printed and overridable.

    When the training state does not fit the GPUs, it says so, which part of memory is too large,
    and the smallest changes that make it fit (each with its GPU count).
    """
    from ..carbon import estimate as est
    from ..views.estimate import render_text

    n_params = parse_size("--params", params)
    assert n_params is not None  # --params is required
    e = est.estimate(n_params, parse_size("--tokens", tokens), precision=precision, gpu=gpu,
                     mfu=mfu, gpus=gpus, scenario=scenario, region=region, pue=pue, intensity_g_per_kwh=intensity,
                     gpu_power_w=gpu_power_w, peak_tflops=peak_tflops, gpu_hours=parse_size("--gpu-hours", gpu_hours),
                     price_per_gpu_hour=price_per_gpu_hour, optimizer=optimizer, states=states, seq_len=seq_len,
                     micro_batch=micro_batch, layers=layers, hidden=hidden, flash_attention=flash,
                     checkpointing=checkpointing, max_days=days, scenario_files=files, mode=mode,
                     lora_rank=lora_rank, target_modules=target_modules, paged_optimizer=paged_optimizer,
                     ffn_hidden=ffn_hidden)
    if fmt == "json":
        click.echo(json.dumps(e.as_dict(), indent=1))
    else:
        click.echo(render_text(e))


def register(cli: click.Group) -> None:
    cli.add_command(estimate_cmd)
