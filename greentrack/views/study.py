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


def render_tune(res: Any) -> str:
    """The frontier table ``greentrack tune`` prints, and the choice."""
    head = (f"{res.study_id}: GPU {res.device_index}, default power limit {res.default_limit_w:g} W, "
            f"power from {res.backend}; allowed slowdown {res.max_slowdown_pct:g}%")
    rows = []
    for p in sorted(res.points, key=lambda q: (q.clock_mhz is not None, -q.power_limit_w)):
        rows.append([p.label, _n(p.j_per_step, ".4g"), _n(None if p.s_per_step is None else p.s_per_step * 1e3, ".2f"),
                     _n(p.avg_power_w, ".1f"), "-" if p.saving_pct is None else f"{p.saving_pct:+.1f}%",
                     "-" if p.slowdown_pct is None else f"{p.slowdown_pct:+.1f}%",
                     ("*" if p.on_frontier else "") + (" chosen" if p.label == res.chosen else "")])
    out = [head, "", table(["setting", "J/step", "ms/step", "avg W", "energy saved", "slowdown", "frontier"], rows,
                           right={1, 2, 3, 4, 5})]
    if res.chosen is not None and res.measured_saving_pct is not None:
        out.append("")
        out.append(f"chosen: {res.chosen}: {res.predicted_saving_pct:.1f}% less energy per step predicted by the "
                   f"sweep, {res.measured_saving_pct:.1f}% measured again in separate runs "
                   f"(slowdown {res.measured_slowdown_pct:+.1f}%).")
    for n in res.notes:
        out.append(n)
    out.append("frontier (*): no other setting is both faster and cheaper. Medians of the repetitions.")
    return "\n".join(out)


def render_comparison(study_id: str, rows: list[dict[str, Any]]) -> str:
    """A stored study or sweep (:func:`greentrack.api.study_comparison`) as one table."""
    body = [[r["setting"] + (" (baseline)" if r["baseline"] else ""), str(r["runs"]), _n(r["j_per_step"], ".4g"),
             _n(None if r["s_per_step"] is None else r["s_per_step"] * 1e3, ".2f"), _n(r["j_per_sample"], ".4g"),
             _n(r["avg_power_w"], ".1f"), "-" if r["saving_pct"] is None else f"{r['saving_pct']:+.1f}%",
             "-" if r["slowdown_pct"] is None else f"{r['slowdown_pct']:+.1f}%"] for r in rows]
    return "\n".join([f"study {study_id}: medians of its stored runs",
                      table(["setting", "runs", "J/step", "ms/step", "J/sample", "avg W", "energy saved", "slowdown"],
                            body, right={1, 2, 3, 4, 5, 6, 7})])


def comparison_chart(Figure: Any, study_id: str, rows: list[dict[str, Any]]) -> str:
    """An SVG scatter of energy per step against time per step, one labelled point per setting."""
    import io

    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    for r in rows:
        if r["j_per_step"] is None or r["s_per_step"] is None:
            continue
        x, y = r["s_per_step"] * 1e3, r["j_per_step"]
        ax.scatter([x], [y], s=40, marker="s" if r["baseline"] else "o")
        ax.annotate(r["setting"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8, parse_math=False)
    ax.set_xlabel("time per step (ms)")
    ax.set_ylabel("energy per step (J)")
    ax.set_title(f"study {study_id}: energy against time per setting", fontsize=10, parse_math=False)
    ax.grid(alpha=0.3)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    return buf.getvalue()[buf.getvalue().find("<svg"):]
