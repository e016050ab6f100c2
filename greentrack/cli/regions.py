"""``greentrack regions [QUERY]``: the grid-intensity table, searchable, with source and year."""

from __future__ import annotations

import json

import click


@click.command("regions")
@click.argument("query", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--sources/--no-sources", default=False, help="Show each figure's source in the text table.")
def regions_cmd(query: str | None, fmt: str, sources: bool) -> None:
    """List grid regions and their intensity (gCO2e/kWh), or those matching QUERY.

    Regions are ISO-2/ISO-3 country codes or names (FR, FRA, France), US states (US-CA),
    Canadian and Chinese provinces (CA-QC, CN-BJ), Nordic bidding zones (SE3) and cloud
    regions (aws:us-east-1, azure:westeurope, gcp:europe-west9).
    """
    from ..carbon import grid
    from ..errors import UnknownRegionError, suggest
    from ..units import one_line, table

    items = grid.search_regions(query)
    if not items:
        raise UnknownRegionError(f"no region matches {query!r}" + (suggest(query or "", grid.known_regions())
                                                                    or "; try a country, US-CA or aws:us-east-1"))
    if fmt == "json":
        click.echo(json.dumps([it.as_dict() for it in items], indent=1))
        return
    headers = ["region", "gCO2e/kWh", "year", "kind", "name"] + (["source"] if sources else [])
    rows = [[it.region, f"{it.g_per_kwh:.0f}", str(it.year or "-"), it.kind, it.label]
            + ([it.source] if sources else []) for it in items]
    click.echo(table(headers, rows, right={1}))
    if not sources:
        srcs = sorted({it.source.split(" [")[0].split("; region location")[0] for it in items})
        click.echo("")
        click.echo("sources (--sources shows them per row):")
        for s in srcs[:8]:
            click.echo(f"  {one_line(s)}")
        if len(srcs) > 8:
            click.echo(f"  ... and {len(srcs) - 8} more")


def register(cli: click.Group) -> None:
    cli.add_command(regions_cmd)
