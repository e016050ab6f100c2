"""``greentrack compare RUN --scenario A --scenario B``: a measured run replayed under scenarios."""

from __future__ import annotations

import json

import click

from .common import db_option


@click.command("compare")
@click.argument("run", required=False)
@click.option("--scenario", "-s", "scenarios", multiple=True,
              help="Scenario name (repeatable): aws:us-east-1, onprem:FR, a template on any region "
                   "(onprem:DE, aws:eu-west-1), or one of yours.")
@click.option("--scenarios", "files", multiple=True, type=click.Path(dir_okay=False),
              help="Extra scenario file (TOML or JSON); repeatable.")
@click.option("--list", "list_", is_flag=True, help="List the known scenarios and exit.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@db_option
def compare_cmd(run: str | None, scenarios: tuple[str, ...], files: tuple[str, ...], list_: bool, fmt: str,
                db: str | None) -> None:
    """Replay RUN (id, id prefix or 'last') under each scenario: kWh with PUE, kgCO2e operational
    and embodied, cost; says which is cheapest and which is cleanest."""
    from ..api import compare
    from ..carbon.scenarios import Catalogue
    from ..errors import GreentrackError
    from ..views import compare as cmp

    if list_:
        cat = Catalogue.load(files)
        items = cat.all()
        if fmt == "json":
            click.echo(json.dumps([s.as_dict() for s in items], indent=1))
            return
        from ..units import table

        rows = [[s.name + (":<region>" if s.template else ""), s.kind, f"{s.pue:.2f}", s.region or "-",
                 s.gpu or "-", s.origin, s.description] for s in items]
        click.echo(table(["scenario", "kind", "PUE", "grid", "gpu", "from", "description"], rows))
        return
    if not run:
        raise GreentrackError("name a run: greentrack compare RUN --scenario NAME (RUN may be 'last')")
    c = compare(run, list(scenarios), db=db, files=files)
    if fmt == "json":
        from ..views.runs import dumps_json

        click.echo(dumps_json(c.as_dict(), indent=1))
    elif fmt == "html":
        click.echo(cmp.render_html(c))
    else:
        click.echo(cmp.render_text(c))


def register(cli: click.Group) -> None:
    cli.add_command(compare_cmd)
