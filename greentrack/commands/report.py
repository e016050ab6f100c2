"""``greentrack report``: the newest runs as a table."""

from __future__ import annotations

import click

from .common import db_option, parse_since, parse_tags


@click.command("report")
@click.option("--last", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="How many runs.")
@click.option("--name", default=None, help="Only runs of this name (glob patterns allowed: 'llama-*').")
@click.option("--since", default=None, help="Only runs started since: 7d, 12h, today, 2026-11-01.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (key=value); repeatable.")
@click.option("--status", type=click.Choice(["running", "finished", "failed", "interrupted", "lost"]), default=None)
@db_option
def report_cmd(last: int, name: str | None, since: str | None, tags: tuple[str, ...], status: str | None,
               db: str | None) -> None:
    """The newest runs, newest first."""
    from ..report import render_table, query_runs

    rows = query_runs(db=db, last=last, name=name, since=parse_since(since), tags=parse_tags(tags), status=status)
    click.echo(render_table(rows))


def register(cli: click.Group) -> None:
    cli.add_command(report_cmd)
