"""``greentrack push --to URL``: copy local runs (with their power series) to another store, idempotently."""

from __future__ import annotations

import click

from .common import db_option, parse_since, parse_tags


@click.command("push")
@click.argument("runs", nargs=-1)
@click.option("--to", "target", required=True, metavar="URL|FILE",
              help="The store to copy to: a postgresql:// URL (the team's database) or a SQLite file.")
@click.option("--last", "-n", type=int, default=None, help="Only the newest N runs (default: all).")
@click.option("--name", default=None, help="Only runs of this name (glob patterns allowed).")
@click.option("--since", default=None, help="Only runs started since: 7d, 12h, today, 2026-11-01.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (key=value); repeatable.")
@click.option("--job", "job_id", default=None, help="Only runs of this job id.")
@db_option
def push_cmd(runs: tuple[str, ...], target: str, last: int | None, name: str | None, since: str | None,
             tags: tuple[str, ...], job_id: str | None, db: str | None) -> None:
    """Copy RUNS (ids, prefixes, names; default: every run matching the filters) of this database, with
    their devices, phases and power series, to the store --to names. Runs already there and current
    are skipped, so pushing again adds nothing; runs spooled for that store are delivered too."""
    from ..errors import GreentrackError
    from ..settings import db_location
    from ..store import open_location, open_store
    from ..store.push import push
    from ..units import plural

    if last is not None and last < 1:
        raise GreentrackError(f"--last must be at least 1, got {last}")
    src = open_store(db, create=False)
    dst = open_location(db_location(target, "--to"), write=True)
    if dst.location == src.location:
        raise GreentrackError(f"--to names the database the runs come from ({src.location})")
    if runs:
        ids = [src.resolve_id(r) for r in runs]
    else:
        ids = [r["id"] for r in src.list_runs(last=last, name=name, since=parse_since(since), tags=parse_tags(tags),
                                              job_id=job_id)]
    got = push(src, dst, ids)
    for rid, why in got.failed:
        click.echo(f"greentrack: run {rid} not pushed: {why}", err=True)
    extra = f"; {plural(len(got.spooled), 'spooled run')} delivered" if got.spooled else ""
    click.echo(f"pushed {plural(len(got.copied), 'run')} to {dst.location} "
               f"({len(got.current)} already there and current{extra})")
    src.close()
    dst.close()
    if got.failed:
        raise SystemExit(1)


def register(cli: click.Group) -> None:
    cli.add_command(push_cmd)
