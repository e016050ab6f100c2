"""``greentrack plugins``: the installed plugins, their versions, hooks and origins."""

from __future__ import annotations

import json

import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
def plugins_cmd(as_json: bool, show_all: bool) -> None:
    """The plugins greentrack loaded: name, version, the hooks each implements, where it came from."""
    from .. import plugins
    from ..units import table

    items = [p for p in plugins.describe() if show_all or p["origin"] != "built-in"]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no plugins installed (greentrack plugins --all lists the built-in ones)")
        return
    rows = [[p["name"], p["version"] or "-", p["origin"], ", ".join(h.removeprefix("greentrack_") for h in p["hooks"])]
            for p in items]
    click.echo(table(["name", "version", "from", "hooks"], rows))


def register(cli: click.Group) -> None:
    cli.add_command(plugins_cmd)
