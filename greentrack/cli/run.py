"""``greentrack run -- <command...>``: measure any command without changing its code."""

from __future__ import annotations

import sys

import click

from .common import db_option, parse_tags


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", default=None, help="Run name (default: the command's program name).")
@click.option("--region", default=None, help="Grid region for CO2e (FR, DEU, US-CA, ...).")
@click.option("--tag", "tags", multiple=True, help="key=value label; repeatable.")
@click.option("--backend", default=None, help="Power source: auto, nvml, mock, none, or a plugin's.")
@click.option("--pue", type=click.FloatRange(min=1.0), default=None,
              help="Power usage effectiveness of the data centre (default: GREENTRACK_PUE, [tool.greentrack] pue, "
                   "else 1.0: not applied).")
@click.option("--live/--no-live", default=None,
              help="One-line live display of elapsed time, power and energy (default: on when stderr is a terminal).")
@db_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run_cmd(name: str | None, region: str | None, tags: tuple[str, ...], backend: str | None, pue: float | None,
            live: bool | None, db: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND as a measured run: its exit code passes through, signals reach it, and the
    run is stored with the command line. The child sees GREENTRACK_JOB_ID and
    GREENTRACK_PARENT_RUN_ID.

    \b
    greentrack run --name llama-ft --tag precision=bf16 -- python train.py --epochs 3
    """
    from ..measure.wrap import run_command
    from ..units import fmt_co2, fmt_duration, fmt_energy, mark, one_line

    code, result = run_command(list(command), name=name, region=region, tags=parse_tags(tags), backend=backend,
                               db=db, live=live, pue=pue)
    how = result.energy_method  # "model": estimated from CPU time, marked ~
    click.echo(f"greentrack: {one_line(result.name)} [{result.run_id}] {result.status}: "
               f"{fmt_duration(result.duration_s)}, {mark(fmt_energy(result.energy_j), how)}, "
               f"{mark(fmt_co2(result.co2e_kg), how)}", err=True)
    sys.exit(code)


def register(cli: click.Group) -> None:
    cli.add_command(run_cmd)
