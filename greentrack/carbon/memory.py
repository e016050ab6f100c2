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

Fine-tuning with low-rank adapters (``mode="lora"`` or ``"qlora"``) trains only the adapters
(Hu et al., 'LoRA', 2021): each adapted ``d_in x d_out`` matrix gains ``rank * (d_in + d_out)``
trainable parameters; the base weights are frozen, so they have no gradients and no optimizer
states. The parts are counted separately:

- frozen weights: the base in its precision; QLoRA stores it in 4-bit NormalFloat with double
  quantization, 4 + 0.127 bits per parameter (Dettmers et al., 'QLoRA', 2023, section 3);
- adapters, their gradients and optimizer states: LoRA adapters in fp32 (Hugging Face PEFT casts
  16-bit adapters to fp32 by default, ``autocast_adapter_dtype=True``), QLoRA adapters and their
  gradients in bf16 with 32-bit Adam states (Dettmers et al. 2023, eq. 5; the paper's
  ``paged_adamw_32bit``); with a paged optimizer the states move to CPU memory when the GPU is
  full, so they need not fit on it;
- adapted matrices per layer, LLaMA names: ``q k v o`` (hidden x hidden) and ``gate up down``
  (hidden x 8/3 hidden, a SwiGLU MLP: 12 x hidden^2 per layer in all, as above);
- activations as for full training (the backward pass still runs through the frozen layers: an
  upper bound, since a frozen matrix needs no saved input for a weight gradient).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import GreentrackError, suggest
from ..units import article

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
MODES = ("full", "lora", "qlora")
# NF4 with double quantization: 4 bits + 8/64 + 32/(64*256) bits of constants (Dettmers et al. 2023)
NF4_DQ_BYTES = (4.0 + 8 / 64 + 32 / (64 * 256)) / 8.0
# adapted matrices of one layer as (d_in, d_out): "h" the hidden size, "f" the MLP's inner size
MODULES = {"q": ("h", "h"), "k": ("h", "h"), "v": ("h", "h"), "o": ("h", "h"),
           "gate": ("h", "f"), "up": ("h", "f"), "down": ("f", "h")}
SWIGLU_FFN = 8 / 3  # default MLP inner size, x hidden: a SwiGLU MLP of 8 x hidden^2 parameters (LLaMA)
MODULE_GROUPS = {"attention": ("q", "k", "v", "o"), "mlp": ("gate", "up", "down"),
                 "all": tuple(MODULES), "all-linear": tuple(MODULES)}
LORA_DEFAULTS = {  # mode: (rank, target modules, source)
    "lora": (8, ("q", "v"), "rank 8 on the query and value projections: the LoRA paper's setting (Hu et al. 2021) "
                            "and Hugging Face PEFT's default for LLaMA"),
    "qlora": (64, tuple(MODULES), "rank 64 on all linear layers of every block, as QLoRA trains Guanaco (Dettmers "
                                  "et al. 2023, section 4; scripts/finetune_guanaco_65b.sh: --lora_r 64 --lora_modules "
                                  "all)"),
}
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


