"""Run a study: every setting, interleaved and repeated, each repetition its own greentrack run.

The order of the settings rotates from one repetition to the next, so slow drifts (a GPU
warming up, a neighbour's load) spread over all settings instead of favouring one. Per
repetition the workload is built afresh (seeded), warmed up outside the measurement, then run
for at least *seconds* inside a session whose ``step()`` marks each optimizer step (or each
generated batch). J/step comes from the session's attribution, reconciled to the energy
counter where the GPU has one.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from .settings import Setting


@dataclass
class Rep:
    """One measured repetition of one setting."""

    setting: str
    rep: int
    run_id: str
    steps: int
    seconds: float
    energy_j: float | None
    j_per_step: float | None
    j_per_sample: float | None
    j_per_token: float | None
    avg_power_w: float | None
    steps_per_s: float
    samples_per_s: float
    tokens_per_s: float
    peak_mem_gb: float | None
    method: str


@dataclass
class Row:
    """A setting's medians over its repetitions, and its saving against the baseline."""

    setting: str
    task: str
    reps: int
    j_per_step: float | None
    j_per_step_min: float | None
    j_per_step_max: float | None
    j_per_sample: float | None
    j_per_token: float | None
    steps_per_s: float | None
    tokens_per_s: float | None
    avg_power_w: float | None
    peak_mem_gb: float | None
    saving_pct: float | None = None  # energy per sample (train) or per token (generate) saved vs baseline
    speedup: float | None = None  # throughput / baseline throughput
    skipped: str | None = None


@dataclass
class Study:
    study_id: str
    size: str
    params: dict[str, int]
    batch_size: int
    seq_len: int
    seconds: float
    device: str
    backend: str
    baseline: str
    rows: list[Row]
    reps: list[Rep] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _device(spec: str) -> Any:
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def environment(device: Any) -> dict[str, Any]:
    """GPU, driver and library versions, for the record."""
    import platform

    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        try:
            import pynvml

            pynvml.nvmlInit()
            env["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # the figure is informative only
            pass
    for mod in ("peft", "torchao", "transformers"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            pass
    return env


class _Workload:
    """A built model with its step function for one setting."""

    def __init__(self, setting: Setting, size: str, batch_size: int, seq_len: int | None, device: Any,
                 gen_tokens: int, seed: int) -> None:
        import torch

        from .models import SIZES, build, student_of

        cfg = SIZES[size]
        if setting.model == "student":
            cfg = student_of(cfg)
        if seq_len:
            from dataclasses import replace

            cfg = replace(cfg, seq_len=seq_len)
        torch.manual_seed(seed)
        self.setting, self.cfg, self.device = setting, cfg, device
        self.batch = batch_size * setting.batch_scale
        self.gen_tokens = gen_tokens
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = setting.precision == "tf32"
            torch.backends.cudnn.allow_tf32 = setting.precision == "tf32"
        model = build(cfg, checkpointing=setting.checkpointing).to(device)
        self.params = sum(p.numel() for p in model.parameters())
        if setting.lora_rank:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=setting.lora_rank, lora_alpha=2 * setting.lora_rank,
                                                     target_modules=["q", "v"], lora_dropout=0.0))
        if setting.precision == "fp8":
            from torchao.float8 import convert_to_float8_training

            convert_to_float8_training(model)
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.model = model
        if setting.task == "train":
            model.train()
            self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        else:
            model.eval()
        self.data = torch.randint(0, cfg.vocab, (self.batch, cfg.seq_len), device=device)

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.setting.precision in ("bf16", "fp8"):
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self) -> tuple[int, int]:
        """One optimizer step or one generated batch; returns (samples, tokens). Waits for the GPU."""
        import torch

        if self.setting.task == "train":
            with self._autocast():
                loss = self.model(self.data, next_token_loss=True)
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            loss.item()  # waits for the step: the mark that follows is when it ended
            return self.batch, self.batch * self.cfg.seq_len
        prompt = self.data[:, : max(1, self.cfg.seq_len - self.gen_tokens)]
        with torch.inference_mode(), self._autocast():
            idx = prompt
            for _ in range(self.gen_tokens):
                nxt = self.model(idx)[:, -1].argmax(-1, keepdim=True)
                idx = torch.cat([idx, nxt], dim=1)
        idx[0, -1].item()
        return self.batch, self.batch * self.gen_tokens

    def close(self) -> None:
        import torch

        del self.model
        if hasattr(self, "opt"):
            del self.opt
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def run_study(settings: Sequence[Setting], *, size: str = "small", batch_size: int = 8, seq_len: int | None = None,
              reps: int = 3, seconds: float = 10.0, warmup_steps: int = 3, device: str = "auto",
              baseline: str | None = None, backend: str | None = None, region: str | None = None,
              db: str | None = None, gen_tokens: int = 16, progress: Callable[[str], None] | None = None) -> Study:
    """Run *settings* interleaved, *reps* times each for at least *seconds*; returns the study."""
    from ..errors import GreentrackError
    from .models import SIZES

    if size not in SIZES:
        raise GreentrackError(f"unknown model size {size!r}: use one of {', '.join(SIZES)}")
    if reps < 1 or seconds <= 0 or batch_size < 1:
        raise GreentrackError("--reps and --batch-size must be at least 1 and --seconds positive")
    dev = _device(device)
    study_id = "study-" + os.urandom(3).hex()
    from .settings import unavailable

    skipped = {st.name: why for st in settings if (why := unavailable(st, dev)) is not None}
    task_of = {s.name: s.task for s in settings}
    todo = [s for s in settings if s.name not in skipped]
    base = baseline or next((s.name for s in todo if s.task == "train"), todo[0].name if todo else "")
    results: list[Rep] = []
    params: dict[str, int] = {}
    backend_used = "-"
    for r in range(reps):
        order = todo[r % len(todo):] + todo[: r % len(todo)] if todo else []
        for st in order:
            if st.name in skipped:
                continue
            try:
                rep, backend_used = _one_rep(st, r, study_id, base, size, batch_size, seq_len, dev, gen_tokens,
                                             warmup_steps, seconds, {"backend": backend, "region": region, "db": db},
                                             params)
            except Exception as exc:  # one setting that cannot run (a library, an OOM) never stops the study
                first = str(exc).splitlines()[0] if str(exc) else ""
                skipped[st.name] = f"failed: {type(exc).__name__}: {first}"[:300]
                if progress:
                    progress(f"rep {r + 1}/{reps} {st.name}: {skipped[st.name]}")
                continue
            results.append(rep)
            if progress:
                jps = "-" if rep.j_per_step is None else f"{rep.j_per_step:.3f} J/step"
                progress(f"rep {r + 1}/{reps} {st.name}: {rep.steps} steps in {rep.seconds:.1f}s, {jps}")
    todo = [s for s in todo if s.name not in skipped]
    results = [r for r in results if r.setting not in skipped]
    rows = summarise(todo, results, base)
    rows += [Row(name, task_of[name], 0, None, None, None, None, None, None, None, None, None, skipped=why)
             for name, why in skipped.items()]
    return Study(study_id, size, params, batch_size, seq_len or SIZES[size].seq_len, seconds, str(dev), backend_used,
                 base, rows, results, environment(dev))


