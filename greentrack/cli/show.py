"""``greentrack show <run>``: one run in detail, power over time drawn in the terminal."""

from __future__ import annotations

import shutil
import sys

import click

from .common import db_option


@click.command("show", context_settings={"ignore_unknown_options": True})
@click.argument("run", default="last")
@click.option("--width", type=click.IntRange(min=10, max=400), default=None,
              help="Columns of the power chart (default: fit the terminal).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--ascii", "ascii_only", is_flag=True, help="Draw the chart with ASCII characters only.")
@db_option
def show_cmd(run: str, width: int | None, fmt: str, ascii_only: bool, db: str | None) -> None:
    """One run: devices and their measuring method, power over time, phases, per-step energy,
    region and intensity source, budget outcome. RUN is an id, an id prefix, a run name, or
    'last' / -2 (the default is the newest run)."""
    from ..api import show_view
    from ..views.show import render_show, show_json
    from ..views.sparkline import can_unicode

    if width is None:
        width = max(20, min(120, shutil.get_terminal_size((100, 24)).columns - 24))
    view = show_view(run, db=db, width=width)
    if fmt == "json":
        click.echo(show_json(view))
    else:
        click.echo(render_show(view, unicode=not ascii_only and can_unicode(sys.stdout)))


def register(cli: click.Group) -> None:
    cli.add_command(show_cmd)
