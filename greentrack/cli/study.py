"""``greentrack study``: what precision, LoRA, checkpointing, batch size and distillation save, measured."""

from __future__ import annotations

import json

import click

from .common import db_option


@click.command("study")
@click.option("--settings", "spec", default="all", show_default=True,
              help="'all', 'quick' or a comma-separated list (greentrack study --list).")
@click.option("--list", "list_", is_flag=True, help="List the settings and exit.")
@click.option("--size", default="small", show_default=True, help="Workload model: tiny, small or base.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--seq-len", type=int, default=None, help="Sequence length (default: the size's).")
@click.option("--reps", type=int, default=3, show_default=True, help="Repetitions of each setting, interleaved.")
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Measured seconds per repetition.")
@click.option("--baseline", default=None, help="Setting the savings are against (default: the first training one).")
@click.option("--device", default="auto", show_default=True, help="auto, cuda, cuda:1 or cpu.")
@click.option("--backend", default=None, help="Power source (default: GREENTRACK_BACKEND or auto).")
@click.option("--region", default=None, help="Grid region for CO2e.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the study (every repetition) as JSON to this file.")
@db_option
def study_cmd(spec: str, list_: bool, size: str, batch_size: int, seq_len: int | None, reps: int, seconds: float,
              baseline: str | None, device: str, backend: str | None, region: str | None, json_out: str | None,
              db: str | None) -> None:
    """Run a fixed training workload under several settings, interleaved and repeated, each repetition a
    stored run tagged study=ID; print J/step, J/sample, J/token, throughput, memory and each setting's
    saving against the baseline. Needs torch (and peft for LoRA)."""
    from ..errors import GreentrackError
    from ..study.settings import STANDARD, select

    if list_:
        for s in STANDARD:
            click.echo(f"{s.name:<16} {', '.join(f'{k}={v}' for k, v in s.tags().items())}")
        return
    chosen = select(spec)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise GreentrackError("greentrack study needs torch: pip install torch") from None
    from ..study.runner import run_study
    from ..views.study import render_study
    from .common import write_output

    if baseline is not None and baseline not in {s.name for s in chosen}:
        raise GreentrackError(f"--baseline {baseline!r} is not among the settings studied")
    st = run_study(chosen, size=size, batch_size=batch_size, seq_len=seq_len, reps=reps, seconds=seconds,
                   baseline=baseline, device=device, backend=backend, region=region, db=db,
                   progress=lambda m: click.echo(m, err=True))
    click.echo(render_study(st))
    if json_out:
        write_output(json.dumps(st.as_dict(), indent=1, default=str) + "\n", json_out)
        click.echo(f"wrote {json_out}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(study_cmd)
