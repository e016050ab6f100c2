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
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import NotFoundError, suggest
from .footprint import from_kwh
from .grid import DATA_DIR, Intensity
from .memory import GB, EstimateError, MemoryBreakdown, gpus_to_fit, gpus_to_store, memory, norm_precision

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


@dataclass
class Estimate:
    """The plan for one training run; see the module docstring for the arithmetic."""

    params: float
    tokens: float
    precision: str
    gpu: str
    gpu_memory_gb: float
    memory: MemoryBreakdown
    gpus_to_store: int
    gpus_to_fit: int | None
    gpus: int
    flops: float
    peak_tflops: float
    mfu: float
    duration_s: float
    gpu_hours: float
    footprint: Footprint
    intensity: Intensity
    scenario: str | None
    cost_parts: dict[str, float]
    assumptions: list[Assumption]
    notes: list[str] = field(default_factory=list)

    @property
    def energy_kwh(self) -> float:
        return self.footprint.kwh

    @property
    def co2e_kg(self) -> float:
        return self.footprint.co2e_kg

    @property
    def cost_usd(self) -> float | None:
        return self.footprint.cost_usd

    def as_dict(self) -> dict[str, Any]:
        fp = self.footprint
        return {
            "params": self.params, "tokens": self.tokens, "precision": self.precision, "gpu": self.gpu,
            "memory_gb": {k: v / GB for k, v in (("weights", self.memory.weights),
                                                  ("gradients", self.memory.gradients),
                                                  ("optimizer_states", self.memory.optimizer_states),
                                                  ("master_weights", self.memory.master_weights),
                                                  ("activations_per_gpu", self.memory.activations),
                                                  ("model_states", self.memory.model_states),
                                                  ("training_unsharded", self.memory.training))},
            "gpus_to_store": self.gpus_to_store, "gpus_to_fit": self.gpus_to_fit, "gpus": self.gpus,
            "flops": self.flops, "peak_tflops": self.peak_tflops, "mfu": self.mfu, "duration_s": self.duration_s,
            "gpu_hours": self.gpu_hours, "gpu_power_w": fp.gpu_power_w, "it_kwh": fp.it_kwh, "pue": fp.pue,
            "energy_kwh": fp.kwh, "intensity_g_per_kwh": fp.intensity_g_per_kwh,
            "intensity_source": self.intensity.describe(), "co2e_operational_kg": fp.operational_kg,
            "co2e_embodied_kg": fp.embodied_kg, "co2e_kg": fp.co2e_kg, "cost_usd": fp.cost_usd,
            "cost_parts": self.cost_parts, "scenario": self.scenario,
            "assumptions": [{"name": a.name, "value": a.value, "source": a.source, "option": a.option}
                            for a in self.assumptions],
            "notes": self.notes,
        }


