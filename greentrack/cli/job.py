"""``greentrack job ID``: one job across nodes: its total, per node and per rank, with every node's devices."""

from __future__ import annotations

import click

from .common import db_option


@click.command("job")
@click.argument("job_id", default="last")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@db_option
def job_cmd(job_id: str, fmt: str, db: str | None) -> None:
    """One job: the runs that share JOB_ID (GREENTRACK_JOB_ID, torchrun's rendezvous id, Slurm's job id;
    a Slurm job id gathers its steps), added up: one total, per node, per rank, with the devices of
    every node. JOB_ID 'last' (the default) is the job of the newest run that has one."""
    from ..api import job_view
    from ..views.job import job_json, render_job

    job = job_view(job_id, db=db)
    click.echo(job_json(job) if fmt == "json" else render_job(job))


def register(cli: click.Group) -> None:
    cli.add_command(job_cmd)
