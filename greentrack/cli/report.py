"""``greentrack report``: the newest runs as a table, CSV, JSON, Markdown or a self-contained HTML file."""

from __future__ import annotations

import click

from .common import db_option, parse_since, parse_tags


@click.command("report")
@click.option("--last", "-n", type=int, default=10, show_default=True, help="How many runs.")
@click.option("--name", default=None, help="Only runs of this name (glob patterns allowed: 'llama-*').")
@click.option("--since", default=None, help="Only runs started since: 7d, 12h, today, 2026-11-01.")
@click.option("--until", default=None, help="Only runs started before: 1d, yesterday, 2026-11-15.")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (key=value); repeatable.")
@click.option("--status", default=None, help="running, finished, failed, interrupted or lost.")
@click.option("--job", "job_id", default=None,
              help="Only runs of this job id (GREENTRACK_JOB_ID, torchrun, SLURM); the table adds the job's total, "
                   "per node and per rank.")
@click.option("--format", "fmt", default=None,
              help="table, csv, json, markdown or html (default: from the --output file's extension, else table).")
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False),
              help="Write to this file: .html, .csv, .json, .md or .txt sets the format "
                   "(html default: reports/greentrack-report-<time>.html).")
@click.option("--detail", type=click.IntRange(min=0), default=5, show_default=True,
              help="html: how many of the runs get power plots and phase charts.")
@click.option("--scenario", "scenarios", multiple=True,
              help="html: compare the newest run under these scenarios (needs greentrack.carbon.compare).")
@click.option("--study", "study_id", default=None,
              help="html: compare the settings of this study or tuning sweep (table and chart); "
                   "selects its runs unless other filters are given.")
@db_option
def report_cmd(last: int, name: str | None, since: str | None, until: str | None, tags: tuple[str, ...],
               status: str | None, job_id: str | None, fmt: str | None, output: str | None, detail: int,
               scenarios: tuple[str, ...], study_id: str | None, db: str | None) -> None:
    """The newest runs, newest first."""
    from ..api import html_report, query_runs
    from ..errors import GreentrackError, suggest
    from ..units import plural
    from ..views.runs import FORMATS, render
    from .common import format_for_output, write_output

    if fmt is not None and fmt.strip().lower() not in FORMATS:
        fmt = fmt.strip().lower()
        raise GreentrackError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}" + suggest(fmt, FORMATS))
    fmt = format_for_output(fmt, output)
    if fmt not in FORMATS:
        raise GreentrackError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}" + suggest(fmt, FORMATS))
    if last < 1:
        raise GreentrackError(f"--last must be at least 1, got {last}")
    t_since, t_until = parse_since(since), parse_since(until)
    if t_since is not None and t_until is not None and t_until <= t_since:
        raise GreentrackError(f"--until ({until}) is not after --since ({since})")
    tag_filter = parse_tags(tags)
    if study_id and not tag_filter:
        tag_filter = {"study": study_id}
    rows = query_runs(db=db, last=last, name=name, since=t_since, until=t_until, tags=tag_filter,
                      status=status, job_id=job_id)
    if fmt == "table" and not rows and any(v for v in (name, since, until, tags, status, job_id)):
        click.echo("no runs match these filters")
        return
    if fmt == "html":
        from ..views.html import default_report_path

        if not rows:
            raise GreentrackError("no runs to report" + (" match these filters" if any(
                (name, since, until, tags, status, job_id)) else " (the database is empty)"))
        text = html_report(rows, db=db, detail=detail, scenarios=list(scenarios), study=study_id)
        path = output or default_report_path()
        write_output(text, path, db)
        click.echo(f"wrote {path} ({plural(len(rows), 'run')})")
        return
    if scenarios:
        raise GreentrackError("--scenario is for --format html; for a table use 'greentrack compare'")
    if study_id and fmt == "table":
        from ..api import study_comparison
        from ..views.study import render_comparison

        click.echo(render_comparison(study_id, study_comparison(study_id, db=db)))
        return
    text = render(rows, fmt)
    if job_id and fmt == "table" and not output:  # the job's total, per node and per rank, under its runs
        from ..api import job_view
        from ..views.job import render_job

        text = text.rstrip("\n") + "\n\n" + render_job(job_view(job_id, db=db))
    if output:
        write_output(text if text.endswith("\n") else text + "\n", output, db)
        click.echo(f"wrote {output} ({plural(len(rows), 'run')}, {fmt})", err=True)
    else:
        click.echo(text.rstrip("\n"))


def register(cli: click.Group) -> None:
    cli.add_command(report_cmd)
