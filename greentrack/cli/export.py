"""``greentrack export``: runs with devices, phases and (optionally) power series, as JSON or CSV."""

from __future__ import annotations

import click

from .common import db_option, parse_since, parse_tags


@click.command("export")
@click.argument("runs", nargs=-1)
@click.option("--last", "-n", type=int, default=None, help="Only the newest N runs (default: all).")
@click.option("--name", default=None, help="Only runs of this name (glob patterns allowed).")
@click.option("--since", default=None, help="Only runs started since: 7d, 12h, today, 2026-11-01.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (key=value); repeatable.")
@click.option("--status", default=None, help="running, finished, failed, interrupted or lost.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "sqlite"]), default="json", show_default=True,
              help="json: the full export (greentrack.export v1); csv: the report's run table (greentrack.runs v1); "
                   "sqlite: a database for Datasette and sqlite-utils (runs, phases, devices; power with --series), "
                   "needs -o.")
@click.option("--series", is_flag=True, help="json, sqlite: include each device's power series.")
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False), help="File (default: stdout).")
@db_option
def export_cmd(runs: tuple[str, ...], last: int | None, name: str | None, since: str | None, tags: tuple[str, ...],
               status: str | None, fmt: str, series: bool, output: str | None, db: str | None) -> None:
    """Export RUNS (ids, prefixes, names; default: every run matching the filters).

    Read a JSON export back with 'greentrack import greentrack FILE'."""
    from ..api import query_runs
    from ..errors import GreentrackError
    from ..store import open_store
    from ..store.transfer import dumps, export_runs
    from ..views.runs import render_csv
    from .common import write_output

    if last is not None and last < 1:
        raise GreentrackError(f"--last must be at least 1, got {last}")
    store = open_store(db, create=False)
    if runs:
        ids = [store.resolve_id(r) for r in runs]
        rows = [store.get_run(i) for i in ids]
    else:
        rows = query_runs(db=db, last=last, name=name, since=parse_since(since), tags=parse_tags(tags),
                          status=status)
        ids = [r["id"] for r in rows]
    if fmt == "sqlite":
        if not output:
            raise GreentrackError("--format sqlite writes a database file: give it with -o FILE.db")
        from pathlib import Path

        from ..settings import resolve_db_path
        from ..store.datasette import write_datasette
        from ..store.health import guard_output
        from ..store.series import read_series_np
        from ..units import plural
        from ..views.runs import run_record

        target = Path(output).expanduser()
        guard_output(target, resolve_db_path(db), sqlite_export=True)
        full = [store.get_run(i) for i in ids]
        power = {i: read_series_np(store, i) for i in ids} if series else None
        n = write_datasette(target, [run_record(r) for r in full], full, power)
        click.echo(f"wrote {output} ({plural(n, 'run')}; datasette {output} to browse it)", err=True)
        return
    if fmt == "csv":
        text = render_csv(rows)
    else:
        text = dumps(export_runs(store, ids, series=series))
    if output:
        write_output(text, output, db)
        from ..units import plural

        click.echo(f"wrote {output} ({plural(len(ids), 'run')})", err=True)
    else:
        click.echo(text, nl=False)


def register(cli: click.Group) -> None:
    cli.add_command(export_cmd)