def norm_modules(modules: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"q_proj,v_proj"``, ``"attention"``, ``"all-linear"`` -> ``("q", "v")``...; unknown is a one-line error."""
    items = modules.split(",") if isinstance(modules, str) else list(modules)
    out: list[str] = []
    for raw in items:
        key = str(raw).strip().lower()
        if not key:
            continue
        key = key[:-5] if key.endswith("_proj") else key
        names = MODULE_GROUPS.get(key) or ((key,) if key in MODULES else None)
        if names is None:
            choices = list(MODULES) + list(MODULE_GROUPS)
            raise EstimateError(f"unknown target module {raw!r}" + (suggest(key, choices) or
                                f"; use {', '.join(MODULES)}, attention, mlp or all-linear"))
        out += [n for n in names if n not in out]
    if not out:
        raise EstimateError("name at least one target module: q, k, v, o, gate, up, down, attention, mlp or all-linear")
    return tuple(n for n in MODULES if n in out)


def adapter_params(layers: int, hidden: int, rank: int, modules: tuple[str, ...], ffn_hidden: float | None = None,
                   ) -> float:
    """Trainable LoRA parameters: ``rank * (d_in + d_out)`` per adapted matrix, per layer.

    *ffn_hidden*: the MLP's inner size (default 8/3 x *hidden*, a SwiGLU MLP).
    """
    size = {"h": float(hidden), "f": float(ffn_hidden) if ffn_hidden else SWIGLU_FFN * hidden}
    return float(layers * sum(rank * (size[MODULES[m][0]] + size[MODULES[m][1]]) for m in modules))


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
    mode: str = "full"
    adapters: float = 0.0  # LoRA adapter weights (0 for full training)
    trainable_params: float = 0.0  # what gradients and optimizer states are kept for
    lora_rank: int | None = None
    target_modules: tuple[str, ...] = ()
    adapter_precision: str | None = None
    paged_optimizer: bool = False

    @property
    def model_states(self) -> float:
        """Weights, adapters, gradients, optimizer states and master weights: what sharding spreads over GPUs."""
        return self.weights + self.adapters + self.gradients + self.optimizer_states + self.master_weights

    @property
    def resident_states(self) -> float:
        """The model states that must be in GPU memory: a paged optimizer's states may wait in CPU memory."""
        return self.model_states - (self.optimizer_states if self.paged_optimizer else 0.0)

    @property
    def training(self) -> float:
        """Everything on one GPU, unsharded: model states plus one micro-batch of activations."""
        return self.model_states + self.activations

    def bytes_per_param(self) -> dict[str, float]:
        """Bytes per parameter: weights per model parameter, the trained parts per trainable parameter."""
        n = self.trainable_params or self.params
        return {"weights": self.weights / self.params, "adapters": self.adapters / n, "gradients": self.gradients / n,
                "optimizer_states": self.optimizer_states / n, "master_weights": self.master_weights / n,
                "activations": self.activations / self.params}

    def largest_part(self) -> tuple[str, float]:
        """``(name, bytes)`` of the biggest part of the unsharded training memory."""
        parts = {"frozen weights" if self.mode != "full" else "weights": self.weights, "adapters": self.adapters,
                 "gradients": self.gradients, "optimizer states": self.optimizer_states,
                 "master weights": self.master_weights, "activations": self.activations}
        return max(parts.items(), key=lambda kv: kv[1])

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.update({"model_states": self.model_states, "resident_states": self.resident_states,
                  "training": self.training})
        return d


def activation_bytes_per_layer(seq_len: int, micro_batch: int, hidden: int, heads: float, act_bytes: float,
                               flash_attention: bool) -> float:
    """Korthikanti et al. (2022) eq. 2 per layer, rescaled from 16-bit to *act_bytes* per value."""
    per_token = 34.0 + (0.0 if flash_attention else 5.0 * heads * seq_len / hidden)
    return seq_len * micro_batch * hidden * per_token * act_bytes / 2.0


def default_mode(precision: str) -> str:
    """The mode a precision implies: 4-bit weights are a frozen base for adapters (QLoRA), else full training."""
    return "qlora" if norm_precision(precision) == "4bit" else "full"


def memory(params: float, precision: str | None = None, *, optimizer: str = "adam", states: str = "fp32",
           seq_len: int = 2048, micro_batch: int = 1, layers: int | None = None, hidden: int | None = None,
           flash_attention: bool = True, checkpointing: bool = False, mode: str | None = None,
           lora_rank: int | None = None, target_modules: str | tuple[str, ...] | list[str] | None = None,
           paged_optimizer: bool | None = None, ffn_hidden: int | None = None) -> MemoryBreakdown:
    """Memory to store and to train a transformer of *params* parameters (see the module docstring).

    *mode*: ``full`` (every weight trained), ``lora`` (adapters on a frozen base in *precision*) or
    ``qlora`` (adapters on a frozen 4-bit NF4 base); None: ``qlora`` for 4-bit, else ``full``.
    *precision* None: bf16 (4bit for qlora).
    """
    if not isinstance(params, (int, float)) or not params > 0 or math.isinf(params):
        raise EstimateError(f"parameters must be a positive number, got {params!r}")
    if mode is not None and str(mode).strip().lower() not in MODES:
        raise EstimateError(f"unknown mode {mode!r}" + (suggest(str(mode).strip().lower(), MODES)
                            or "; use full, lora or qlora"))
    md = str(mode).strip().lower() if mode is not None else None
    if precision is None:
        precision = "4bit" if md == "qlora" else "bf16"
    prec = norm_precision(precision)
    md = md or default_mode(prec)
    if md == "qlora" and prec != "4bit":
        raise EstimateError(f"QLoRA keeps the frozen base in 4-bit, not {prec}: use --precision 4bit, or --mode lora "
                            f"for adapters on {article(prec)} {prec} base")
    if md == "full" and prec == "4bit":
        raise EstimateError("4bit weights cannot be trained directly: they are a frozen base for adapters; use "
                            "--mode qlora, or a 16-bit --precision for full training")
    if md == "full" and (lora_rank is not None or target_modules):
        raise EstimateError("--lora-rank and --target-modules are for --mode lora or qlora")
    opt = optimizer.strip().lower()
    if opt not in OPTIMIZER_STATES:
        raise EstimateError(f"unknown optimizer {optimizer!r}" + (suggest(opt, list(OPTIMIZER_STATES))
                            or f"; use {', '.join(OPTIMIZER_STATES)}"))
    if states not in ("fp32", "same"):
        raise EstimateError(f"optimizer states must be 'fp32' (mixed precision) or 'same', got {states!r}")
    for label, v in (("sequence length", seq_len), ("micro-batch", micro_batch)):
        if not isinstance(v, int) or v < 1:
            raise EstimateError(f"{label} must be a positive integer, got {v!r}")
    for label, dim in (("layers", layers), ("hidden size", hidden), ("MLP inner size", ffn_hidden)):
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise EstimateError(f"{label} must be a positive integer, got {dim!r}")
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
    common = dict(params=float(params), precision=prec, states=states, optimizer=opt, activations=acts, layers=L,
                  hidden=h, seq_len=seq_len, micro_batch=micro_batch, flash_attention=flash_attention,
                  checkpointing=checkpointing, activation_bytes=act_b, mode=md)
    if md == "full":
        if paged_optimizer:
            raise EstimateError("--paged-optimizer is modelled for --mode lora or qlora only")
        master = params * 4.0 if (states == "fp32" and b < 4.0) else 0.0
        return MemoryBreakdown(weights=params * b, gradients=params * b,
                               optimizer_states=params * OPTIMIZER_STATES[opt] * state_b, master_weights=master,
                               trainable_params=float(params), **common)  # type: ignore[arg-type]
    rank = LORA_DEFAULTS[md][0] if lora_rank is None else lora_rank
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise EstimateError(f"LoRA rank must be a positive integer, got {rank!r}")
    mods = norm_modules(target_modules) if target_modules else LORA_DEFAULTS[md][1]
    n = adapter_params(L, h, rank, mods, ffn_hidden)
    # QLoRA: bf16 adapters (Dettmers et al. 2023, eq. 5); LoRA: fp32 adapters (PEFT's autocast_adapter_dtype)
    # with states="same", adapters and their states stay in the base's (16-bit at least) precision
    a_prec = ("bf16" if md == "qlora" else "fp32") if states == "fp32" else (prec if b >= 2.0 else "bf16")
    a_b = BYTES_PER_PARAM[a_prec]
    a_state_b = 4.0 if states == "fp32" else a_b
    frozen_b = NF4_DQ_BYTES if md == "qlora" else b
    paged = (md == "qlora") if paged_optimizer is None else bool(paged_optimizer)
    return MemoryBreakdown(weights=params * frozen_b, adapters=n * a_b, gradients=n * a_b,
                           optimizer_states=n * OPTIMIZER_STATES[opt] * a_state_b, master_weights=0.0,
                           trainable_params=n, lora_rank=rank, target_modules=mods, adapter_precision=a_prec,
                           paged_optimizer=paged, **common)  # type: ignore[arg-type]


def gpus_to_fit(m: MemoryBreakdown, gpu_memory_gb: float, usable: float = 0.9) -> int | None:
    """GPUs needed to train with model states sharded evenly (ZeRO-3 / FSDP) and one micro-batch of
    activations on each GPU; None when one micro-batch alone does not fit a GPU. A paged
    optimizer's states are not counted: they wait in CPU memory when the GPU is full."""
    room = gpu_memory_gb * GB * usable - m.activations
    if room <= 0:
        return None
    return max(1, math.ceil(m.resident_states / room))


def gpus_to_store(m: MemoryBreakdown, gpu_memory_gb: float, usable: float = 0.9) -> int:
    """GPUs needed to hold the weights alone (inference without KV cache)."""
    return max(1, math.ceil(m.weights / (gpu_memory_gb * GB * usable)))
