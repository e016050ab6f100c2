"""The settings a study compares, and whether this machine can run each one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PRECISIONS = ("fp32", "tf32", "bf16", "fp8")


@dataclass(frozen=True)
class Setting:
    """One way to run the workload.

    *task* ``train`` runs optimizer steps (full fine-tuning, or LoRA adapters when *lora_rank* is
    set); ``generate`` runs greedy generation with the ``teacher`` or its half-width ``student``.
    *batch_scale* multiplies the study's batch size.
    """

    name: str
    task: str = "train"
    precision: str = "fp32"
    lora_rank: int | None = None
    checkpointing: bool = False
    batch_scale: int = 1
    model: str = "teacher"

    def tags(self) -> dict[str, str]:
        t = {"task": self.task, "precision": self.precision, "model": self.model,
             "technique": "lora" if self.lora_rank else ("full" if self.task == "train" else "inference"),
             "checkpointing": "on" if self.checkpointing else "off", "batch_scale": str(self.batch_scale)}
        if self.lora_rank:
            t["lora_rank"] = str(self.lora_rank)
        return t


STANDARD: tuple[Setting, ...] = (
    Setting("fp32", precision="fp32"),
    Setting("tf32", precision="tf32"),
    Setting("bf16", precision="bf16"),
    Setting("fp8", precision="fp8"),
    Setting("bf16-lora-r8", precision="bf16", lora_rank=8),
    Setting("bf16-lora-r64", precision="bf16", lora_rank=64),
    Setting("bf16-ckpt", precision="bf16", checkpointing=True),
    Setting("bf16-batch-x2", precision="bf16", batch_scale=2),
    Setting("gen-teacher", task="generate", precision="bf16", model="teacher"),
    Setting("gen-student", task="generate", precision="bf16", model="student"),
)
BY_NAME = {s.name: s for s in STANDARD}
QUICK = ("fp32", "bf16", "bf16-lora-r8", "bf16-ckpt", "gen-teacher", "gen-student")


def select(spec: str) -> list[Setting]:
    """``all``, ``quick`` or a comma-separated list of setting names."""
    from ..errors import GreentrackError, suggest

    spec = (spec or "all").strip()
    if spec == "all":
        return list(STANDARD)
    names = list(QUICK) if spec == "quick" else [n.strip() for n in spec.split(",") if n.strip()]
    out = []
    for n in names:
        if n not in BY_NAME:
            raise GreentrackError(f"unknown study setting {n!r}; known: {', '.join(BY_NAME)}" + suggest(n, BY_NAME))
        out.append(BY_NAME[n])
    return out


def unavailable(setting: Setting, device: Any) -> str | None:
    """Why *setting* cannot run on *device* here (None when it can)."""
    import importlib.util

    import torch

    cuda = getattr(device, "type", str(device)) == "cuda"
    if setting.lora_rank and importlib.util.find_spec("peft") is None:
        return "LoRA needs peft (pip install peft)"
    if setting.precision == "bf16" and not cuda and not hasattr(torch, "bfloat16"):
        return "this torch has no bfloat16"
    if setting.precision == "fp8":
        if not cuda:
            return "fp8 needs an NVIDIA GPU of compute capability 8.9 or newer"
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < (8, 9):
            return f"fp8 needs compute capability 8.9 or newer (this GPU: {major}.{minor})"
        if importlib.util.find_spec("torchao") is None:
            return "fp8 training needs torchao (pip install torchao), which is not installed"
    return None