def _one_rep(st: Setting, r: int, study_id: str, base: str, size: str, batch_size: int, seq_len: int | None,
             dev: Any, gen_tokens: int, warmup_steps: int, seconds: float, session_kw: dict[str, Any],
             params: dict[str, int]) -> tuple[Rep, str]:
    """Build, warm up and measure one repetition of one setting; returns it and the power source's name."""
    from .. import session

    wl = _Workload(st, size, batch_size, seq_len, dev, gen_tokens, seed=1234 + r)
    params[st.name] = wl.trainable
    try:
        for _ in range(warmup_steps):
            wl.step()
        if wl.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(dev)
        tags = dict(st.tags(), study=study_id, setting=st.name, rep=str(r), size=size,
                    baseline="yes" if st.name == base else "no")
        with session(f"{study_id}:{st.name}", tags=tags, **session_kw) as s:
            t0 = time.perf_counter()
            n = samples = tokens = 0
            while True:
                a, b = wl.step()
                s.step(samples=a, tokens=b)
                n, samples, tokens = n + 1, samples + a, tokens + b
                if time.perf_counter() - t0 >= seconds:
                    break
            dt = time.perf_counter() - t0
        res = s.result
        assert res is not None  # the session has stopped
        peak = None
        if wl.cuda:
            import torch

            peak = torch.cuda.max_memory_allocated(dev) / 1e9
        stats = res.step_stats or {}
        return Rep(st.name, r, res.run_id, n, dt, res.energy_j, stats.get("mean_j"), stats.get("j_per_sample"),
                   stats.get("j_per_token"), res.avg_power_w, n / dt, samples / dt, tokens / dt, peak,
                   ",".join(sorted({d.method for d in res.devices})) or "none"), s.backend
    finally:
        wl.close()


def _med(vals: Sequence[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return statistics.median(v) if v else None


def summarise(settings: Sequence[Setting], reps: Sequence[Rep], baseline: str) -> list[Row]:
    """Medians per setting; savings in energy per unit of work against *baseline* of the same task.

    Training settings are compared per sample (a doubled batch does twice the work per step),
    generation per generated token; a generation setting's baseline is the first generation
    setting (the teacher) unless *baseline* is one.
    """
    rows = []
    for st in settings:
        rs = [r for r in reps if r.setting == st.name]
        jps = [r.j_per_step for r in rs if r.j_per_step is not None]
        rows.append(Row(st.name, st.task, len(rs), _med(jps), min(jps) if jps else None, max(jps) if jps else None,
                        _med([r.j_per_sample for r in rs]), _med([r.j_per_token for r in rs]),
                        _med([r.steps_per_s for r in rs]), _med([r.tokens_per_s for r in rs]),
                        _med([r.avg_power_w for r in rs]), _med([r.peak_mem_gb for r in rs])))
    by = {r.setting: r for r in rows}
    task_of = {s.name: s.task for s in settings}
    for r in rows:
        base_name = baseline if task_of.get(baseline) == r.task else next(
            (s.name for s in settings if s.task == r.task), None)
        b = by.get(base_name or "")
        if b is None:
            continue
        unit = "j_per_sample" if r.task == "train" else "j_per_token"
        mine, theirs = getattr(r, unit), getattr(b, unit)
        if mine is not None and theirs:
            r.saving_pct = (1.0 - mine / theirs) * 100.0
        if r.tokens_per_s and b.tokens_per_s:
            r.speedup = r.tokens_per_s / b.tokens_per_s
    return rows
