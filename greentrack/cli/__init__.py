"""The ``greentrack`` command. Thin: parse, call the library, print.

One module per command in this package (each defines ``register(cli)``). The built-in commands
are registered through the same ``greentrack_register_commands`` hook as third-party ones, by
this module, when it builds the group: the plugin manager knows nothing of the CLI. Errors print one line and exit 2;
``GREENTRACK_DEBUG=1`` shows the traceback of an unexpected error.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import plugins
from ..errors import GreentrackError
from ..plugins import hookimpl
from ..settings import env as settings_env
from ..units import one_line


class GreentrackGroup(click.Group):
    """A click group that turns errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GreentrackError as exc:
            click.echo(f"greentrack: error: {one_line(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            ctx.exit(0)
        except Exception as exc:
            if settings_env("GREENTRACK_DEBUG"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"greentrack: error: {type(exc).__name__}: {one_line(first)} (GREENTRACK_DEBUG=1 shows more)",
                       err=True)
            ctx.exit(1)


@click.group(cls=GreentrackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="greentrack", prog_name="greentrack")
def cli() -> None:
    """Measure the energy, carbon and cost of machine-learning work."""


COMMAND_MODULES = ("compare", "demo", "diff", "doctor", "estimate", "export", "importer", "job", "plugins_cmd", "push",
                   "regions", "report", "run", "show", "study", "tune")


class BuiltinCommands:
    """The built-in commands, as a plugin: registered first, so a plugin's command of the same name wins."""

    @hookimpl(tryfirst=True)
    def greentrack_register_commands(self, cli: Any) -> None:
        import importlib

        for name in COMMAND_MODULES:
            importlib.import_module(f"{__name__}.{name}").register(cli)


_loaded_into: Any = None  # the plugin manager whose plugins last added their commands


def load_commands() -> click.Group:
    """Let every plugin (the built-in commands first) add its commands; returns the group.

    Done once per plugin manager: after ``plugins.reset()`` the next call registers the
    built-in commands with the new manager and asks its plugins again.
    """
    global _loaded_into
    pm = plugins.get_plugin_manager()
    if _loaded_into is not pm:
        if pm.get_plugin(__name__) is None:
            plugins.register(BuiltinCommands(), name=__name__, origin="built-in")
        pm.hook.greentrack_register_commands(cli=cli)
        _loaded_into = pm
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
