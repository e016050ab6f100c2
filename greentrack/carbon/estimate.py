"""Plan a training run before launching it: memory, GPUs, FLOPs, duration, energy, CO2e and cost.

::

    FLOPs      = 6 x N x D                       (Kaplan et al. 2020; forward + backward)
    D          = tokens, or 20 x N               (Chinchilla-optimal, Hoffmann et al. 2022)
    duration   = FLOPs / (GPUs x peak x MFU)
    GPU-hours  = GPUs x duration
    IT kWh     = GPU-hours x GPU power           (the datasheet maximum unless given, as the LLaMA papers do)
    kWh        = IT kWh x PUE
    CO2e       = kWh x grid intensity + GPU-hours x embodied per GPU-hour
    cost       = the scenario's price for those GPU-hours and kWh

Every assumption is returned (and printed) with its source and the option that overrides it.
:func:`footprint` is the same arithmetic from stated GPU-hours, as papers report it.

An estimate never presents an impossible plan: when the training state does not fit the GPUs
(see :mod:`greentrack.carbon.memory`), :attr:`Estimate.fits` is False, :attr:`Estimate.problem`
says which part of memory is too large, :attr:`Estimate.fixes` lists the smallest changes that
make it fit (each with its GPU count), and no duration or energy is given for the impossible plan
(unless GPU-hours were given: those are a fact, not a plan).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import NotFoundError, suggest
from ..units import plural
from .footprint import from_kwh
from .grid import DATA_DIR, Intensity
from .memory import (
    GB,
    LORA_DEFAULTS,
    EstimateError,
    MemoryBreakdown,
    default_mode,
    gpus_to_fit,
    gpus_to_store,
    memory,
    norm_precision,
)

CHINCHILLA_TOKENS_PER_PARAM = 20.0
DEFAULT_MFU = 0.4
USABLE_MEMORY = 0.9


@functools.lru_cache(maxsize=1)
def gpu_table() -> dict[str, dict[str, Any]]:
    """``greentrack/data/gpus.json``: name -> memory, power, dense peaks, source, year."""
    return json.loads((DATA_DIR / "gpus.json").read_text(encoding="utf-8"))["gpus"]


def find_gpu(name: str) -> tuple[str, dict[str, Any]]:
    """A GPU by name or alias (case-insensitive); unknown is a one-line error with close matches."""
    key = str(name).strip().lower()
    names: list[str] = []
    for gname, g in gpu_table().items():
        names += [gname, *g.get("aliases", [])]
        if key == gname.lower() or key in (a.lower() for a in g.get("aliases", [])):
            return gname, g
    raise NotFoundError(f"unknown GPU {name!r}" + (suggest(str(name), names)
                        or f"; known: {', '.join(gpu_table())}"))


@dataclass(frozen=True)
class Assumption:
    """One input of the estimate: its value, where it comes from, and how to change it."""

    name: str
    value: Any
    source: str
    option: str = ""


@dataclass
class Footprint:
    """Energy, carbon and cost of a given number of GPU-hours."""

    gpu_hours: float
    gpu_power_w: float
    it_kwh: float
    pue: float
    kwh: float
    intensity_g_per_kwh: float
    operational_kg: float
    embodied_kg: float
    cost_usd: float | None

    @property
    def co2e_kg(self) -> float:
        return self.operational_kg + self.embodied_kg


def footprint(gpu_hours: float, gpu_power_w: float, pue: float, intensity_g_per_kwh: float,
              embodied_kg_per_gpu_hour: float = 0.0, price_per_gpu_hour: float | None = None) -> Footprint:
    """Energy and CO2e from GPU-hours, GPU power, PUE and grid intensity (the papers' arithmetic)."""
    for label, v in (("GPU-hours", gpu_hours), ("GPU power", gpu_power_w), ("PUE", pue)):
        if not isinstance(v, (int, float)) or not v > 0:
            raise EstimateError(f"{label} must be a positive number, got {v!r}")
    if pue < 1.0:
        raise EstimateError(f"PUE must be at least 1.0, got {pue!r}")
    if not isinstance(intensity_g_per_kwh, (int, float)) or intensity_g_per_kwh < 0:
        raise EstimateError(f"grid intensity must be a number >= 0, got {intensity_g_per_kwh!r}")
    it = gpu_hours * gpu_power_w / 1000.0
    op = from_kwh(it, pue, intensity_g_per_kwh)
    return Footprint(gpu_hours, gpu_power_w, it, pue, op.facility_kwh, intensity_g_per_kwh, op.co2e_kg,
                     gpu_hours * embodied_kg_per_gpu_hour,
                     None if price_per_gpu_hour is None else gpu_hours * price_per_gpu_hour)


@dataclass(frozen=True)
class Fix:
    """One change that makes a training plan fit: the options, the GPUs it then needs, what it changes."""

    change: str
    gpus: int
    gpu: str
    detail: str = ""


@dataclass
class Estimate:
    """The plan for one training run; see the module docstring for the arithmetic.

    When :attr:`fits` is False, :attr:`problem` says why, :attr:`fixes` what would fit, and
    :attr:`duration_s` (and, without given GPU-hours, :attr:`gpu_hours` and :attr:`footprint`) are None.
    A fine-tuning estimate without tokens has no :attr:`flops` either (memory and fit only).
    """

    params: float
    tokens: float | None
    precision: str
    gpu: str
    gpu_memory_gb: float
    memory: MemoryBreakdown
    gpus_to_store: int
    gpus_to_fit: int | None
    gpus: int | None
    flops: float | None
    peak_tflops: float | None
    mfu: float | None
    duration_s: float | None
    gpu_hours: float | None
    footprint: Footprint | None
    intensity: Intensity
    scenario: str | None
    cost_parts: dict[str, float]
    assumptions: list[Assumption]
    notes: list[str] = field(default_factory=list)
    mode: str = "full"
    compute_precision: str = "bf16"
    fits: bool = True
    problem: str | None = None
    fixes: list[Fix] = field(default_factory=list)

    @property
    def energy_kwh(self) -> float | None:
        return None if self.footprint is None else self.footprint.kwh

    @property
    def co2e_kg(self) -> float | None:
        return None if self.footprint is None else self.footprint.co2e_kg

    @property
    def cost_usd(self) -> float | None:
        return None if self.footprint is None else self.footprint.cost_usd

    def as_dict(self) -> dict[str, Any]:
        fp, m = self.footprint, self.memory
        parts = (("weights", m.weights), ("adapters", m.adapters), ("gradients", m.gradients),
                 ("optimizer_states", m.optimizer_states), ("master_weights", m.master_weights),
                 ("activations_per_gpu", m.activations), ("model_states", m.model_states),
                 ("resident_model_states", m.resident_states), ("training_unsharded", m.training))
        return {
            "params": self.params, "tokens": self.tokens, "precision": self.precision, "mode": self.mode,
            "compute_precision": self.compute_precision, "gpu": self.gpu,
            "trainable_params": m.trainable_params, "lora_rank": m.lora_rank,
            "target_modules": list(m.target_modules), "paged_optimizer": m.paged_optimizer,
            "memory_gb": {k: v / GB for k, v in parts},
            "fits": self.fits, "problem": self.problem,
            "fixes": [{"change": f.change, "gpus": f.gpus, "gpu": f.gpu, "detail": f.detail} for f in self.fixes],
            "gpus_to_store": self.gpus_to_store, "gpus_to_fit": self.gpus_to_fit, "gpus": self.gpus,
            "flops": self.flops, "peak_tflops": self.peak_tflops, "mfu": self.mfu, "duration_s": self.duration_s,
            "gpu_hours": self.gpu_hours, "gpu_power_w": fp and fp.gpu_power_w, "it_kwh": fp and fp.it_kwh,
            "pue": fp and fp.pue, "energy_kwh": fp and fp.kwh,
            "intensity_g_per_kwh": self.intensity.g_per_kwh, "intensity_source": self.intensity.describe(),
            "co2e_operational_kg": fp and fp.operational_kg, "co2e_embodied_kg": fp and fp.embodied_kg,
            "co2e_kg": fp and fp.co2e_kg, "cost_usd": fp and fp.cost_usd,
            "cost_parts": self.cost_parts, "scenario": self.scenario,
            "assumptions": [{"name": a.name, "value": a.value, "source": a.source, "option": a.option}
                            for a in self.assumptions],
            "notes": self.notes,
        }


def _positive(label: str, v: Any, integer: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(v)
    if not ok or (integer and int(v) != v):
        raise EstimateError(f"{label} must be a positive {'integer' if integer else 'number'}, got {v!r}")


def compute_precision(prec: str, peaks: dict[str, float]) -> str:
    """The matmul precision: 4-bit and int8 frozen bases are dequantised to bf16 (fp16 without bf16)."""
    if prec in ("4bit", "int8"):
        return "bf16" if "bf16" in peaks else "fp16"
    return prec


def _check_supported(gname: str, prec: str, cprec: str, peaks: dict[str, float]) -> None:
    if cprec in peaks:
        return
    alt = next((p for p in ("bf16", "fp16", "fp32") if p in peaks), None)
    what = cprec if prec == cprec else f"{cprec} (the compute precision of {prec} weights)"
    raise EstimateError(f"the {gname} has no {what}: it computes in {', '.join(peaks)}"
                        + (f"; use --precision {alt}" if alt else ""))


def _gb(v: float) -> str:
    return f"{v / GB:,.1f} GB" if v >= 0.1 * GB or v == 0 else f"{v / 1e6:,.1f} MB"


def diagnose(m: MemoryBreakdown, gname: str, gpu_memory_gb: float, gpus: int | None, fit: int | None) -> str | None:
    """Why the training state does not fit *gpus* GPUs (None when it fits)."""
    usable = gpu_memory_gb * GB * USABLE_MEMORY
    if fit is None:
        how = "with full checkpointing" if m.checkpointing else "without activation checkpointing"
        return (f"one micro-batch's activations ({_gb(m.activations)}: {m.micro_batch} x {m.seq_len} tokens, "
                f"{m.layers} layers {how}) exceed the {_gb(usable)} usable on one {gname}; sharding the model "
                f"states over more GPUs does not shrink them")
    if gpus is not None and gpus < fit:
        name, size = max(((k, v) for k, v in (("weights" if m.mode == "full" else "frozen weights", m.weights),
                                              ("adapters", m.adapters), ("gradients", m.gradients),
                                              ("optimizer states", 0.0 if m.paged_optimizer else m.optimizer_states),
                                              ("master weights", m.master_weights))), key=lambda kv: kv[1])
        return (f"{gpus} x {gname} cannot hold the training state: {_gb(m.resident_states)} of model states "
                f"({name} {_gb(size)} the largest) sharded over {gpus} GPU{'s' if gpus != 1 else ''} is "
                f"{_gb(m.resident_states / gpus)} per GPU, plus {_gb(m.activations)} of activations, over the "
                f"{_gb(usable)} usable")
    return None


def _fixes(mem_kw: dict[str, Any], m: MemoryBreakdown, gname: str, gpus: int | None, fit: int | None,
           prec: str) -> list[Fix]:
    """The smallest changes that make the plan fit, each with its GPU count (see :func:`estimate`)."""
    out: list[Fix] = []
    g_mem = gpu_table()[gname]["memory_gb"]

    def fits_with(gpu_gb: float, **change: Any) -> tuple[int | None, MemoryBreakdown | None]:
        try:
            m2 = memory(**dict(mem_kw, **change))
        except EstimateError:
            return None, None
        return gpus_to_fit(m2, gpu_gb, USABLE_MEMORY), m2

    if fit is not None and gpus is not None and gpus < fit:
        out.append(Fix(f"--gpus {fit}", fit, gname, f"shards the {_gb(m.resident_states)} of model states "
                                                     f"(ZeRO-3 / FSDP) to {_gb(m.resident_states / fit)} per GPU"))
    if not m.checkpointing:
        n, m2 = fits_with(g_mem, checkpointing=True)
        if n is not None and m2 is not None:
            out.append(Fix("--checkpointing", n, gname, f"activations {_gb(m.activations)} -> {_gb(m2.activations)} "
                                                        "per GPU; the forward pass is recomputed (slower)"))
    if m.micro_batch > 1:
        n, m2 = fits_with(g_mem, micro_batch=1)
        if n is not None and m2 is not None:
            out.append(Fix("--micro-batch 1", n, gname, f"activations {_gb(m.activations)} -> {_gb(m2.activations)} "
                                                        "per GPU (more gradient accumulation steps)"))
    if fit is None:
        seq = m.seq_len // 2
        while seq >= 128:
            n, m2 = fits_with(g_mem, seq_len=seq)
            if n is not None:
                out.append(Fix(f"--seq-len {seq}", n, gname, f"shorter sequences: activations {_gb(m.activations)} -> "
                                                             f"{_gb(m2.activations if m2 else 0.0)} per GPU"))
                break
            seq //= 2
    if m.mode == "full":
        n, m2 = fits_with(g_mem, mode="qlora", precision="4bit", paged_optimizer=None)
        if n is not None:
            out.append(Fix("--mode qlora", n, gname, "if fine-tuning: adapters on a frozen 4-bit base (a different "
                                                     "training method, not the same run)"))
    elif m.mode == "lora":
        n, m2 = fits_with(g_mem, mode="qlora", precision="4bit", paged_optimizer=None)
        if n is not None:
            out.append(Fix("--mode qlora", n, gname, "the frozen base in 4-bit NF4 instead of " + prec))
    larger = sorted(((g["memory_gb"], k) for k, g in gpu_table().items() if g["memory_gb"] > g_mem),
                    key=lambda x: (x[0], x[1]))
    found = 0
    for gb_, other in larger:
        peaks = gpu_table()[other]["peak_tflops"]
        if compute_precision(prec, peaks) not in peaks:
            continue
        n, _ = fits_with(gb_)
        extra = ""
        if n is None and not m.checkpointing:
            n, _ = fits_with(gb_, checkpointing=True)
            extra = " --checkpointing"
        if n is not None:
            alias = min([other, *gpu_table()[other].get("aliases", [])], key=len)
            out.append(Fix(f"--gpu {alias}{extra}", n, other, f"{gb_:g} GB per GPU"))
            found += 1
            if found == 2:
                break
    return out


def estimate(params: float, tokens: float | None = None, *, precision: str | None = None, gpu: str = "H100",
             mfu: float | None = None, gpus: int | None = None, scenario: str | None = None,
             region: str | None = None, pue: float | None = None, intensity_g_per_kwh: float | None = None,
             gpu_power_w: float | None = None, peak_tflops: float | None = None, gpu_hours: float | None = None,
             price_per_gpu_hour: float | None = None, optimizer: str = "adam", states: str = "fp32",
             seq_len: int = 2048, micro_batch: int = 1, layers: int | None = None, hidden: int | None = None,
             flash_attention: bool = True, checkpointing: bool = False, max_days: float | None = None,
             scenario_files: Iterable[str | Path] = (), mode: str | None = None, lora_rank: int | None = None,
             target_modules: str | Iterable[str] | None = None, paged_optimizer: bool | None = None,
             ffn_hidden: int | None = None) -> Estimate:
    """Estimate a training run. Everything but *params* has a default, listed in ``assumptions``.

    *mode* ``full`` (default; ``qlora`` for 4-bit, ``lora`` for int8 weights), ``lora`` or ``qlora``;
    *precision* None: bf16 (fp16 on a GPU without bf16; 4bit for QLoRA). With *gpu_hours* given,
    the peak TFLOPS and MFU are not needed. Bad input (non-positive sizes, unknown precision, GPU
    or scenario, a precision the GPU lacks) raises a :class:`~greentrack.errors.GreentrackError`
    with one clear line.
    """
    _positive("parameters", params)
    A: list[Assumption] = []
    notes: list[str] = []
    if tokens is not None:
        _positive("tokens", tokens)
    gname, g = find_gpu(gpu)
    A.append(Assumption("gpu", gname, f"{g['source']} ({g['year']})", "--gpu"))
    peaks = g["peak_tflops"]
    md = None if mode is None else str(mode).strip().lower()
    if precision is None:
        prec = "4bit" if md == "qlora" else ("bf16" if "bf16" in peaks else "fp16")
        if prec == "fp16" and md != "qlora":
            A.append(Assumption("precision", prec, f"the {gname} has no bf16: fp16 mixed precision", "--precision"))
    else:
        prec = norm_precision(precision)
    if md is None and default_mode(prec) != "full":
        md = default_mode(prec)
        notes.append(f"{prec} weights are not trained directly: estimated as {'QLoRA' if md == 'qlora' else 'LoRA'} "
                     f"fine-tuning, adapters on the frozen {prec} base (--mode {md}; --mode lora/qlora to choose)")
    cprec = compute_precision(prec, peaks) if md in ("lora", "qlora") or prec == "4bit" else prec
    _check_supported(gname, prec, cprec, peaks)
    if md in (None, "full") and prec in ("int8", "fp8"):
        notes.append(f"training with {prec} weights is modelled as full training (gradients in {prec}, master "
                     "weights and optimizer states as --states says); for adapters on a frozen base use --mode lora")
    if cprec != prec:
        A.append(Assumption("compute precision", cprec, f"{prec} weights are dequantised to {cprec} for the matmuls "
                            "(Dettmers et al. 2023)", "--peak-tflops"))
    mods = None if target_modules is None else (target_modules if isinstance(target_modules, str)
                                                 else tuple(target_modules))
    mem_kw: dict[str, Any] = dict(params=params, precision=prec, optimizer=optimizer, states=states, seq_len=seq_len,
                                  micro_batch=micro_batch, layers=layers, hidden=hidden,
                                  flash_attention=flash_attention, checkpointing=checkpointing, mode=md,
                                  lora_rank=lora_rank, target_modules=mods, paged_optimizer=paged_optimizer,
                                  ffn_hidden=ffn_hidden)
    mem = memory(**mem_kw)
    md = mem.mode
    if tokens is None and md == "full":
        tokens = CHINCHILLA_TOKENS_PER_PARAM * params
        A.insert(0, Assumption("tokens", f"{tokens:.3g}", "Chinchilla-optimal 20 tokens per parameter "
                               "(Hoffmann et al. 2022)", "--tokens"))
    elif tokens is None and gpu_hours is None:
        notes.append("no --tokens: the fine-tuning data's size sets the compute; memory and fit only")
    A.append(Assumption("memory model", f"{mem.optimizer}, states {states}, seq {seq_len} x micro-batch "
                        f"{micro_batch}, {mem.layers} layers x {mem.hidden} hidden, "
                        f"{'flash attention' if flash_attention else 'attention scores stored'}"
                        f"{', full checkpointing' if checkpointing else ''}",
                        "weights/gradients/optimizer per ZeRO (Rajbhandari et al. 2020); activations per "
                        "Korthikanti et al. 2022; shape from GPT-3 (Brown et al. 2020)",
                        "--optimizer --states --seq-len --micro-batch --layers --hidden --no-flash --checkpointing"))
    if md != "full":
        src = LORA_DEFAULTS[md][2] if lora_rank is None and not target_modules else "given"
        A.append(Assumption("adapters", f"rank {mem.lora_rank} on {','.join(mem.target_modules)}: "
                            f"{mem.trainable_params:,.0f} trainable parameters "
                            f"({mem.trainable_params / params * 100:.2g}% of {params:.3g})", src,
                            "--lora-rank --target-modules --ffn-hidden"))
        A.append(Assumption("adapter precision", f"{mem.adapter_precision} adapters and gradients, "
                            f"{'fp32' if states == 'fp32' else mem.adapter_precision} optimizer states",
                            "QLoRA: bf16 adapters, 32-bit paged AdamW (Dettmers et al. 2023, eq. 5)" if md == "qlora"
                            else "Hugging Face PEFT keeps adapters in fp32 (autocast_adapter_dtype=True)", "--states"))
        if md == "qlora":
            A.append(Assumption("frozen base", "4-bit NF4 with double quantization, 4.127 bits per parameter",
                                "Dettmers et al. 2023, section 3 (blocks of 64, fp8 constants in blocks of 256)"))
        if mem.paged_optimizer:
            A.append(Assumption("paged optimizer", "on", "optimizer states are evicted to CPU memory when the GPU is "
                                "full (Dettmers et al. 2023, section 3): not counted against GPU memory",
                                "--no-paged-optimizer"))
    A.append(Assumption("usable GPU memory", USABLE_MEMORY, "greentrack assumption: 10% kept for the CUDA "
                        "context and fragmentation; model states sharded evenly (ZeRO-3 / FSDP)"))
    fit = gpus_to_fit(mem, g["memory_gb"], USABLE_MEMORY)
    store = gpus_to_store(mem, g["memory_gb"], USABLE_MEMORY)
    flops: float | None = None
    if tokens is not None and md == "full":
        flops = 6.0 * params * tokens
    elif tokens is not None:
        # frozen weights need no weight gradients: forward 2ND + input gradients 2ND, plus the adapters' 6 N_a D
        flops = 4.0 * params * tokens + 6.0 * mem.trainable_params * tokens
        A.append(Assumption("FLOPs", "4 x N x D + 6 x adapters x D", "no weight gradients for the frozen base "
                            "(Hu et al. 2021 report 25% faster training than full fine-tuning on GPT-3 175B)"))
    if gpu_hours is not None:
        _positive("GPU-hours", gpu_hours)
        A.append(Assumption("GPU-hours", gpu_hours, "given (FLOPs, peak and MFU not used)", "--gpu-hours"))
    elif flops is not None:
        if peak_tflops is None:
            peak_tflops = float(peaks[cprec])
            A.append(Assumption("peak TFLOPS", peak_tflops, f"{gname} dense {cprec} peak, no sparsity"
                                + (" (fp32 without TF32)" if cprec == "fp32" else ""), "--peak-tflops"))
        _positive("peak TFLOPS", peak_tflops)
        if mfu is None:
            mfu = DEFAULT_MFU
            A.append(Assumption("MFU", mfu, "model FLOPs utilisation typical of large runs: PaLM 46.2% "
                                "(Chowdhery et al. 2022), LLaMA-65B ~47% from 380 tokens/s/GPU (Touvron et al. 2023)",
                                "--mfu"))
        if not isinstance(mfu, (int, float)) or not 0 < mfu <= 1:
            raise EstimateError(f"MFU must be between 0 and 1, got {mfu!r}")
    if gpus is None and max_days is not None:
        _positive("days", max_days)
        if fit is not None and (gpu_hours is not None or flops is not None):
            hours = gpu_hours if gpu_hours is not None else flops / (peak_tflops * 1e12 * mfu) / 3600.0  # type: ignore
            gpus = max(math.ceil(hours / (max_days * 24.0)), fit)
            A.append(Assumption("GPUs", gpus, f"the fewest that fit the training state and finish within "
                                f"{plural(max_days, 'day')}", "--gpus / --days"))
        else:
            gpus = fit
    elif gpus is None:
        gpus = fit
        if fit is not None:
            A.append(Assumption("GPUs", gpus, "the fewest that fit the training state", "--gpus / --days"))
    if gpus is not None:
        _positive("GPUs", gpus, integer=True)
        gpus = int(gpus)
    problem = diagnose(mem, gname, g["memory_gb"], gpus, fit)
    fits = problem is None
    fixes = [] if fits else _fixes(mem_kw, mem, gname, gpus, fit, prec)
    duration_s: float | None = None
    if fits and gpus is not None and (gpu_hours is not None or flops is not None):
        if gpu_hours is None:
            duration_s = flops / (gpus * peak_tflops * 1e12 * mfu)  # type: ignore[operator]
            gpu_hours = gpus * duration_s / 3600.0
        else:
            duration_s = gpu_hours / gpus * 3600.0
    # where it runs
    sc = None
    if scenario:
        from .scenarios import Catalogue

        sc = Catalogue.load(scenario_files).get(scenario)
        A.append(Assumption("scenario", sc.name, f"{sc.description} ({sc.origin})", "--scenario"))
        if sc.gpu and sc.gpu != gname:
            notes.append(f"scenario {sc.name} prices {sc.gpu}; the estimate uses {gname}")
    if gpu_power_w is None:
        gpu_power_w = float(g["power_w"])
        A.append(Assumption("GPU power", gpu_power_w, f"{gname} datasheet maximum, as the LLaMA papers count it "
                            "(a real run draws less: measure one with greentrack)", "--gpu-power-w"))
    if pue is None:
        if sc is not None:
            pue = sc.pue
            A.append(Assumption("PUE", pue, sc.figures["pue"].describe(), "--pue"))
        else:
            pue = 1.0
            A.append(Assumption("PUE", pue, "no scenario: devices only, no data-centre overhead", "--pue / --scenario"))
    if intensity_g_per_kwh is not None:
        inten = Intensity("given", float(intensity_g_per_kwh), "given", None, "given intensity")
    elif region:
        from . import grid

        inten = grid.lookup(region)
    elif sc is not None:
        inten = sc.intensity()
    else:
        from . import grid

        inten = grid.world_average()
        notes.append(f"no region or scenario: CO2e uses the {inten.describe()}")
    A.append(Assumption("grid", round(inten.g_per_kwh, 1), inten.describe(), "--region / --intensity / --scenario"))
    emb = sc.embodied_kg_per_gpu_hour() if sc is not None else 0.0
    if sc is not None:
        A.append(Assumption("embodied", f"{emb * 1000:.1f} g per GPU-hour",
                            sc.figures["embodied_kg_per_gpu"].describe(), "--scenario"))
    fp: Footprint | None = None
    parts: dict[str, float] = {}
    if gpu_hours is not None:
        fp = footprint(gpu_hours, gpu_power_w, pue, inten.g_per_kwh, emb, price_per_gpu_hour)
        if price_per_gpu_hour is None and sc is not None:
            cost = sc.cost_usd(fp.kwh, gpu_hours)
            fp.cost_usd = cost.pop("total")
            parts = cost
        elif price_per_gpu_hour is not None:
            parts = {"instances": fp.cost_usd or 0.0}
    if price_per_gpu_hour is not None:
        A.append(Assumption("price", price_per_gpu_hour, "given, USD per GPU-hour", "--price-per-gpu-hour"))
    return Estimate(params=float(params), tokens=None if tokens is None else float(tokens), precision=prec, gpu=gname,
                    gpu_memory_gb=float(g["memory_gb"]), memory=mem, gpus_to_store=store, gpus_to_fit=fit, gpus=gpus,
                    flops=flops, peak_tflops=None if peak_tflops is None else float(peak_tflops),
                    mfu=None if mfu is None else float(mfu), duration_s=duration_s, gpu_hours=gpu_hours, footprint=fp,
                    intensity=inten, scenario=sc.name if sc else None, cost_parts=parts, assumptions=A, notes=notes,
                    mode=md, compute_precision=cprec, fits=fits, problem=problem, fixes=fixes)
