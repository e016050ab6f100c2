"""``greentrack import codecarbon emissions.csv`` and ``greentrack import greentrack export.json``."""

from __future__ import annotations

import click

from .common import db_option


def imported(done: int, skipped: int, source: str) -> str:
    """``imported 1 run from x.json (2 already there)``."""
    from ..units import plural

    return f"imported {plural(done, 'run')} from {source}" + (f" ({skipped} already there)" if skipped else "")


@click.group("import")
def import_group() -> None:
    """Bring runs in from other tools or other greentrack databases."""


@import_group.command("codecarbon")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@db_option
def import_codecarbon_cmd(csv_file: str, db: str | None) -> None:
    """Import CodeCarbon's emissions.csv: one finished run per CodeCarbon run, with its energy, emissions,
    region and CPU/GPU/RAM split. Importing the same file again adds only new runs."""
    from ..store import open_store
    from ..store.transfer import import_codecarbon

    done, skipped = import_codecarbon(open_store(db), csv_file)
    click.echo(imported(done, skipped, csv_file))


@import_group.command("greentrack")
@click.argument("json_file", type=click.Path(dir_okay=False))
@db_option
def import_greentrack_cmd(json_file: str, db: str | None) -> None:
    """Import a 'greentrack export' JSON file (runs already present are skipped)."""
    from ..store import open_store
    from ..store.transfer import import_export

    done, skipped = import_export(open_store(db), json_file)
    click.echo(imported(done, skipped, json_file))


def register(cli: click.Group) -> None:
    cli.add_command(import_group)
