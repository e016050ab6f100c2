"""``greentrack demo``: a short simulated training loop on the mock backend, then the report."""

from __future__ import annotations

import click

from .common import db_option


@click.command("demo")
@click.option("--steps", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--step-time", type=click.FloatRange(min=0), default=0.03, show_default=True,
              help="Seconds each simulated step takes.")
@click.option("--eval-time", type=click.FloatRange(min=0), default=1.2, show_default=True,
              help="Seconds of the evaluation phase (no steps: the mock GPU idles after 0.5 s).")
@click.option("--name", default="demo-train", show_default=True)
@click.option("--region", default="FR", show_default=True, help="Grid region for CO2e.")
@click.option("--backend", default="mock", show_default=True, help="Power source (mock needs no GPU).")
@db_option
def demo_cmd(steps: int, step_time: float, eval_time: float, name: str, region: str, backend: str,
             db: str | None) -> None:
    """Run a small simulated training loop, store it, print the result and the report.

    The run goes to your greentrack database (GREENTRACK_DB, [tool.greentrack] db, or the user data
    folder), where your own runs go; --db FILE keeps it elsewhere.
    """
    from ..api import query_runs
    from ..measure.demo import run_demo
    from ..settings import resolve_db
    from ..store.location import describe
    from ..units import plural
    from ..views.runs import render_table

    path = describe(resolve_db(db))
    where = "the database given with --db" if db else "your greentrack database"
    click.echo(f"greentrack demo: {plural(steps, 'simulated training step')} and an evaluation on the {backend} "
               f"backend, stored in {where}: {path}" + ("" if db else " (--db FILE to keep it elsewhere)"))
    result = run_demo(steps=steps, step_time=step_time, eval_time=eval_time, name=name, region=region, backend=backend,
                      db=db)
    click.echo(result.summary())
    for p in result.phases:
        click.echo(f"  phase {p.name:<6} {p.duration_s:6.2f}s  {p.energy_j or 0:10.1f} J  ({plural(p.steps, 'step')})")
    if result.step_stats:
        st = result.step_stats
        click.echo(f"  per step: mean {st['mean_j']:.2f} J, p50 {st['p50_j']:.2f} J, p95 {st['p95_j']:.2f} J"
                   + (f", {st['j_per_sample']:.3f} J/sample" if st.get("j_per_sample") else ""))
    click.echo("")
    click.echo(render_table(query_runs(db=db, last=10)))
    import shlex

    db_opt = f" --db {shlex.quote(str(path))}" if db else ""
    click.echo("")
    click.echo(f"run {result.run_id} is stored in {path}")
    click.echo("try next:")
    for cmd, what in ((f"greentrack show {result.run_id}{db_opt}", "this run: devices, power over time, phases"),
                      (f"greentrack report --format html{db_opt}", "a self-contained HTML report of your runs"),
                      ("greentrack run -- python train.py", "measure your own command, no code change")):
        click.echo(f"  {cmd:<44} {what}")


def register(cli: click.Group) -> None:
    cli.add_command(demo_cmd)
