"""The ``greentrack`` command. Thin: parse, call the library, print.

Commands are plugins: the built-in ones live in :mod:`greentrack.commands`, third-party ones
arrive through the ``greentrack_register_commands`` hook. Errors print one line and exit 2;
``GREENTRACK_DEBUG=1`` shows the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .errors import GreentrackError


class GreentrackGroup(click.Group):
    """A click group that turns errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GreentrackError as exc:
            click.echo(f"greentrack: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            ctx.exit(0)
        except Exception as exc:
            if os.environ.get("GREENTRACK_DEBUG"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"greentrack: error: {type(exc).__name__}: {first} (GREENTRACK_DEBUG=1 shows more)", err=True)
            ctx.exit(1)


@click.group(cls=GreentrackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="greentrack", prog_name="greentrack")
def cli() -> None:
    """Measure the energy, carbon and cost of machine-learning work."""


_loaded = False


def load_commands() -> click.Group:
    """Let every plugin (built-ins first) add its commands; returns the group."""
    global _loaded
    if not _loaded:
        from . import plugins

        plugins.call("greentrack_register_commands", cli=cli)
        _loaded = True
    return cli


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    load_commands()
    try:
        cli.main(args=argv, prog_name="greentrack")
    except KeyboardInterrupt:  # pragma: no cover
        click.echo("greentrack: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
