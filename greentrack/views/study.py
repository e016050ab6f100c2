"""A study (:class:`greentrack.study.runner.Study`) as a text table."""

from __future__ import annotations

from typing import Any

from ..units import table


def _n(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render_study(study: Any) -> str:
    """The table ``greentrack study`` prints: medians over repetitions, savings against the baseline."""
    head = (f"{study.study_id}: model {study.size}, batch {study.batch_size}, sequence {study.seq_len}, "
            f"{study.seconds:g} s per repetition, device {study.device}, power from {study.backend}")
    if study.backend.startswith("mock"):
        head += " (SIMULATED power: the figures exercise the path, they measure nothing)"
    cols = ["setting", "reps", "J/step", "J/step min-max", "J/sample", "J/token", "steps/s", "tokens/s",
            "avg W", "peak GB", "saving", "speed"]
    rows = []
    for r in study.rows:
        if r.skipped:
            rows.append([r.setting, "0"] + ["-"] * 10)
            continue
        spread = "-" if r.j_per_step_min is None else f"{r.j_per_step_min:.4g}-{r.j_per_step_max:.4g}"
        rows.append([r.setting, str(r.reps), _n(r.j_per_step, ".4g"), spread, _n(r.j_per_sample, ".4g"),
                     _n(r.j_per_token, ".4g"), _n(r.steps_per_s, ".3g"), _n(r.tokens_per_s, ",.0f"),
                     _n(r.avg_power_w, ".1f"), _n(r.peak_mem_gb, ".2f"),
                     "-" if r.saving_pct is None else f"{r.saving_pct:+.1f}%",
                     "-" if r.speedup is None else f"{r.speedup:.2f}x"])
    out = [head, "", table(cols, rows, right=set(range(1, len(cols))))]
    out.append("")
    out.append(f"saving: energy per sample (training) or per generated token (generation) saved against "
               f"{study.baseline} (training) and the first generation setting; speed: tokens/s against the same. "
               f"Medians of the repetitions; J/step from the energy counter's attribution where the GPU has one.")
    for r in study.rows:
        if r.skipped:
            out.append(f"{r.setting}: not run: {r.skipped}")
    return "\n".join(out)
