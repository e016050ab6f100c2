"""What GPU memory a transformer needs to be stored and to be trained, counted part by part.

To store: the weights, ``N x bytes per parameter`` (4 / 2 / 2 / 1 / 0.5 bytes for fp32 / fp16 /
bf16 / int8 / 4-bit: 1e9 parameters take 4 / 2 / 2 / 1 / 0.5 GB).

To train, on top of the weights:

- gradients, one per parameter, in the weights' precision;
- optimizer states: Adam keeps two per parameter (first and second moment), SGD with momentum one;
  with ``states="fp32"`` (mixed precision, the usual recipe) they are fp32 and a fp32 master copy
  of the weights is kept when the weights are not fp32 (2 + 2 + 4 + 8 = 16 bytes per parameter for
  bf16 with Adam, Rajbhandari et al., ZeRO, 2020); with ``states="same"`` everything stays in the
  one precision (4 + 4 + 8 = 16 bytes per parameter in fp32, 8 in fp16);
- activations kept for the backward pass, per transformer layer ``s*b*h*(34 + 5*a*s/h)`` bytes with
  16-bit activations (Korthikanti et al., 'Reducing Activation Recomputation in Large Transformer
  Models', 2022, no tensor parallelism), scaled to the activation precision; the ``5*a*s/h`` term
  (attention scores) is not stored with flash attention; full checkpointing keeps ``2*s*b*h`` per
  layer plus one layer recomputed.

The shape (layers, hidden size) comes from the GPT-3 family (Brown et al. 2020, Table 2.1): the
nearest model's depth, the hidden size that gives N parameters at ``N ~ 12 * layers * hidden^2``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import GreentrackError, suggest

GB = 1e9
BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "4bit": 0.5}
PRECISION_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32", "32": "fp32", "32bit": "fp32", "32-bit": "fp32",
    "fp16": "fp16", "float16": "fp16", "half": "fp16", "16": "fp16", "16bit": "fp16", "16-bit": "fp16",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp8": "fp8", "float8": "fp8",
    "int8": "int8", "8bit": "int8", "8-bit": "int8",
    "4bit": "4bit", "4-bit": "4bit", "int4": "4bit", "nf4": "4bit", "fp4": "4bit",
}
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd-momentum": 1, "sgd": 0}
# GPT-3 family (Brown et al. 2020, Table 2.1): parameters, layers, hidden size
GPT3_SHAPES = [(125e6, 12, 768), (350e6, 24, 1024), (760e6, 24, 1536), (1.3e9, 24, 2048), (2.7e9, 32, 2560),
               (6.7e9, 32, 4096), (13e9, 40, 5140), (175e9, 96, 12288)]
HEAD_DIM = 128


class EstimateError(GreentrackError):
    """Bad input to an estimate: non-positive sizes, unknown precision, GPU or optimizer."""


def norm_precision(p: str) -> str:
    """``bfloat16`` -> ``bf16``; an unknown one is a one-line error with close matches."""
    key = str(p).strip().lower().replace("_", "")
    if key in PRECISION_ALIASES:
        return PRECISION_ALIASES[key]
    raise EstimateError(f"unknown precision {p!r}" + (suggest(key, list(PRECISION_ALIASES))
                        or "; use fp32, fp16, bf16, fp8, int8 or 4bit"))


def shape_for(params: float) -> tuple[int, int]:
    """(layers, hidden) of a GPT-style model of about *params* parameters."""
    _, layers, _ = min(GPT3_SHAPES, key=lambda s: abs(math.log(s[0] / params)))
    hidden = max(64, int(round(math.sqrt(params / (12 * layers)))))
    return layers, hidden


@dataclass
class MemoryBreakdown:
    """Bytes for each part; ``*_gb`` properties in GB (1e9 bytes)."""

    params: float
    precision: str
    states: str
    optimizer: str
    weights: float
    gradients: float
    optimizer_states: float
    master_weights: float
    activations: float  # one micro-batch, on one GPU
    layers: int
    hidden: int
    seq_len: int
    micro_batch: int
    flash_attention: bool
    checkpointing: bool
    activation_bytes: float

    @property
    def model_states(self) -> float:
        """Weights, gradients, optimizer states and master weights: what sharding spreads over GPUs."""
        return self.weights + self.gradients + self.optimizer_states + self.master_weights

    @property
    def training(self) -> float:
        """Everything on one GPU, unsharded: model states plus one micro-batch of activations."""
        return self.model_states + self.activations

    def bytes_per_param(self) -> dict[str, float]:
        return {k: getattr(self, k) / self.params for k in ("weights", "gradients", "optimizer_states",
                                                            "master_weights", "activations")}

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.update({"model_states": self.model_states, "training": self.training})
        return d


def activation_bytes_per_layer(seq_len: int, micro_batch: int, hidden: int, heads: float, act_bytes: float,
                               flash_attention: bool) -> float:
    """Korthikanti et al. (2022) eq. 2 per layer, rescaled from 16-bit to *act_bytes* per value."""
    per_token = 34.0 + (0.0 if flash_attention else 5.0 * heads * seq_len / hidden)
    return seq_len * micro_batch * hidden * per_token * act_bytes / 2.0


def memory(params: float, precision: str = "bf16", *, optimizer: str = "adam", states: str = "fp32",
           seq_len: int = 2048, micro_batch: int = 1, layers: int | None = None, hidden: int | None = None,
           flash_attention: bool = True, checkpointing: bool = False) -> MemoryBreakdown:
    """Memory to store and to train a transformer of *params* parameters (see the module docstring)."""
    if not isinstance(params, (int, float)) or not params > 0 or math.isinf(params):
        raise EstimateError(f"parameters must be a positive number, got {params!r}")
    prec = norm_precision(precision)
    opt = optimizer.strip().lower()
    if opt not in OPTIMIZER_STATES:
        raise EstimateError(f"unknown optimizer {optimizer!r}" + (suggest(opt, list(OPTIMIZER_STATES))
                            or f"; use {', '.join(OPTIMIZER_STATES)}"))
    if states not in ("fp32", "same"):
        raise EstimateError(f"optimizer states must be 'fp32' (mixed precision) or 'same', got {states!r}")
    for label, v in (("sequence length", seq_len), ("micro-batch", micro_batch)):
        if not isinstance(v, int) or v < 1:
            raise EstimateError(f"{label} must be a positive integer, got {v!r}")
    for label, v in (("layers", layers), ("hidden size", hidden)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise EstimateError(f"{label} must be a positive integer, got {v!r}")
    b = BYTES_PER_PARAM[prec]
    d_layers, d_hidden = shape_for(params)
    if layers is not None and hidden is None:
        hidden = max(64, int(round(math.sqrt(params / (12 * layers)))))
    if hidden is not None and layers is None:
        layers = max(1, int(round(params / (12 * hidden * hidden))))
    L, h = layers or d_layers, hidden or d_hidden
    heads = h / HEAD_DIM
    state_b = 4.0 if states == "fp32" else b
    # activations: 16-bit for fp16/bf16 and below-16-bit weights (computed after dequantisation);
    # with states="same", in the one precision (what the rule of thumb assumes)
    act_b = b if states == "same" else (4.0 if prec == "fp32" else 2.0)
    if checkpointing:
        acts = L * 2.0 * seq_len * micro_batch * h * act_b / 2.0 + activation_bytes_per_layer(
            seq_len, micro_batch, h, heads, act_b, flash_attention)
    else:
        acts = L * activation_bytes_per_layer(seq_len, micro_batch, h, heads, act_b, flash_attention)
    master = params * 4.0 if (states == "fp32" and b < 4.0 and OPTIMIZER_STATES[opt] >= 0) else 0.0
    return MemoryBreakdown(
        params=float(params), precision=prec, states=states, optimizer=opt, weights=params * b,
        gradients=params * b, optimizer_states=params * OPTIMIZER_STATES[opt] * state_b, master_weights=master,
        activations=acts, layers=L, hidden=h, seq_len=seq_len, micro_batch=micro_batch,
        flash_attention=flash_attention, checkpointing=checkpointing, activation_bytes=act_b)


def gpus_to_fit(m: MemoryBreakdown, gpu_memory_gb: float, usable: float = 0.9) -> int | None:
    """GPUs needed to train with model states sharded evenly (ZeRO-3 / FSDP) and one micro-batch of
    activations on each GPU; None when one micro-batch alone does not fit a GPU."""
    room = gpu_memory_gb * GB * usable - m.activations
    if room <= 0:
        return None
    return max(1, math.ceil(m.model_states / room))


def gpus_to_store(m: MemoryBreakdown, gpu_memory_gb: float, usable: float = 0.9) -> int:
    """GPUs needed to hold the weights alone (inference without KV cache)."""
    return max(1, math.ceil(m.weights / (gpu_memory_gb * GB * usable)))
