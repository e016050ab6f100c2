"""``greentrack diff <run-a> <run-b>``: energy, duration, CO2e and cost, in total and per unit of work."""

from __future__ import annotations

import click

from ..settings import env as settings_env
from .common import db_option


@click.command("diff", context_settings={"ignore_unknown_options": True})
@click.argument("run_a", required=False)
@click.argument("run_b", required=False)
@click.option("--study", "study_id", default=None, help="Compare the settings of a study or tuning sweep (its ID).")
@click.option("--price-per-kwh", type=float, default=None,
              help="Electricity price per kWh for the cost rows (default: GREENTRACK_PRICE_PER_KWH).")
@click.option("--currency", default=None,
              help="Currency of the price (default: GREENTRACK_CURRENCY, [tool.greentrack] currency, else USD).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@db_option
def diff_cmd(run_a: str | None, run_b: str | None, study_id: str | None, price_per_kwh: float | None,
             currency: str | None, fmt: str,
             db: str | None) -> None:
    """Compare RUN_B against RUN_A (ids, id prefixes, names, 'last', -2): e.g. a bf16 run against an
    fp32 run. Per-step, per-sample and per-token rows appear where both runs recorded them. With
    --study ID, compare every setting of a study or tuning sweep against its baseline."""
    from ..errors import GreentrackError
    from ..settings import currency as resolve_currency

    if study_id is not None:
        import json

        from ..api import study_comparison
        from ..views.study import render_comparison

        rows = study_comparison(study_id, db=db)
        click.echo(json.dumps(rows, indent=1) if fmt == "json" else render_comparison(study_id, rows))
        return
    if not run_a or not run_b:
        raise GreentrackError("name two runs (greentrack diff RUN_A RUN_B) or a study (--study ID)")
    from ..store import open_store
    from ..views.diff import diff_json, diff_runs, render_diff

    raw = settings_env("GREENTRACK_PRICE_PER_KWH")
    if price_per_kwh is None and raw:
        try:
            price_per_kwh = float(raw)
        except ValueError:
            raise GreentrackError(f"GREENTRACK_PRICE_PER_KWH={raw!r} is not a number") from None
    if price_per_kwh is not None and not price_per_kwh >= 0:
        raise GreentrackError(f"--price-per-kwh must be a number >= 0, got {price_per_kwh}")
    store = open_store(db, create=False)
    a, b = store.get_run(run_a), store.get_run(run_b)
    d = diff_runs(a, b, price_per_kwh, currency=resolve_currency(currency))
    click.echo(diff_json(d) if fmt == "json" else render_diff(d))


def register(cli: click.Group) -> None:
    cli.add_command(diff_cmd)