def _positive(label: str, v: Any, integer: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(v)
    if not ok or (integer and int(v) != v):
        raise EstimateError(f"{label} must be a positive {'integer' if integer else 'number'}, got {v!r}")


def _compute_precision(prec: str, peaks: dict[str, float]) -> str:
    if prec == "4bit":  # weights dequantised for the matmuls
        return "bf16" if "bf16" in peaks else "fp16"
    return prec


def estimate(params: float, tokens: float | None = None, *, precision: str = "bf16", gpu: str = "H100",
             mfu: float | None = None, gpus: int | None = None, scenario: str | None = None,
             region: str | None = None, pue: float | None = None, intensity_g_per_kwh: float | None = None,
             gpu_power_w: float | None = None, peak_tflops: float | None = None, gpu_hours: float | None = None,
             price_per_gpu_hour: float | None = None, optimizer: str = "adam", states: str = "fp32",
             seq_len: int = 2048, micro_batch: int = 1, layers: int | None = None, hidden: int | None = None,
             flash_attention: bool = True, checkpointing: bool = False, max_days: float | None = None,
             scenario_files: Iterable[str | Path] = ()) -> Estimate:
    """Estimate a training run. Everything but *params* has a default, listed in ``assumptions``.

    Bad input (non-positive sizes, unknown precision, GPU or scenario) raises a
    :class:`~greentrack.errors.GreentrackError` with one clear line.
    """
    _positive("parameters", params)
    A: list[Assumption] = []
    notes: list[str] = []
    if tokens is None:
        tokens = CHINCHILLA_TOKENS_PER_PARAM * params
        A.append(Assumption("tokens", tokens, "Chinchilla-optimal 20 tokens per parameter (Hoffmann et al. 2022)",
                            "--tokens"))
    _positive("tokens", tokens)
    prec = norm_precision(precision)
    gname, g = find_gpu(gpu)
    A.append(Assumption("gpu", gname, f"{g['source']} ({g['year']})", "--gpu"))
    peaks = g["peak_tflops"]
    cprec = _compute_precision(prec, peaks)
    if prec == "4bit":
        A.append(Assumption("compute precision", cprec, "4-bit weights are dequantised for the matmuls "
                            "(QLoRA-style); matmuls run at 16-bit peak", "--peak-tflops"))
    if peak_tflops is None:
        if cprec not in peaks:
            raise EstimateError(f"{gname} has no {cprec} peak in greentrack's GPU table (it has "
                                f"{', '.join(peaks)}); give --peak-tflops")
        peak_tflops = float(peaks[cprec])
        A.append(Assumption("peak TFLOPS", peak_tflops, f"{gname} dense {cprec} peak, no sparsity "
                            "(fp32 without TF32)" if cprec == "fp32" else f"{gname} dense {cprec} peak, no sparsity",
                            "--peak-tflops"))
    _positive("peak TFLOPS", peak_tflops)
    if mfu is None:
        mfu = DEFAULT_MFU
        A.append(Assumption("MFU", mfu, "model FLOPs utilisation typical of large runs: PaLM 46.2% "
                            "(Chowdhery et al. 2022), LLaMA-65B ~47% from 380 tokens/s/GPU (Touvron et al. 2023)",
                            "--mfu"))
    if not isinstance(mfu, (int, float)) or not 0 < mfu <= 1:
        raise EstimateError(f"MFU must be between 0 and 1, got {mfu!r}")
    mem = memory(params, prec, optimizer=optimizer, states=states, seq_len=seq_len, micro_batch=micro_batch,
                 layers=layers, hidden=hidden, flash_attention=flash_attention, checkpointing=checkpointing)
    A.append(Assumption("memory model", f"{mem.optimizer}, states {states}, seq {seq_len} x micro-batch "
                        f"{micro_batch}, {mem.layers} layers x {mem.hidden} hidden, "
                        f"{'flash attention' if flash_attention else 'attention scores stored'}"
                        f"{', full checkpointing' if checkpointing else ''}",
                        "weights/gradients/optimizer per ZeRO (Rajbhandari et al. 2020); activations per "
                        "Korthikanti et al. 2022; shape from GPT-3 (Brown et al. 2020)",
                        "--optimizer --states --seq-len --micro-batch --layers --hidden --no-flash --checkpointing"))
    if prec in ("int8", "4bit", "fp8"):
        notes.append(f"training with {prec} weights is modelled as full training (gradients in {prec}, master "
                     "weights and optimizer states as --states says); adapter fine-tuning of a frozen quantised "
                     "model (QLoRA) is not modelled")
    fit = gpus_to_fit(mem, g["memory_gb"], USABLE_MEMORY)
    store = gpus_to_store(mem, g["memory_gb"], USABLE_MEMORY)
    A.append(Assumption("usable GPU memory", USABLE_MEMORY, "greentrack assumption: 10% kept for the CUDA "
                        "context and fragmentation; model states sharded evenly (ZeRO-3 / FSDP)"))
    if fit is None:
        notes.append(f"one micro-batch's activations ({mem.activations / GB:.1f} GB) do not fit a {gname}: "
                     "lower --micro-batch or --seq-len, or use --checkpointing")
    flops = 6.0 * params * tokens
    if gpus is None and max_days is not None:
        _positive("days", max_days)
        need = math.ceil(flops / (peak_tflops * 1e12 * mfu * max_days * 86400.0))
        gpus = max(need, fit or 1)
        A.append(Assumption("GPUs", gpus, f"the fewest that fit the training state and finish within {max_days:g} "
                            "days", "--gpus / --days"))
    elif gpus is None:
        gpus = fit or 1
        A.append(Assumption("GPUs", gpus, "the fewest that fit the training state", "--gpus / --days"))
    _positive("GPUs", gpus, integer=True)
    gpus = int(gpus)
    if fit is not None and gpus < fit:
        notes.append(f"{gpus} {gname} cannot hold the training state: it needs {fit}")
    if gpu_hours is None:
        duration_s = flops / (gpus * peak_tflops * 1e12 * mfu)
        gpu_hours = gpus * duration_s / 3600.0
    else:
        _positive("GPU-hours", gpu_hours)
        duration_s = gpu_hours / gpus * 3600.0
        A.append(Assumption("GPU-hours", gpu_hours, "given (FLOPs, peak and MFU not used for duration)",
                            "--gpu-hours"))
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
    fp = footprint(gpu_hours, gpu_power_w, pue, inten.g_per_kwh, emb, price_per_gpu_hour)
    parts: dict[str, float] = {}
    if price_per_gpu_hour is None and sc is not None:
        cost = sc.cost_usd(fp.kwh, gpu_hours)
        fp.cost_usd = cost.pop("total")
        parts = cost
    elif price_per_gpu_hour is not None:
        parts = {"instances": fp.cost_usd or 0.0}
        A.append(Assumption("price", price_per_gpu_hour, "given, USD per GPU-hour", "--price-per-gpu-hour"))
    return Estimate(params=float(params), tokens=float(tokens), precision=prec, gpu=gname,
                    gpu_memory_gb=float(g["memory_gb"]), memory=mem, gpus_to_store=store, gpus_to_fit=fit, gpus=gpus,
                    flops=flops, peak_tflops=float(peak_tflops), mfu=float(mfu), duration_s=duration_s,
                    gpu_hours=gpu_hours, footprint=fp, intensity=inten, scenario=sc.name if sc else None,
                    cost_parts=parts, assumptions=A, notes=notes)


def render_text(e: Estimate) -> str:
    """The estimate as a person reads it: memory, compute, energy, carbon, cost, then assumptions."""
    from ..units import fmt_duration

    m, fp = e.memory, e.footprint
    bpp = m.bytes_per_param()

    def gb(v: float) -> str:
        return f"{v / GB:,.1f} GB"

    lines = [f"estimate: {e.params:.3g} parameters, {e.tokens:.3g} tokens, {e.precision} on {e.gpu} "
             f"({e.gpu_memory_gb:g} GB)", "", "memory"]
    rows = [("weights", m.weights, f"{bpp['weights']:g} B/param ({e.precision})"),
            ("gradients", m.gradients, f"{bpp['gradients']:g} B/param"),
            ("optimizer states", m.optimizer_states, f"{bpp['optimizer_states']:g} B/param ({m.optimizer}, "
             f"{'fp32' if m.states == 'fp32' else e.precision})"),
            ("master weights", m.master_weights, "fp32 copy (mixed precision)" if m.master_weights else "none"),
            ("activations", m.activations, f"per GPU: {m.micro_batch} x {m.seq_len} tokens, {m.layers} layers x "
             f"{m.hidden}"),
            ("to store", m.weights, f"fits on {e.gpus_to_store} GPU(s)"),
            ("to train", m.training, f"unsharded; sharded over GPUs: "
             f"{e.gpus_to_fit if e.gpus_to_fit is not None else 'does not fit'}")]
    for name, v, why in rows:
        lines.append(f"  {name:<17} {gb(v):>12}  {why}")
    lines += ["", "compute",
              f"  {'FLOPs':<17} {e.flops:>12.3g}  6 x N x D",
              f"  {'GPUs':<17} {e.gpus:>12}  peak {e.peak_tflops:g} TFLOPS each, MFU {e.mfu:g}",
              f"  {'duration':<17} {fmt_duration(e.duration_s):>12}  ({e.duration_s / 86400:.1f} days)",
              f"  {'GPU-hours':<17} {e.gpu_hours:>12,.0f}",
              "", "energy, carbon, cost",
              f"  {'IT energy':<17} {fp.it_kwh:>12,.1f} kWh  at {fp.gpu_power_w:g} W per GPU",
              f"  {'energy':<17} {fp.kwh:>12,.1f} kWh  with PUE {fp.pue:g}",
              f"  {'CO2e operational':<17} {fp.operational_kg:>12,.1f} kg   at {fp.intensity_g_per_kwh:.0f} gCO2e/kWh",
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
