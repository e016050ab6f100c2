"""``greentrack estimate`` as a person reads it: memory part by part, whether it fits (and what would),
compute, energy, carbon, cost, then every assumption with its source."""

from __future__ import annotations

from typing import Any

from ..carbon.memory import GB
from ..units import fmt_duration, plural


def _gb(v: float) -> str:
    return f"{v / GB:,.1f} GB" if v >= 0.1 * GB or v == 0 else f"{v / 1e6:,.1f} MB"


def _count(n: float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.4g}{unit}"
    return f"{n:.0f}"


def memory_rows(e: Any) -> list[tuple[str, float, str]]:
    """``(part, bytes, why)`` for the memory table."""
    m = e.memory
    bpp = m.bytes_per_param()
    if m.mode == "full":
        return [("weights", m.weights, f"{bpp['weights']:g} B/param ({e.precision})"),
                ("gradients", m.gradients, f"{bpp['gradients']:g} B/param"),
                ("optimizer states", m.optimizer_states, f"{bpp['optimizer_states']:g} B/param ({m.optimizer}, "
                 f"{'fp32' if m.states == 'fp32' else e.precision})"),
                ("master weights", m.master_weights, "fp32 copy (mixed precision)" if m.master_weights else "none")]
    base = "4-bit NF4 + double quantization" if m.mode == "qlora" else e.precision
    share = m.trainable_params / m.params * 100
    return [("frozen weights", m.weights, f"{bpp['weights']:.3g} B/param ({base}); no gradients, no optimizer states"),
            ("adapters", m.adapters, f"{_count(m.trainable_params)} trainable ({share:.2g}%), rank {m.lora_rank} on "
             f"{','.join(m.target_modules)}, {m.adapter_precision}"),
            ("gradients", m.gradients, f"adapters only, {bpp['gradients']:g} B/trainable param"),
            ("optimizer states", m.optimizer_states, f"adapters only, {bpp['optimizer_states']:g} B/trainable param "
             f"({m.optimizer}, {'fp32' if m.states == 'fp32' else m.adapter_precision})"
             + ("; paged to CPU memory when the GPU is full" if m.paged_optimizer else ""))]


def render_text(e: Any) -> str:
    """The text of ``greentrack estimate`` for an :class:`~greentrack.carbon.estimate.Estimate`."""
    m, fp = e.memory, e.footprint
    what = {"full": "full training", "lora": "LoRA fine-tuning", "qlora": "QLoRA fine-tuning"}[e.mode]
    tokens = "tokens not given" if e.tokens is None else f"{e.tokens:.3g} tokens"
    lines = [f"estimate: {e.params:.3g} parameters, {tokens}, {what}, {e.precision} on {e.gpu} "
             f"({e.gpu_memory_gb:g} GB)", "", "memory"]
    rows = memory_rows(e) + [
        ("activations", m.activations, f"per GPU: {m.micro_batch} x {m.seq_len} tokens, {m.layers} layers x "
         f"{m.hidden}" + (", checkpointed" if m.checkpointing else "")),
        ("to store", m.weights, f"fits on {plural(e.gpus_to_store, 'GPU')}"),
        ("to train", m.training, "unsharded; sharded over GPUs: "
         + (f"fits on {plural(e.gpus_to_fit, 'GPU')}" if e.gpus_to_fit is not None else "does not fit any number"))]
    for name, v, why in rows:
        lines.append(f"  {name:<17} {_gb(v):>12}  {why}")
    if not e.fits:
        lines += ["", f"DOES NOT FIT: {e.problem}"]
        if e.fixes:
            lines.append("smallest changes that make it fit (each on its own):")
            width = max(len(f.change) for f in e.fixes)
            for f in e.fixes:
                lines.append(f"  {f.change:<{width}}  {f.gpus:>6,} x {f.gpu:<16} {f.detail}")
        else:
            lines.append("no single change found that makes it fit: split the model (tensor or pipeline "
                         "parallelism, not modelled here) or train a smaller one")
    rule = "6 x N x D" if e.mode == "full" else "4 x N x D + 6 x adapters x D"
    lines += ["", "compute", f"  {'FLOPs':<17} {e.flops:>12.3g}  {rule}" if e.flops is not None else
              f"  {'FLOPs':<17} {'-':>12}  give --tokens (or --gpu-hours)"]
    if e.fits and e.gpus is not None and e.duration_s is not None:
        peak = (f"peak {e.peak_tflops:g} TFLOPS each, MFU {e.mfu:g}" if e.peak_tflops is not None
                else "duration from the given GPU-hours")
        lines += [f"  {'GPUs':<17} {e.gpus:>12,}  {peak}"]
        if e.duration_s is not None:
            lines.append(f"  {'duration':<17} {fmt_duration(e.duration_s):>12}  ({e.duration_s / 86400:,.1f} days)")
    elif not e.fits:
        lines.append(f"  {'GPUs, duration':<17} {'-':>12}  not estimated: the plan does not fit (see above)")
    elif e.gpus is not None:
        lines.append(f"  {'GPUs':<17} {e.gpus:>12,}  the fewest that fit")
    if e.gpu_hours is not None:
        lines.append(f"  {'GPU-hours':<17} {e.gpu_hours:>12,.0f}")
    if fp is not None:
        lines += ["", "energy, carbon, cost",
                  f"  {'IT energy':<17} {fp.it_kwh:>12,.1f} kWh  at {fp.gpu_power_w:g} W per GPU",
                  f"  {'energy':<17} {fp.kwh:>12,.1f} kWh  with PUE {fp.pue:g}",
                  f"  {'CO2e operational':<17} {fp.operational_kg:>12,.1f} kg   at {fp.intensity_g_per_kwh:.0f} "
                  "gCO2e/kWh",
                  f"  {'CO2e embodied':<17} {fp.embodied_kg:>12,.1f} kg",
                  f"  {'CO2e total':<17} {fp.co2e_kg:>12,.1f} kg",
                  f"  {'cost':<17} {'-' if fp.cost_usd is None else f'{fp.cost_usd:,.0f}':>12} USD"
                  + (f"  ({', '.join(f'{k} {v:,.0f}' for k, v in e.cost_parts.items())})" if e.cost_parts else
                     ("  (give --scenario or --price-per-gpu-hour)" if fp.cost_usd is None else ""))]
    lines += ["", "assumptions (override with the option named):"]
    for a in e.assumptions:
        opt = f"  [{a.option}]" if a.option else ""
        lines.append(f"  {a.name}: {a.value}{opt}")
        lines.append(f"      {a.source}")
    for n in e.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)
